"""The `mm7` command: compose, inspect and validate MM7 messages (later: serve, simulate).

Malformed input exits 2 with one line on stderr naming the problem; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mm7 import __version__
from mm7.core.capture import read_capture
from mm7.core.codec import decode, encode
from mm7.core.dialect import DIALECTS, STRICT_3GPP, Dialect, DialectError, get_dialect
from mm7.core.errors import MM7Error, ParseError
from mm7.core.jsonview import leaf_parts, message_fields, part_summary
from mm7.core.mime import Part, make_multipart, make_part, parse_swa
from mm7.core.model import Address, Fault, Priority, Recipients, Response, SubmitReq
from mm7.core.sniff import sniff
from mm7.core.validate import validate_envelope
from mm7.core.values import parse_relative_or_absolute
from mm7.core.versions import get_version
from mm7.core.xmlsafe import parse_xml

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


class UsageError(Exception):
    """A bad command-line value: reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mm7", description="3GPP MM7 gateway toolkit")
    parser.add_argument("--version", action="version", version=f"mm7 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compose", help="write a SubmitReq as a MIME entity (what goes on the wire)")
    c.add_argument("--mm7-version", default=None, help="schema version, e.g. REL-6-MM7-1-4")
    c.add_argument("--version-value", default=None, help="MM7Version element value, e.g. 6.8.0")
    c.add_argument("--dialect", default="3gpp", choices=sorted(DIALECTS))
    c.add_argument("--vasp-id")
    c.add_argument("--vas-id")
    c.add_argument("--from", dest="sender", help="sender address (number, short code or e-mail)")
    c.add_argument("--to", action="append", default=[], required=True)
    c.add_argument("--cc", action="append", default=[])
    c.add_argument("--bcc", action="append", default=[])
    c.add_argument("--subject")
    c.add_argument("--text")
    c.add_argument("--media", action="append", default=[], type=Path)
    c.add_argument("--service-code")
    c.add_argument("--linked-id")
    c.add_argument("--delivery-report", action="store_true", default=None)
    c.add_argument("--read-reply", action="store_true", default=None)
    c.add_argument("--priority", choices=[p.value for p in Priority])
    c.add_argument("--expiry", help="ISO 8601 date-time or xsd:duration (P1D)")
    c.add_argument("--transaction-id")
    c.add_argument("-o", "--output", type=Path, required=True)

    i = sub.add_parser("inspect", help="show what an MM7 message, capture or MIME entity holds")
    i.add_argument("file", type=Path)
    i.add_argument("--json", action="store_true")

    v = sub.add_parser("validate", help="check the SOAP part against the schema of its namespace")
    v.add_argument("file", type=Path)
    v.add_argument("--schema-dir", default=None, help="folder of <REL-x-MM7-1-y>.xsd files")

    x = sub.add_parser("schemas", help="write the project's XSDs (generated from the codec table)")
    x.add_argument("folder", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compose":
            return cmd_compose(args)
        if args.command == "inspect":
            return cmd_inspect(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "schemas":
            from mm7.core.xsdgen import write_schemas

            for path in write_schemas(args.folder):
                print(path)
            return EXIT_OK
    except (MM7Error, UsageError, DialectError, KeyError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mm7 {args.command}: {message}", file=sys.stderr)
        return EXIT_UNREADABLE
    return EXIT_UNREADABLE  # pragma: no cover


def _dialect(args: argparse.Namespace) -> Dialect:
    dialect = get_dialect(args.dialect) if args.dialect else STRICT_3GPP
    if args.mm7_version or args.version_value:
        version = get_version(args.mm7_version) if args.mm7_version else dialect.version
        dialect = dialect.with_version(version, args.version_value)
    return dialect


def _media_part(path: Path, index: int) -> Part:
    data = path.read_bytes()
    mime = sniff(data)
    if mime == "text/plain":
        mime = "text/plain; charset=utf-8"
    return make_part(data, mime, content_id=f"part{index}", content_location=path.name)


def compose_content(text: str | None, media: Sequence[Path]) -> Part | None:
    """One part for a single item, else multipart/related of the parts (SMIL arrives later)."""
    parts = [_media_part(p, n) for n, p in enumerate(media, start=1)]
    if text is not None:
        parts.append(
            make_part(
                text.encode("utf-8"),
                "text/plain; charset=utf-8",
                content_id="text",
                content_location="text.txt",
            )
        )
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return make_multipart(parts, "related", content_id="mm7-content")


def cmd_compose(args: argparse.Namespace) -> int:
    dialect = _dialect(args)
    expiry = parse_relative_or_absolute(args.expiry) if args.expiry else None
    message = SubmitReq(
        transaction_id=args.transaction_id or datetime.now(UTC).strftime("mm7-%Y%m%d%H%M%S%f"),
        vasp_id=args.vasp_id,
        vas_id=args.vas_id,
        sender_address=Address.guess(args.sender) if args.sender else None,
        recipients=Recipients(
            to=tuple(Address.guess(a) for a in args.to),
            cc=tuple(Address.guess(a) for a in args.cc),
            bcc=tuple(Address.guess(a) for a in args.bcc),
        ),
        service_code=args.service_code,
        linked_id=args.linked_id,
        delivery_report=args.delivery_report,
        read_reply=args.read_reply,
        priority=Priority(args.priority) if args.priority else None,
        subject=args.subject,
        expiry_date=expiry,
        content=compose_content(args.text, args.media),
    )
    encoded = encode(message, dialect)
    args.output.write_bytes(
        b"Content-Type: " + encoded.content_type.encode() + b"\r\n\r\n" + encoded.body
    )
    return EXIT_OK


def inspect_bytes(raw: bytes) -> dict[str, Any]:
    """What `mm7 inspect --json` prints for ``raw`` (ParseError when it is not readable)."""
    capture = read_capture(raw)
    decoded = decode(capture.body, capture.content_type)
    msg = decoded.message
    status = None
    if isinstance(msg, Response):
        status = {"code": msg.status.code, "text": msg.status.text}
        if msg.status.details:
            status["details"] = msg.status.details
    elif isinstance(msg, Fault) and msg.status is not None:
        status = {"code": msg.status.code, "text": msg.status.text}
    parts: list[dict[str, Any]] = []
    content = getattr(msg, "content", None)
    if content is not None:
        parts = [part_summary(p) for p in leaf_parts(content)]
    result: dict[str, Any] = {
        "operation": decoded.operation,
        "namespace": msg.namespace,
        "schema_version": decoded.version.token if decoded.version else None,
        "mm7_version": msg.mm7_version,
        "transaction_id": msg.transaction_id,
        "status": status,
        "fields": message_fields(msg),
        "parts": parts,
        "leniencies": [str(x) for x in decoded.leniencies],
        "capture": capture.kind,
    }
    if capture.http_status is not None:
        result["http_status"] = capture.http_status
    return result


def cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_bytes(args.file.read_bytes())
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"{info['operation']}  ({info['namespace']}, MM7Version {info['mm7_version']})")
    print(f"  TransactionID: {info['transaction_id']}")
    if info["status"]:
        print(f"  Status: {info['status']['code']} {info['status']['text']}")
    for key, value in info["fields"].items():
        print(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    for n, part in enumerate(info["parts"], start=1):
        cid = part.get("content_id") or "-"
        print(f"  part {n}: {part['content_type']}  cid={cid}  {part['size']} bytes")
    if info["leniencies"]:
        print(f"  leniencies: {', '.join(info['leniencies'])}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    capture = read_capture(args.file.read_bytes())
    swa = parse_swa(capture.body, capture.content_type)
    root = parse_xml(swa.soap, mime_charset=swa.soap_charset)
    if args.schema_dir is not None and not Path(args.schema_dir).is_dir():
        raise ParseError(f"schema folder {args.schema_dir} does not exist", where="--schema-dir")
    report = validate_envelope(root, args.schema_dir)
    if report.valid:
        print(f"valid: {report.element} against {report.namespace}")
        return EXIT_OK
    print(f"invalid: {report.element} ({report.namespace})")
    for err in report.errors:
        print(f"  {err}")
    return EXIT_INVALID



if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
