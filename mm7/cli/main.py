"""The `mm7` command: compose, inspect and validate MM7 messages, and write the schemas.

    mm7 compose --to +12025550001 --text hi --media photo.jpg -o submit.mime
    mm7 compose --to +12025550001 --media a.jpg b.jpg --text hi --profile mms-300k -o s.mime
    mm7 inspect capture.http --json
    mm7 validate submit.mime [--schema-dir DIR]

Exit status: 0 success (valid), 1 invalid against the schema (validate), 2 unreadable input or a
bad option. Bad input of any shape is reported as ONE line on stderr naming where and what was
expected -- never a traceback. Only the MM7Error family (and UsageError for options and files) is
caught: any other exception is a bug and is left to surface, so that tests find it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from lxml import etree

from mm7 import __version__
from mm7.content.builder import build_presentation, find_smil, from_part, to_part
from mm7.content.model import Layout, MediaItem, Presentation, Slide
from mm7.content.parts import Source, make_items, text_source
from mm7.content.smil import DEFAULT_DURATION_MS, parse_duration
from mm7.core.capture import max_capture_bytes, read_capture
from mm7.core.codec import decode, encode
from mm7.core.dialect import DIALECTS, Dialect, get_dialect
from mm7.core.errors import LimitExceededError, MM7Error
from mm7.core.jsonview import leaf_parts, message_fields, part_summary
from mm7.core.mime import ContentType, Part, make_multipart, make_part, parse_swa
from mm7.core.model import Address, Fault, Priority, Recipients, Response, SubmitReq
from mm7.core.sniff import sniff
from mm7.core.validate import validate_envelope
from mm7.core.values import parse_relative_or_absolute
from mm7.core.versions import SOAP_ENV_NS, get_version
from mm7.core.xmlsafe import parse_xml
from mm7.interop import cli as interop_cli
from mm7.service import cli as service_cli
from mm7.simulator import cli as simulate_cli

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2
#: 128 + SIGPIPE, what a shell reports when the reader of our output went away
EXIT_BROKEN_PIPE = 141


class UsageError(MM7Error):
    """A bad command-line value or an unreadable file: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_UNREADABLE, f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def _priority(text: str) -> Priority:
    """--priority value, case-insensitive (Mbuni users write 'normal')."""
    for p in Priority:
        if p.value.lower() == text.strip().lower():
            return p
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(p.value for p in Priority)}, got {text!r}"
    )


def _slide_duration(text: str) -> int:
    """--slide-duration in milliseconds: seconds ("5", "1.5"), or with a unit ("2500ms", "5s")."""
    ms = parse_duration(text)
    if ms is None or ms <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration such as 5, 5s or 2500ms, got {text!r}"
        )
    return ms


def _layout(text: str) -> Layout:
    """--layout value: one of the Layout names, case-insensitive."""
    try:
        return Layout(text.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(x.value for x in Layout)}, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command (also what `--help` prints)."""
    parser = _Parser(prog="mm7", description="3GPP MM7 (TS 23.140) gateway toolkit")
    parser.add_argument("--version", action="version", version=f"mm7 {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the codec's debug events to stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser(
        "compose",
        help="write a SubmitReq as a MIME entity: Content-Type header, blank line, HTTP body",
    )
    c.add_argument("--mm7-version", default=None, help="schema version, e.g. REL-6-MM7-1-4")
    c.add_argument("--version-value", default=None, help="MM7Version element value, e.g. 6.8.0")
    c.add_argument("--dialect", default="3gpp", help=f"one of: {', '.join(DIALECTS)}")
    c.add_argument("--vasp-id")
    c.add_argument("--vas-id")
    c.add_argument("--from", dest="sender", help="sender address (number, short code or e-mail)")
    c.add_argument("--to", action="append", default=[], required=True, help="repeatable")
    c.add_argument("--cc", action="append", default=[], help="repeatable")
    c.add_argument("--bcc", action="append", default=[], help="repeatable")
    c.add_argument("--subject")
    c.add_argument("--text", help="a text/plain part (UTF-8)")
    c.add_argument(
        "--media",
        action="extend",
        nargs="+",
        default=[],
        metavar="FILE",
        help="media files; the type is read from the bytes, not the name",
    )
    c.add_argument(
        "--smil",
        default="auto",
        metavar="auto|none|FILE",
        help="auto: a SMIL presentation when there is more than one part (or the profile requires "
        "it; a SMIL file among --media is used as the presentation); none: parts without SMIL; "
        "FILE: your SMIL, checked against the parts (src by cid: or file name)",
    )
    c.add_argument(
        "--slide-duration",
        type=_slide_duration,
        default=DEFAULT_DURATION_MS,
        metavar="SECONDS",
        help="how long each generated slide shows: 5, 1.5, 5s or 2500ms (default 5 s)",
    )
    c.add_argument(
        "--layout",
        type=_layout,
        default=Layout.PORTRAIT_TEXT_BELOW,
        metavar="LAYOUT",
        help=f"SMIL layout, one of: {', '.join(x.value for x in Layout)} (default portrait: "
        "image above text)",
    )
    c.add_argument(
        "--profile",
        metavar="NAME|FILE",
        help="fit the content to a carrier profile (conf/profiles/NAME.toml or a .toml file); "
        "what was changed is printed to stderr",
    )
    c.add_argument("--service-code")
    c.add_argument("--linked-id")
    c.add_argument("--delivery-report", action="store_true", default=None)
    c.add_argument("--read-reply", action="store_true", default=None)
    c.add_argument("--priority", type=_priority, help="High, Normal or Low")
    c.add_argument("--expiry", help="ISO 8601 date-time or xsd:duration (P1D)")
    c.add_argument("--transaction-id")
    c.add_argument("-o", "--output", required=True, help="output file, '-' for stdout")

    i = sub.add_parser("inspect", help="show what an MM7 message, capture or MIME entity holds")
    i.add_argument("file", help="a capture, MIME entity or SOAP XML file; '-' for stdin")
    i.add_argument("--json", action="store_true", help="print one JSON object")

    v = sub.add_parser("validate", help="check the SOAP part against the schema of its namespace")
    v.add_argument("file", help="a capture, MIME entity or SOAP XML file; '-' for stdin")
    v.add_argument("--schema-dir", default=None, help="folder of <REL-x-MM7-1-y>.xsd files")

    x = sub.add_parser("schemas", help="write the project's XSDs (generated from the codec table)")
    x.add_argument("folder", type=Path)

    simulate_cli.add_parser(sub)
    interop_cli.add_parser(sub)
    service_cli.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (also for --help, --version and usage errors)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed already
        return exc.code if isinstance(exc.code, int) else EXIT_UNREADABLE
    command: Callable[[argparse.Namespace], int] = _COMMANDS[args.command]
    with _logging(verbose=args.verbose):
        try:
            return command(args)
        except (MM7Error, UsageError) as exc:
            print(one_line(f"mm7 {args.command}: {exc}"), file=sys.stderr)
            return EXIT_UNREADABLE
        except BrokenPipeError:
            # The reader of our output went away (mm7 inspect x | head): not an error of ours.
            # Point stdout at /dev/null so the interpreter's final flush does not fail again.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE


def one_line(text: str) -> str:
    """``text`` as a single printable line: line breaks become spaces, controls are escaped."""
    flat = re.sub(r"\s*[\r\n]+\s*", " ", text.strip())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)


@contextlib.contextmanager
def _logging(*, verbose: bool) -> Iterator[None]:
    """With -v, show the core's debug events (leniencies applied) on stderr; else stay silent.

    The core logs through stdlib logging, silent unless enabled, so stdout stays clean for --json.
    """
    if not verbose:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("mm7")
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


# --------------------------------------------------------------------------- files


def _read_file(name: str, what: str = "", limit: int | None = None) -> bytes:
    """Bytes of file ``name`` ('-' is stdin); UsageError naming it and the option if unreadable."""
    cap = max_capture_bytes() if limit is None else limit
    label = f"{what} {name}" if what else name
    try:
        if name == "-":
            data = sys.stdin.buffer.read(cap + 1)
        else:
            with open(name, "rb") as fh:
                data = fh.read(cap + 1)
    except FileNotFoundError:
        raise UsageError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{label}: is a directory, expected a file") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot read: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise LimitExceededError(f"over the limit of {cap} bytes", where=label)
    return data


def _write_output(name: str, data: bytes) -> None:
    """Write ``data`` to file ``name`` or, for '-', to stdout."""
    if name == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        Path(name).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"-o {name}: cannot write: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- compose


def _dialect(args: argparse.Namespace) -> Dialect:
    """The dialect to write with: --dialect, moved to --mm7-version / --version-value."""
    try:
        dialect = get_dialect(args.dialect)
    except KeyError as exc:
        raise UsageError(f"--dialect: {exc.args[0]}") from None
    if args.mm7_version or args.version_value:
        try:
            version = get_version(args.mm7_version) if args.mm7_version else dialect.version
        except KeyError as exc:
            raise UsageError(f"--mm7-version: {exc.args[0]}") from None
        try:
            dialect = dialect.with_version(version, args.version_value)
        except MM7Error as exc:
            raise UsageError(f"--version-value: {exc}") from None
    return dialect


def _media_source(name: str) -> Source:
    """A --media file as a content source; its type is sniffed from the bytes later."""
    data = _read_file(name, "--media")
    if not data:
        raise UsageError(f"--media {name}: the file is empty")
    return Source(data, filename=name)


def compose_content(
    text: str | None,
    media: Sequence[str],
    *,
    smil: str = "auto",
    layout: Layout = Layout.PORTRAIT_TEXT_BELOW,
    slide_duration_ms: int = DEFAULT_DURATION_MS,
    profile: str | None = None,
    report: Callable[[str], None] | None = None,
) -> Part | None:
    """The MM content of --media files (in order) and --text (last), or None without any.

    A single part goes alone unless SMIL is asked for (``smil`` a file, or a profile that
    requires it); several parts become multipart/related with a SMIL presentation built by the
    default slide rule (``smil="none"``: the parts only). A SMIL file among the media is taken
    as the presentation. With ``profile`` the presentation is fitted to that carrier profile
    and each change is passed to ``report``.
    """
    sources = [_media_source(name) for name in media]
    smil_bytes: bytes | None = None
    if smil not in ("auto", "none"):
        smil_bytes = _read_file(smil, "--smil")
    given = [s for s in sources if sniff(s.data) == "application/smil"]
    if given and smil != "none":
        if smil_bytes is not None or len(given) > 1:
            raise UsageError("--media: more than one SMIL presentation given (files or --smil)")
        smil_bytes = given[0].data
        sources.remove(given[0])
    if text is not None:
        sources.append(text_source(text, filename="text.txt"))
    if not sources:
        if smil_bytes is not None:
            raise UsageError("--smil: a SMIL presentation needs --media or --text parts")
        return None
    loaded = None
    if profile is not None:
        from mm7.content.profile import load_profile

        loaded = load_profile(profile)
        if loaded.smil_required and smil == "none":
            raise UsageError(f"--smil none: profile {loaded.name} requires SMIL in every message")
    refuse = loaded is not None and loaded.on_type_mismatch == "refuse"
    items = make_items(sources, on_mismatch="refuse" if refuse else "correct")
    presentation = build_presentation(
        items, smil=smil_bytes, layout=layout, slide_duration_ms=slide_duration_ms
    )
    if loaded is not None:
        from mm7.content.fit import fit_to_profile

        result = fit_to_profile(presentation, loaded, to_part=to_part)
        presentation = result.presentation
        for change in result.changes:
            if report is not None:
                report(change.describe())
    if smil == "none":
        return _without_smil(presentation.items)
    smil_required = loaded is not None and loaded.smil_required
    if smil_bytes is None and not smil_required and len(presentation.items) == 1:
        return _item_part(presentation.items[0])
    return to_part(presentation)


def _item_part(item: MediaItem) -> Part:
    params = {"charset": item.charset} if item.charset else {}
    return make_part(
        item.data,
        ContentType(item.media_type, params),
        content_id=item.content_id,
        content_location=item.content_location,
    )


def _without_smil(items: Sequence[MediaItem]) -> Part:
    """--smil none: one item alone, several as multipart/related rooted at the first."""
    parts = [_item_part(item) for item in items]
    if len(parts) == 1:
        return parts[0]
    return make_multipart(
        parts, "related", params={"type": parts[0].content_type.mime_type}, content_id="mm7-content"
    )


def _addresses(option: str, values: Sequence[str]) -> tuple[Address, ...]:
    """Addresses for --to/--cc/--bcc/--from (kind guessed); an empty one is a usage error."""
    for value in values:
        if not value.strip():
            raise UsageError(f"{option}: empty address")
    return tuple(Address.guess(v) for v in values)


def cmd_compose(args: argparse.Namespace) -> int:
    """Write a SubmitReq as a MIME entity: exactly the HTTP body, behind its Content-Type."""
    dialect = _dialect(args)
    expiry = None
    if args.expiry is not None:
        try:
            expiry = parse_relative_or_absolute(args.expiry)
        except MM7Error:
            raise UsageError(
                f"--expiry: expected an ISO 8601 date-time (2026-01-02T03:04:05Z) or an "
                f"xsd:duration (P1D, PT12H), got {args.expiry!r}"
            ) from None
    message = SubmitReq(
        transaction_id=args.transaction_id or datetime.now(UTC).strftime("mm7-%Y%m%d%H%M%S%f"),
        vasp_id=args.vasp_id,
        vas_id=args.vas_id,
        sender_address=_addresses("--from", [args.sender])[0] if args.sender is not None else None,
        recipients=Recipients(
            to=_addresses("--to", args.to),
            cc=_addresses("--cc", args.cc),
            bcc=_addresses("--bcc", args.bcc),
        ),
        service_code=args.service_code,
        linked_id=args.linked_id,
        delivery_report=args.delivery_report,
        read_reply=args.read_reply,
        priority=args.priority,
        subject=args.subject,
        expiry_date=expiry,
        content=compose_content(
            args.text,
            args.media,
            smil=args.smil,
            layout=args.layout,
            slide_duration_ms=args.slide_duration,
            profile=args.profile,
            report=lambda change: print(one_line(f"mm7 compose: {change}"), file=sys.stderr),
        ),
    )
    encoded = encode(message, dialect)
    _write_output(
        args.output,
        b"Content-Type: " + encoded.content_type.encode("ascii") + b"\r\n\r\n" + encoded.body,
    )
    return EXIT_OK


# --------------------------------------------------------------------------- inspect


def inspect_bytes(raw: bytes) -> dict[str, Any]:
    """What `mm7 inspect --json` prints for ``raw`` (an MM7Error when it is not readable)."""
    capture = read_capture(raw)
    decoded = decode(capture.body, capture.content_type)
    msg = decoded.message
    status = None
    found = msg.status if isinstance(msg, Response | Fault) else None
    if found is not None:
        status = {"code": found.code, "text": found.text}
        if found.details:
            status["details"] = found.details
    content: Part | None = getattr(msg, "content", None)
    if content is not None:
        media = leaf_parts(content)
    else:  # parts no Content element points at (e.g. a Cancel with an attachment)
        media = [leaf for p in decoded.parts for leaf in leaf_parts(p)]
    result: dict[str, Any] = {
        "operation": decoded.operation,
        "namespace": msg.namespace,
        "schema_version": decoded.version.token if decoded.version else None,
        "mm7_version": msg.mm7_version,
        "transaction_id": msg.transaction_id,
        "status": status,
        "fields": message_fields(msg),
        "parts": [part_summary(p) for p in media],
        "leniencies": [str(x) for x in dict.fromkeys(capture.leniencies + decoded.leniencies)],
        # schema-required elements absent, read anyway (leniency required-element-missing)
        "missing": list(decoded.missing),
        "capture": capture.kind,
        "content_type": capture.content_type,
    }
    presentation = _presentation(content)
    if presentation is not None:
        result["layout"] = presentation.layout.value
        result["slides"] = [_slide_json(slide, presentation) for slide in presentation.slides]
    if capture.start_line:
        result["start_line"] = capture.start_line
    if capture.http_status is not None:
        result["http_status"] = capture.http_status
    return result


def _presentation(content: Part | None) -> Presentation | None:
    """The slides of content that carries SMIL (None for content without a presentation)."""
    if content is None or find_smil(content) is None:
        return None
    return from_part(content)


_PREVIEW = 200  # characters of a slide's text shown by inspect


def _slide_json(slide: Slide, presentation: Presentation) -> dict[str, Any]:
    """One slide for `inspect --json`: duration, then each shown part (text with its words)."""
    out: dict[str, Any] = {"duration_ms": slide.duration_ms}
    for slot in ("visual", "text", "audio"):
        cid = getattr(slide, slot)
        if cid is not None:
            out[slot] = _item_json(presentation.item(cid))
    if slide.refs:
        out["refs"] = [_item_json(presentation.item(cid)) for cid in slide.refs]
    return out


def _item_json(item: MediaItem) -> dict[str, Any]:
    out: dict[str, Any] = {
        "content_id": item.content_id,
        "content_type": item.media_type,
        "content_location": item.content_location,
        "size": len(item.data),
    }
    if item.kind == "text":
        out["text"] = item.data.decode(item.charset or "utf-8", "replace")[:_PREVIEW]
    return out


def _slide_line(number: int, slide: dict[str, Any]) -> str:
    """One slide as a line of `inspect` text output."""
    shown = []
    for slot in ("visual", "text", "audio"):
        item = slide.get(slot)
        if item is None:
            continue
        if slot == "text":
            words = item["text"] if len(item["text"]) <= 40 else item["text"][:39] + "…"
            shown.append(f"text {json.dumps(words, ensure_ascii=False)}")
        else:
            shown.append(f"{item['content_type']} {item['content_id']}")
    shown.extend(f"ref {r['content_type']} {r['content_id']}" for r in slide.get("refs", ()))
    return f"slide {number} ({slide['duration_ms'] / 1000:g} s): {', '.join(shown) or 'empty'}"


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what a capture holds, as text or (--json) one JSON object."""
    info = inspect_bytes(_read_file(args.file))
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"{info['operation']}  ({info['namespace']}, MM7Version {info['mm7_version']})")
    if "start_line" in info:
        print(f"  {info['capture']}: {info['start_line']}")
    print(f"  TransactionID: {info['transaction_id']}")
    if info["status"]:
        print(f"  Status: {info['status']['code']} {info['status']['text']}")
    for key, value in info["fields"].items():
        print(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    for n, part in enumerate(info["parts"], start=1):
        cid = part.get("content_id") or "-"
        print(f"  part {n}: {part['content_type']}  cid={cid}  {part['size']} bytes")
    for n, slide in enumerate(info.get("slides", ()), start=1):
        print("  " + one_line(_slide_line(n, slide)))
    if info["leniencies"]:
        print(f"  leniencies: {', '.join(info['leniencies'])}")
    if info["missing"]:
        print(f"  missing (required by the schema): {', '.join(info['missing'])}")
    return EXIT_OK


# --------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    """Check the SOAP part against the schema of its namespace: 0 valid, 1 invalid, 2 unreadable."""
    schema_dir: str | None = args.schema_dir
    if schema_dir is not None and not Path(schema_dir).is_dir():
        raise UsageError(f"--schema-dir {schema_dir}: no such folder")
    capture = read_capture(_read_file(args.file))
    swa = parse_swa(capture.body, capture.content_type)
    root = parse_xml(swa.soap, mime_charset=swa.soap_charset)
    try:
        report = validate_envelope(root, schema_dir)
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise UsageError(f"--schema-dir {schema_dir}: cannot load a schema: {exc}") from None
    if report.valid:
        print(f"valid: {report.element} against {report.namespace}")
        return EXIT_OK
    print(f"invalid: {report.element} ({report.namespace})")
    for err in report.errors:
        print(f"  {one_line(_short_names(err, report.namespace))}")
    return EXIT_INVALID


def _short_names(text: str, namespace: str | None) -> str:
    """lxml's {uri}Name written as mm7:Name / env:Name, so that a reason fits on a screen."""
    if namespace:
        text = text.replace("{" + namespace + "}", "mm7:")
    return text.replace("{" + SOAP_ENV_NS + "}", "env:")


# --------------------------------------------------------------------------- schemas


def cmd_schemas(args: argparse.Namespace) -> int:
    """Write the generated XSDs into a folder, one path per line."""
    from mm7.core.xsdgen import write_schemas

    try:
        paths = write_schemas(args.folder)
    except OSError as exc:
        raise UsageError(f"{args.folder}: cannot write: {exc.strerror or exc}") from None
    for path in paths:
        print(path)
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "compose": cmd_compose,
    "inspect": cmd_inspect,
    "validate": cmd_validate,
    "schemas": cmd_schemas,
    "simulate": simulate_cli.cmd_simulate,
    "interop": interop_cli.cmd_interop,
    "serve": service_cli.cmd_serve,
    "init": service_cli.cmd_init,
    "send": service_cli.cmd_send,
    "demo": service_cli.cmd_demo,
    "relay": service_cli.cmd_relay,
    "store": service_cli.cmd_store,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
