"""`mm7 interop vasp` and `mm7 interop mmsc`: certify a VASP's inbound endpoint, learn what an
MMSC accepts.

    mm7 interop vasp http://127.0.0.1:9000/mm7 [--user mmsc --password-env VASP_PW]
        [--tls-ca ca.pem] [--versions REL-5-MM7-1-0,REL-6-MM7-1-4] [--only 'report/*']
        [--json] [--html report.html] [--timeout 10]
    mm7 interop mmsc https://mmsc.example/mm7 --to +15551230001 [--from 12345]
        [--max-requests 40] [--user vasp --password-env MMSC_PW [--digest]] [--json]

``vasp`` exits 0 only when every case passed (1 when one failed); ``mmsc`` exits 0 when it
found a dialect to recommend (1 when the MMSC accepted no namespace/MM7Version pair). A bad
option, an unset password variable or a plan over ``--max-requests`` is one line on stderr with
exit status 2, and nothing is sent. Passwords come from the environment only (``--password-env``
names the variable), never from the command line, and are never printed.

Kept apart from ``mm7.cli.main`` (which only registers it) so aiohttp and the content package
are imported when the command runs, not on every ``mm7`` start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mm7.interop.errors import InteropError

__all__ = ["add_parser", "cmd_interop"]

#: a handset number as --to takes it: digits, optionally after '+'
_NUMBER = re.compile(r"\+?[0-9]{5,20}")
DEFAULT_MAX_REQUESTS = 40


def add_parser(sub: Any) -> None:
    """Register ``interop`` and its ``vasp`` and ``mmsc`` actions on the subparsers."""
    p = sub.add_parser("interop", help="certify a VASP endpoint, or probe what an MMSC accepts")
    actions = p.add_subparsers(dest="interop_action", metavar="ACTION", required=True)

    v = actions.add_parser("vasp", help="run the MMSC-side suite against a VASP's MM7 endpoint")
    v.add_argument("url", help="the VASP's inbound MM7 endpoint, http(s)://host:port/path")
    _auth_options(v, "the MMSC presents")
    _tls_options(v)
    v.add_argument(
        "--versions",
        default="all",
        help="schema versions to run, comma-separated (REL-5-MM7-1-0,REL-6-MM7-1-4) or all",
    )
    v.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run the cases whose name matches (shell pattern, e.g. 'report/*@REL-6*'; plain "
        "text: names beginning with it, e.g. deliver/text); repeatable",
    )
    v.add_argument("--json", action="store_true", help="print one JSON object, not the table")
    v.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    v.add_argument(
        "--timeout", type=_seconds, default=10.0, help="seconds each answer is due in (10)"
    )
    v.add_argument("--handset", default="+15551230001", help="the handset number the MMSC names")
    v.add_argument("--short-code", default="12345", help="the VASP's short code the MMSC names")

    m = actions.add_parser("mmsc", help="learn which SubmitReq shapes an MMSC accepts")
    m.add_argument("url", help="the MMSC's MM7 endpoint, http(s)://host:port/path")
    m.add_argument(
        "--to",
        required=True,
        help="the test handset: on a real MMSC every request is a real message to it",
    )
    m.add_argument("--from", dest="sender", help="SenderAddress (short code or number)")
    m.add_argument("--vasp-id", help="VASPID in SenderIdentification")
    m.add_argument("--vas-id", help="VASID in SenderIdentification")
    m.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help=f"refuse to start when the plan needs more SubmitReqs ({DEFAULT_MAX_REQUESTS})",
    )
    _auth_options(m, "the VASP presents")
    m.add_argument("--digest", action="store_true", help="HTTP Digest instead of Basic")
    _tls_options(m)
    m.add_argument(
        "--versions",
        default="all",
        help="schema versions whose namespace to try, comma-separated, or all",
    )
    m.add_argument(
        "--timeout", type=_seconds, default=30.0, help="seconds each SubmitReq may take (30)"
    )
    m.add_argument(
        "--dialect-name", default="probed", help="the name of the recommended [dialects.NAME]"
    )
    m.add_argument("--json", action="store_true", help="print one JSON object")


def _auth_options(p: argparse.ArgumentParser, who: str) -> None:
    p.add_argument("--user", help=f"HTTP Basic user {who}")
    p.add_argument(
        "--password-env",
        metavar="VAR",
        help="the environment variable holding the password (never given on the command line)",
    )


def _tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="https: the CA bundle to verify with"
    )
    p.add_argument("--tls-cert", type=Path, metavar="FILE", help="mutual TLS: our certificate")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="mutual TLS: its private key")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 600, got {text!r}")
    return value


def _quiet_logs(args: argparse.Namespace) -> None:
    """The client's events on stderr with -v, else none: stdout holds the table or the JSON,
    and a refusal the probe provokes on purpose is not a warning."""
    from mm7.transport.logs import configure_logging

    configure_logging("debug" if args.verbose else "critical", json=False)


def cmd_interop(args: argparse.Namespace) -> int:
    """Run ``vasp`` or ``mmsc``."""
    if args.interop_action == "vasp":
        return _vasp(args)
    return _mmsc(args)


def _password(args: argparse.Namespace) -> str | None:
    """The password named by --password-env (None without --user)."""
    if args.user is None:
        if args.password_env is not None:
            raise InteropError("--password-env needs --user")
        return None
    if args.password_env is None:
        raise InteropError("--user needs --password-env VAR (the variable holding the password)")
    value = os.environ.get(args.password_env)
    if not value:
        raise InteropError(f"--password-env: ${args.password_env} is not set or empty")
    return value


def _tls(args: argparse.Namespace) -> Any:
    from mm7.transport.errors import LinkConfigError
    from mm7.transport.link import TLSConfig

    if args.tls_ca is None and args.tls_cert is None and args.tls_key is None:
        return None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InteropError("--tls-cert and --tls-key go together")
    for option, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert)):
        if path is not None and not path.is_file():
            raise InteropError(f"{option}: no such file: {path}")
    try:
        return TLSConfig(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)
    except LinkConfigError as exc:
        raise InteropError(str(exc)) from None


def _versions(text: str) -> Any:
    from mm7.interop.vasp_cases import parse_versions

    try:
        return parse_versions(text)
    except KeyError as exc:
        raise InteropError(f"--versions: {exc.args[0]}") from None


def _vasp(args: argparse.Namespace) -> int:
    from mm7.interop.report import suite_html, suite_json, suite_table
    from mm7.interop.vasp_cases import Parties, build_cases, select
    from mm7.interop.vasp_suite import Target, run_suite
    from mm7.transport.errors import LinkConfigError
    from mm7.transport.link import BasicAuth, Secret

    password = _password(args)
    try:
        auth = None if password is None else BasicAuth(args.user, Secret(password))
    except LinkConfigError as exc:
        raise InteropError(f"--user: {exc}") from None
    target = Target(args.url, auth=auth, tls=_tls(args), timeout=args.timeout)
    for option, value in (("--handset", args.handset), ("--short-code", args.short_code)):
        if not _NUMBER.fullmatch(value) and not (option == "--short-code" and value.isdigit()):
            raise InteropError(
                f"{option}: expected digits (a leading '+' for a number), got {value!r}"
            )
    if args.html is not None:
        _check_writable(args.html)
    parties = Parties(handset=args.handset, short_code=args.short_code)
    run_id = "mm7i-" + uuid.uuid4().hex[:12]
    cases = build_cases(
        parties, run_id=run_id, now=datetime.now(UTC), versions=_versions(args.versions)
    )
    chosen = select(cases, args.only)
    if not chosen:
        raise InteropError(f"--only: no case matches {', '.join(map(repr, args.only))}")
    _quiet_logs(args)
    result = asyncio.run(run_suite(target, chosen))
    if args.json:
        print(json.dumps(suite_json(result), ensure_ascii=False))
    else:
        sys.stdout.write(suite_table(result))
    sys.stdout.flush()  # the results are out even if the report cannot be written after all
    if args.html is not None:
        try:
            args.html.write_text(suite_html(result), encoding="utf-8")
        except OSError as exc:
            raise InteropError(f"--html {args.html}: {exc.strerror or exc}") from None
    return 0 if result.failed == 0 else 1


def _check_writable(path: Path) -> None:
    """Refuse an --html FILE that cannot be written before anything is sent: a run's requests
    are real traffic for the VASP, and its results would otherwise be lost at the end."""
    if path.is_dir():
        raise InteropError(f"--html {path}: is a directory")
    folder = path.parent
    if not folder.is_dir():
        raise InteropError(f"--html {path}: no such folder: {folder}")
    if path.exists() and not os.access(path, os.W_OK):
        raise InteropError(f"--html {path}: not writable")
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise InteropError(f"--html {path}: the folder {folder} is not writable")


def _mmsc(args: argparse.Namespace) -> int:
    from mm7.interop.dialect_toml import check_name
    from mm7.interop.mmsc_plan import ProbeSettings
    from mm7.interop.mmsc_probe import Endpoint, check_budget, probe
    from mm7.interop.report import probe_json, probe_matrix, probe_toml
    from mm7.transport.errors import LinkConfigError
    from mm7.transport.link import BasicAuth, ClientAuth, DigestAuth, Secret

    if not _NUMBER.fullmatch(args.to):
        raise InteropError(f"--to: expected a handset number such as +15551230001, got {args.to!r}")
    if args.max_requests < 1:
        raise InteropError(f"--max-requests: expected a positive number, got {args.max_requests}")
    name = check_name(args.dialect_name)
    password = _password(args)
    if args.digest and password is None:
        raise InteropError("--digest needs --user and --password-env")
    auth: ClientAuth | None = None
    try:
        if password is not None:
            auth = (DigestAuth if args.digest else BasicAuth)(args.user, Secret(password))
    except LinkConfigError as exc:
        raise InteropError(f"--user: {exc}") from None
    settings = ProbeSettings(
        to=args.to,
        sender=args.sender,
        vasp_id=args.vasp_id,
        vas_id=args.vas_id,
        versions=_versions(args.versions),
    )
    endpoint = Endpoint(args.url, auth=auth, tls=_tls(args), timeout=args.timeout)
    check_budget(settings, args.max_requests)  # before anything is sent
    _quiet_logs(args)
    result = asyncio.run(probe(endpoint, settings, max_requests=args.max_requests))
    toml = probe_toml(result, name)
    if args.json:
        print(json.dumps(probe_json(result), ensure_ascii=False))
    else:
        sys.stdout.write(probe_matrix(result))
        if toml is not None:
            sys.stdout.write("\nrecommended dialect (paste into conf/dialects.toml):\n\n" + toml)
    return 0 if toml is not None else 1
