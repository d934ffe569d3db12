"""Personas: an MMSC's habits as data. A persona is a Dialect (how it writes MM7, also what it
sends to the VASP) plus acceptance rules (what it refuses) and the shape of its errors.

Persona files live in ``conf/personas/<name>.toml``::

    description = "..."
    strict = false                 # default validation mode (the command line can override)
    [dialect]                      # Dialect.from_mapping keys, `extends` a named dialect
    extends = "nokia"
    [accept]
    require_smil = false           # refuse a SubmitReq without SMIL (missing_smil_status)
    refuse_chunked = false         # HTTP 411 for a chunked request (mBlox, NowSMS)
    max_recipients = 1             # more recipients in one SubmitReq: 3003 (Skycore)
    versions = ["REL-6-MM7-1-4"]   # schema versions accepted; others: 4002
    [reply]
    content_type = "application/xml"   # media type of bare-XML answers (default: the dialect's)
    fault_shape = "rserror"        # rserror | bare-status | in-response
    [status_codes]                 # the carrier's own codes for standard ones
    2004 = { code = 2103, text = "Content size exceeded" }
    [auth]                         # what the MMSC requires of every request (401/403 + 4001)
    digest = { user = "vasp", password = "...", realm = "mmsc" }   # HTTP Digest, MD5, qop=auth
    basic = { user = "vasp", password = "..." }
    client_cert = true             # a verified TLS client certificate (serve with a client CA)

The ``[auth]`` credentials are test credentials of a simulated MMSC, not secrets.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm7.core.dialect import Dialect, DialectError
from mm7.core.errors import MM7Error
from mm7.core.model import Status
from mm7.core.shipped import shipped
from mm7.core.versions import get_version
from mm7.simulator.faults import FaultConfigError, FaultInjector

#: error placements the simulator can reproduce: RSErrorRsp in Fault/detail (the spec), a bare
#: Status there (the ALU mock MMSC), the status in a normal response (mmsgw, Seoultel's dummy MMSC)
FAULT_SHAPES = ("rserror", "bare-status", "in-response")

#: where persona files are looked up: $MM7_PERSONAS_DIR, else the working directory's
#: conf/personas (a deployment's own, overriding by name), then those shipped with mm7
PERSONAS_ENV = "MM7_PERSONAS_DIR"
LOCAL_DIR = Path("conf") / "personas"
DEFAULT_DIR = shipped("personas")


class PersonaError(MM7Error):
    """A persona file or name that cannot be used; the message names the file and key."""


@dataclass(frozen=True, slots=True)
class Persona:
    """One simulated MMSC's behaviour. Frozen: the simulator reads it, never changes it."""

    name: str
    dialect: Dialect
    description: str = ""
    #: validate every request against its namespace's schema (4004 with the reason)
    strict: bool = False
    #: a SubmitReq without an application/smil part is refused with ``missing_smil_status``
    require_smil: bool = False
    missing_smil_status: int = 2004
    #: a request with Transfer-Encoding: chunked is answered HTTP 411
    refuse_chunked: bool = False
    #: recipients one SubmitReq may carry (3003 above it); None: any number
    max_recipients: int | None = None
    #: schema version tokens accepted (4002 for others); empty: every version
    versions: tuple[str, ...] = ()
    #: media type replacing text/xml on bare-XML answers (application/xml for Skycore style)
    response_content_type: str | None = None
    #: rserror (RSErrorRsp in Fault/detail), bare-status (Status in Fault/detail), in-response
    #: (the status inside the normal Rsp, HTTP 200)
    fault_shape: str = "rserror"
    #: standard code -> (carrier code, its text)
    status_codes: tuple[tuple[int, int, str], ...] = ()
    #: authentication required, as FaultInjector.configure takes it (basic_auth, digest_auth,
    #: client_cert); in force from the start and after every reset
    auth: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.fault_shape not in FAULT_SHAPES:
            raise PersonaError(
                f"persona {self.name!r}: fault_shape {self.fault_shape!r} is not one of "
                f"{', '.join(FAULT_SHAPES)}"
            )

    def status(self, code: int, details: str | None = None) -> Status:
        """The Status answered for a standard ``code``: the persona's own code when it has one."""
        for standard, own, text in self.status_codes:
            if standard == code:
                return Status(own, text, details)
        return Status.of(code, details)

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> Persona:
        """A persona from a parsed TOML table; PersonaError names the bad key."""
        known = {"description", "strict", "dialect", "accept", "reply", "status_codes", "auth"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PersonaError(f"persona {name!r}: unknown key(s) {', '.join(unknown)}")
        try:
            dialect = Dialect.from_mapping({"name": name, **dict(data.get("dialect", {}))})
        except DialectError as exc:
            raise PersonaError(f"persona {name!r}: dialect: {exc}") from None
        accept = _table(
            name,
            data,
            "accept",
            {"require_smil", "missing_smil_status", "refuse_chunked", "max_recipients", "versions"},
        )
        versions = accept.get("versions", [])
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise PersonaError(f"persona {name!r}: accept.versions: a list of schema tokens")
        try:
            tokens = tuple(get_version(v).token for v in versions)
        except KeyError as exc:
            raise PersonaError(f"persona {name!r}: accept.versions: {exc.args[0]}") from None
        max_recipients = accept.get("max_recipients")
        if max_recipients is not None and (
            not isinstance(max_recipients, int) or max_recipients < 1
        ):
            raise PersonaError(f"persona {name!r}: accept.max_recipients: an integer >= 1")
        reply = _table(name, data, "reply", {"content_type", "fault_shape"})
        codes: list[tuple[int, int, str]] = []
        for key, value in dict(data.get("status_codes", {})).items():
            try:
                standard = int(key)
                if isinstance(value, Mapping):
                    own = int(value["code"])
                    text = str(value.get("text", f"Status {own}"))
                else:
                    own, text = int(value), f"Status {value}"
            except (KeyError, TypeError, ValueError):
                raise PersonaError(
                    f'persona {name!r}: status_codes.{key}: expected {{ code = N, text = "..." }}'
                ) from None
            codes.append((standard, own, text))
        auth_table = _table(name, data, "auth", {"basic", "digest", "client_cert"})
        names = {"basic": "basic_auth", "digest": "digest_auth", "client_cert": "client_cert"}
        auth = {names[k]: v for k, v in auth_table.items()}
        try:
            FaultInjector(baseline=auth)  # checked now, so a bad [auth] names itself
        except FaultConfigError as exc:
            raise PersonaError(f"persona {name!r}: auth: {exc}") from None
        return cls(
            name=name,
            dialect=dialect,
            description=str(data.get("description", "")),
            strict=_bool(name, "strict", data.get("strict", False)),
            require_smil=_bool(name, "accept.require_smil", accept.get("require_smil", False)),
            missing_smil_status=int(accept.get("missing_smil_status", 2004)),
            refuse_chunked=_bool(
                name, "accept.refuse_chunked", accept.get("refuse_chunked", False)
            ),
            max_recipients=max_recipients,
            versions=tokens,
            response_content_type=reply.get("content_type"),
            fault_shape=str(reply.get("fault_shape", "rserror")),
            status_codes=tuple(codes),
            auth=auth,
        )


def _table(name: str, data: Mapping[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    table = dict(data.get(key, {}))
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PersonaError(f"persona {name!r}: unknown key(s) in [{key}]: {', '.join(unknown)}")
    return table


def _bool(name: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PersonaError(f"persona {name!r}: {key}: expected true/false, got {value!r}")
    return value


def personas_dirs() -> tuple[Path, ...]:
    """The folders persona files are read from, first match wins: $MM7_PERSONAS_DIR alone when
    set; else the working directory's conf/personas, then the shipped ones."""
    env = os.environ.get(PERSONAS_ENV)
    return (Path(env),) if env else (LOCAL_DIR, DEFAULT_DIR)


def load_persona_file(path: Path, name: str | None = None) -> Persona:
    """The persona in one TOML file (named after the file unless ``name`` is given)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PersonaError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PersonaError(f"{path}: not valid TOML: {exc}") from None
    return Persona.from_mapping(name or path.stem, data)


def load_persona(name: str, directory: Path | None = None) -> Persona:
    """The persona called ``name`` (from ``directory``, else the first of ``personas_dirs``
    that has it); PersonaError lists the names known."""
    folders = (directory,) if directory is not None else personas_dirs()
    for folder in folders:
        path = folder / f"{name}.toml"
        if path.is_file():
            return load_persona_file(path, name)
    raise PersonaError(
        f"unknown persona {name!r}; known: {', '.join(persona_names(directory)) or '(none)'}"
    )


def persona_names(directory: Path | None = None) -> list[str]:
    """Every persona name known (in ``directory``, else in all of ``personas_dirs``), sorted."""
    folders = (directory,) if directory is not None else personas_dirs()
    return sorted({p.stem for f in folders if f.is_dir() for p in f.glob("*.toml")})
