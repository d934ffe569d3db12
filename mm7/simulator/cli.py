"""`mm7 simulate`: run the MMSC simulator, or drive a running one through its control API.

    mm7 simulate --listen 127.0.0.1:8088 --vasp-url http://127.0.0.1:9000/mm7 --persona nokia
    mm7 simulate mo --to 12345 --from +15551230009 --text hi --media photo.jpg
    mm7 simulate personas

A ``--config`` file (TOML; command-line options win over it)::

    persona = "aggregator"          # a name, or a path to a persona .toml file
    strict = true
    path = "/mm7"
    vasp_url = "http://127.0.0.1:9000/mm7"
    vasp_user = "mmsc"              # password from $MM7_SIM_VASP_PASSWORD
    message_id_prefix = "sim"
    [dlr]                           # mm7.simulator.dlr.DlrPlan
    when = "always"
    delay = 2.0
    retrieved = 8
    rejected = 1
    expired = 1
    forwarded = 0.5
    final_delay = 10.0
    duplicate = 0.05
    out_of_order = 0.1
    [retry]                         # mm7.simulator.dlr.RetryPolicy
    mode = "strict"                 # or "lax" (a blank HTTP 200 is fine)
    max_attempts = 5
    backoff = 300.0
    [faults]                        # mm7.simulator.faults.FaultInjector.configure
    tps = 5
    max_bytes = 300000
    rates = [{ kind = "http", http_status = 503, rate = 0.05 }]

The control API has no authentication: listen on loopback unless the network is trusted.

Kept apart from ``mm7.cli.main`` (which only registers it) so the heavy imports (aiohttp, the
content package) happen when the command runs, not on every ``mm7`` start. Secrets come from the
environment: the password the simulator presents to the VASP is ``$MM7_SIM_VASP_PASSWORD``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mm7.core.errors import MM7Error

VASP_PASSWORD_ENV = "MM7_SIM_VASP_PASSWORD"
DEFAULT_CONTROL = "http://127.0.0.1:8088"
#: keys of a --config file besides the tables [dlr], [retry], [faults]
CONFIG_KEYS = {
    "persona",
    "strict",
    "path",
    "control_path",
    "vasp_url",
    "vasp_user",
    "message_id_prefix",
    "mmsc_address",
    "dlr",
    "retry",
    "faults",
}


class SimulateError(MM7Error):
    """A bad option, config file or control API answer: one line on stderr, exit status 2."""


def add_parser(sub: Any) -> None:
    """Register ``simulate`` (and its ``mo`` and ``personas`` actions) on the subparsers."""
    s = sub.add_parser(
        "simulate",
        help="run an MMSC simulator (or `simulate mo` to originate a message through one)",
    )
    s.add_argument("--listen", help="HOST:PORT to serve on (port 0: any free port)")
    s.add_argument("--vasp-url", help="where reports and MOs are POSTed")
    s.add_argument(
        "--vasp-user", help=f"Basic user towards the VASP (password: ${VASP_PASSWORD_ENV})"
    )
    s.add_argument("--persona", help="a conf/personas/<name>.toml persona (default strict-3gpp)")
    s.add_argument("--config", type=Path, help="a TOML simulator configuration file")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument(
        "--strict",
        dest="strict",
        action="store_true",
        default=None,
        help="validate every request against its schema (4004 with the reason)",
    )
    mode.add_argument(
        "--lenient", dest="strict", action="store_false", help="accept and record leniencies"
    )
    s.add_argument("--dlr-delay", type=float, help="seconds from SubmitRsp to the first report")
    s.add_argument("--dlr", choices=("requested", "always", "never"), help="when reports are sent")
    s.add_argument("--path", help="the MM7 endpoint path (default /mm7)")
    actions = s.add_subparsers(dest="simulate_action", metavar="ACTION")
    mo = actions.add_parser("mo", help="originate a DeliverReq through a running simulator")
    mo.add_argument("--simulator", default=DEFAULT_CONTROL, help="the simulator's base URL")
    mo.add_argument("--to", action="append", required=True, help="VASP address (repeatable)")
    mo.add_argument("--from", dest="sender", required=True, help="the handset's number")
    mo.add_argument("--text")
    mo.add_argument("--subject")
    mo.add_argument("--media", action="append", default=[], type=Path, help="repeatable")
    mo.add_argument("--linked-id")
    actions.add_parser("personas", help="list the persona names")


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the chosen action; the server runs until interrupted."""
    if args.simulate_action == "mo":
        return _mo(args)
    if args.simulate_action == "personas":
        from mm7.simulator.personas import load_persona, persona_names

        for name in persona_names():
            print(f"{name}: {load_persona(name).description}")
        return 0
    return _serve(args)


def build_config(args: argparse.Namespace) -> Any:
    """The SimulatorConfig from --config, then the command-line options over it."""
    from mm7.simulator.app import SimulatorConfig
    from mm7.simulator.dlr import DlrPlan, RetryPolicy
    from mm7.simulator.personas import load_persona, load_persona_file

    data: dict[str, Any] = {}
    if args.config is not None:
        try:
            data = tomllib.loads(args.config.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SimulateError(f"--config {args.config}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SimulateError(f"--config {args.config}: not valid TOML: {exc}") from None
        unknown = sorted(set(data) - CONFIG_KEYS)
        if unknown:
            raise SimulateError(f"--config {args.config}: unknown key(s) {', '.join(unknown)}")
    persona_name = args.persona or data.get("persona") or "strict-3gpp"
    persona_path = Path(persona_name)
    if persona_path.suffix == ".toml":
        if not persona_path.is_absolute() and args.config is not None:
            persona_path = args.config.parent / persona_path
        persona = load_persona_file(persona_path)
    else:
        persona = load_persona(persona_name)
    dlr = dict(_table(data, "dlr"))
    if args.dlr_delay is not None:
        dlr["delay"] = args.dlr_delay
    if args.dlr is not None:
        dlr["when"] = args.dlr
    strict = args.strict if args.strict is not None else data.get("strict")
    user = args.vasp_user or data.get("vasp_user")
    auth = None
    if user:
        password = os.environ.get(VASP_PASSWORD_ENV)
        if not password:
            raise SimulateError(f"--vasp-user needs the password in ${VASP_PASSWORD_ENV}")
        auth = (str(user), password)
    try:
        return SimulatorConfig(
            persona=persona,
            strict=strict,
            path=args.path or data.get("path", "/mm7"),
            control_path=data.get("control_path", "/control"),
            vasp_url=args.vasp_url or data.get("vasp_url"),
            vasp_auth=auth,
            dlr=DlrPlan.from_mapping(dlr),
            retry=RetryPolicy.from_mapping(_table(data, "retry")),
            faults=_table(data, "faults"),
            message_id_prefix=data.get("message_id_prefix", "sim"),
            mmsc_address=data.get("mmsc_address", "mmsc"),
        )
    except (ValueError, TypeError) as exc:
        raise SimulateError(str(exc)) from None


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise SimulateError(f"config: [{key}] must be a table")
    return value


def _listen(text: str | None) -> tuple[str, int]:
    if not text:
        raise SimulateError("--listen HOST:PORT is required to run the simulator")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise SimulateError(f"--listen: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from aiohttp import web

    from mm7.simulator.app import create_simulator_app

    host, port = _listen(args.listen)
    config = build_config(args)
    # validated now: a fault section with a typo fails here, not at the first request
    app = create_simulator_app(config)

    async def run() -> None:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        base = f"http://{host}:{bound}"
        if host not in ("127.0.0.1", "::1", "localhost"):
            print(f"warning: the control API on {host} has no authentication", file=sys.stderr)
        print(
            f"mm7 simulator ({config.persona.name}, "
            f"{'strict' if config.is_strict else 'lenient'}) on {base}{config.path}; "
            f"control API {base}{config.control_path}; reports to {config.vasp_url or '(none)'}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(run())
    return 0


def _mo(args: argparse.Namespace) -> int:
    media = []
    for path in args.media:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SimulateError(f"--media {path}: {exc.strerror or exc}") from None
        media.append({"filename": path.name, "data": base64.b64encode(data).decode("ascii")})
    payload: dict[str, Any] = {"to": args.to, "from": args.sender, "media": media}
    for key in ("text", "subject", "linked_id"):
        value = getattr(args, key)
        if value is not None:
            payload[key] = value
    answer = control_post(args.simulator, "/control/mo", payload)
    print(json.dumps(answer, indent=2))
    return 0 if answer.get("ok") else 1


def control_post(base: str, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """POST JSON to a running simulator's control API; its JSON answer (SimulateError if not)."""
    request = urllib.request.Request(
        base.rstrip("/") + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (operator URL)
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        raise SimulateError(f"simulator answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SimulateError(f"cannot reach the simulator at {base}: {exc}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise SimulateError("the simulator's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise SimulateError("the simulator's answer is not a JSON object")
    return answer
