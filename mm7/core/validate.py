"""Schema validation of a SOAP envelope: the envelope against SOAP 1.1, the body element (or the
error element in a Fault's detail) against the MM7 schema of its namespace."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from lxml import etree

from mm7.core.versions import SOAP_ENV_NS, version_for_namespace
from mm7.core.xsdgen import load_envelope_schema, load_schema

__all__ = ["SchemaReport", "validate_envelope"]


@dataclass(frozen=True, slots=True)
class SchemaReport:
    """The outcome: which schema was used and every violation, each with its line."""

    namespace: str | None
    element: str | None
    errors: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return not self.errors


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def validate_envelope(root: etree._Element, schema_dir: str | None = None) -> SchemaReport:
    """Validate a parsed Envelope; ``schema_dir`` holds <token>.xsd files (default: our own)."""
    errors: list[str] = []
    env_schema = load_envelope_schema(schema_dir)
    if not env_schema.validate(root):
        errors.extend(_errors(env_schema, "Envelope"))
    body = next((c for c in root if _local(c.tag) == "Body"), None)
    target = None
    if body is not None:
        target = next((c for c in body if isinstance(c.tag, str)), None)
        if (
            target is not None
            and _local(target.tag) == "Fault"
            and target.tag.startswith("{" + SOAP_ENV_NS)
        ):
            detail = next((c for c in target if _local(c.tag) == "detail"), None)
            target = None
            if detail is not None:
                target = next((c for c in detail if isinstance(c.tag, str)), None)
            if target is None:
                return SchemaReport(SOAP_ENV_NS, "Fault", tuple(errors))
    if target is None:
        errors.append("Body: no MM7 element to validate")
        return SchemaReport(None, None, tuple(errors))
    ns = target.tag[1:].partition("}")[0] if target.tag.startswith("{") else None
    version = version_for_namespace(ns)
    name = _local(target.tag)
    if version is None:
        errors.append(f"{name}: no MM7 schema for namespace {ns!r}")
        return SchemaReport(ns, name, tuple(errors))
    schema = load_schema(version.token, schema_dir)
    if not schema.validate(target):
        errors.extend(_errors(schema, name))
    header = next((c for c in root if _local(c.tag) == "Header"), None)
    for h in header if header is not None else ():
        if not (_local(h.tag) == "TransactionID" and h.tag.startswith("{" + (ns or ""))):
            continue
        if not version.transaction_id_has_soap_attrs:
            # up to REL-5-MM7-1-1 TransactionID is a bare xs:NMTOKEN: check its value, and let
            # the SOAP attributes every peer sends (mustUnderstand) pass, as they always have
            h = copy.copy(h)
            for key in [
                k for k in h.attrib if isinstance(k, str) and k.startswith("{" + SOAP_ENV_NS)
            ]:
                del h.attrib[key]
        if not schema.validate(h):
            errors.extend(_errors(schema, "TransactionID"))
    return SchemaReport(ns, name, tuple(errors))


def _errors(schema: Any, where: str) -> list[str]:
    return [f"{where}: line {e.line}: {e.message}" for e in schema.error_log]
