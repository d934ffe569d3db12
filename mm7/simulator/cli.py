r"""`mm7 simulate`: run the MMSC simulator, or drive a running one through its control API.

    mm7 simulate --listen 127.0.0.1:8088 --vasp-url http://127.0.0.1:9000/mm7 --persona nokia
    mm7 simulate mo --to 12345 --from +12025550009 --text hi --media photo.jpg
    mm7 simulate personas
    mm7 simulate scenarios
    mm7 simulate --listen 127.0.0.1:8088 --vasp-url http://127.0.0.1:9000/mm7 \
        --scenario carrier-throttling          # a name, or a path to a scenario .toml file
    mm7 simulate --listen 127.0.0.1:8443 --tls-cert mmsc.crt --tls-key mmsc.key \
        --client-ca vasp-ca.crt
    mm7 simulate mo --simulator https://127.0.0.1:8443 --cacert ca.crt \
        --cert vasp.crt --key vasp.key --to 12345 --from +12025550009 --text hi

A ``--config`` file (TOML; command-line options win over it)::

    persona = "aggregator"          # a name, or a path to a persona .toml file
    strict = true
    path = "/mm7"
    vasp_url = "http://127.0.0.1:9000/mm7"
    vasp_user = "mmsc"              # password from $MM7_SIM_VASP_PASSWORD
    message_id_prefix = "sim"
    tls_cert = "server.crt"         # serve HTTPS (paths relative to this file)
    tls_key = "server.key"
    client_ca = "vasp-ca.crt"       # mutual TLS: VASP certificates from this CA
    require_client_cert = true      # false: optional in TLS, the client_cert fault decides
    scenario = "slow-answers"       # run at start: a name, or a .toml path (relative to this file)
    max_exchanges = 1000            # the traffic record: a ring of this many exchanges
    max_body_bytes = 67108864       # whole bodies kept for the newest exchanges' detail view
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
    no_mms = "+12025550002"         # handsets that cannot take MMS: their report is Rejected
    [retry]                         # mm7.simulator.dlr.RetryPolicy
    mode = "strict"                 # or "lax" (a blank HTTP 200 is fine)
    max_attempts = 5
    backoff = 300.0
    [faults]                        # mm7.simulator.faults.FaultInjector.configure
    tps = 5
    max_bytes = 300000
    rates = [{ kind = "http", http_status = 503, rate = 0.05 }]
    digest_auth = { user = "vasp", password = "test-only", realm = "mmsc" }

The server logs on stderr (``mm7.simulator.started`` with its addresses, ``...stopped``, and
what aiohttp and the transport log) through the gateway's renderer (``mm7.transport.logs``):
readable lines, or JSON lines with ``--log-json``; timestamps in UTC, ISO 8601, as the gateway's.

The control API has no authentication of its own: listen on loopback unless the network is
trusted. With ``--client-ca`` (mutual TLS required in the handshake) it sits behind the same
client-certificate check as the MM7 endpoint, so ``simulate mo`` then needs ``--cert/--key``.
Digest and Basic requirements (``[faults]`` digest_auth / basic_auth, or the persona's ``[auth]``)
apply to the MM7 endpoint only.

Kept apart from ``mm7.cli.main`` (which only registers it) so the heavy imports (aiohttp, the
content package) happen when the command runs, not on every ``mm7`` start. Secrets come from the
environment: the password the simulator presents to the VASP is ``$MM7_SIM_VASP_PASSWORD``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mm7.core.errors import MM7Error
from mm7.transport.json_post import JSONPostError, post_json

VASP_PASSWORD_ENV = "MM7_SIM_VASP_PASSWORD"
DEFAULT_CONTROL = "http://127.0.0.1:8088"
#: the listener's bounds (mm7.transport.listener.ListenerLimits), as options and config keys
LIMIT_KEYS = ("header_timeout", "body_timeout", "keepalive_timeout", "max_connections")
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
    "tls_cert",
    "tls_key",
    "client_ca",
    "require_client_cert",
    "scenario",
    "max_exchanges",
    "max_body_bytes",
    *LIMIT_KEYS,
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
    s.add_argument(
        "--scenario",
        help="run a scenario at start: a name (`mm7 simulate scenarios`) or a .toml file",
    )
    s.add_argument(
        "--max-exchanges",
        type=int,
        help="exchanges the traffic record (and the /ui console) keeps, both directions "
        "(default 1000)",
    )
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
    s.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    s.add_argument(
        "--client-ca",
        type=Path,
        help="mutual TLS: require a client certificate issued by this CA (PEM)",
    )
    s.add_argument(
        "--client-cert-optional",
        action="store_true",
        default=None,
        help="with --client-ca: let certificate-less clients connect (the client_cert fault "
        "then refuses them with 403 + 4001 when set)",
    )
    s.add_argument(
        "--header-timeout",
        type=float,
        help="seconds a request's line and headers may take from their first byte (default 10)",
    )
    s.add_argument(
        "--body-timeout",
        type=float,
        help="seconds an unfinished request body may stay idle (default 15)",
    )
    s.add_argument(
        "--keepalive-timeout",
        type=float,
        help="seconds an idle connection is kept between requests (default 60)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        help="open connections; at the limit the one waiting longest on its peer makes room "
        "(default 256)",
    )
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="N processes answer MM7 on the port (SO_REUSEPORT, Linux) under a parent that keeps "
        "the one control API, traffic record and console; uses more cores, does not make a "
        "request cheaper (default 1: one process)",
    )
    s.add_argument(
        "--log-json",
        action="store_true",
        help="log JSON lines on stderr (default: readable lines; UTC ISO 8601 timestamps either "
        "way, as the gateway's)",
    )
    actions = s.add_subparsers(dest="simulate_action", metavar="ACTION")
    mo = actions.add_parser("mo", help="originate a DeliverReq through a running simulator")
    mo.add_argument("--simulator", default=DEFAULT_CONTROL, help="the simulator's base URL")
    mo.add_argument("--to", action="append", required=True, help="VASP address (repeatable)")
    mo.add_argument("--from", dest="sender", required=True, help="the handset's number")
    mo.add_argument("--text")
    mo.add_argument("--subject")
    mo.add_argument("--media", action="append", default=[], type=Path, help="repeatable")
    mo.add_argument("--linked-id")
    mo.add_argument("--cacert", type=Path, help="https: the CA the simulator's certificate is from")
    mo.add_argument("--cert", type=Path, help="https with mutual TLS: our client certificate")
    mo.add_argument("--key", type=Path, help="the client certificate's private key")
    actions.add_parser("personas", help="list the persona names")
    actions.add_parser("scenarios", help="list the scenario names")


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the chosen action; the server runs until interrupted."""
    if args.simulate_action == "mo":
        return _mo(args)
    if args.simulate_action == "personas":
        from mm7.simulator.personas import load_persona, persona_names

        for name in persona_names():
            print(f"{name}: {load_persona(name).description}")
        return 0
    if args.simulate_action == "scenarios":
        from mm7.simulator.scenario import ScenarioError, load_scenario, scenario_names

        for name in scenario_names():
            try:
                print(f"{name}: {load_scenario(name).description}")
            except ScenarioError as exc:
                print(f"{name}: (cannot be used: {exc})")
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
    scenario = _scenario(args.scenario, data, args.config)
    vasp_url = args.vasp_url or data.get("vasp_url")
    if scenario is not None and scenario.sends and not vasp_url:
        raise SimulateError(
            f"--scenario {scenario.name}: it sends to the VASP; give --vasp-url (or vasp_url)"
        )
    max_exchanges = _count(args.max_exchanges, data, "max_exchanges", 1000)
    max_body_bytes = _count(data.get("max_body_bytes"), {}, "max_body_bytes", 64 * 1024 * 1024)
    require = data.get("require_client_cert", True)
    if args.client_cert_optional:
        require = False
    if not isinstance(require, bool):
        raise SimulateError("config: require_client_cert must be true or false")
    try:
        return SimulatorConfig(
            persona=persona,
            strict=strict,
            path=args.path or data.get("path", "/mm7"),
            control_path=data.get("control_path", "/control"),
            vasp_url=vasp_url,
            vasp_auth=auth,
            dlr=DlrPlan.from_mapping(dlr),
            retry=RetryPolicy.from_mapping(_table(data, "retry")),
            faults=_table(data, "faults"),
            message_id_prefix=data.get("message_id_prefix", "sim"),
            mmsc_address=data.get("mmsc_address", "mmsc"),
            tls_cert=_path(args.tls_cert, data, "tls_cert", args.config),
            tls_key=_path(args.tls_key, data, "tls_key", args.config),
            client_ca=_path(args.client_ca, data, "client_ca", args.config),
            require_client_cert=require,
            scenario=scenario,
            max_exchanges=max_exchanges,
            max_body_bytes=max_body_bytes,
        )
    except (ValueError, TypeError) as exc:
        raise SimulateError(str(exc)) from None


def _scenario(given: str | None, data: Mapping[str, Any], config: Path | None) -> Any:
    """The scenario named by --scenario, else by the config's ``scenario`` (a .toml path
    there is relative to the config file); None when neither names one."""
    from mm7.simulator.scenario import ScenarioError, load_scenario

    name = given
    if name is None:
        value = data.get("scenario")
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise SimulateError("config: scenario must be a name or a .toml path")
        name = value
        if name.endswith(".toml") and config is not None and not Path(name).is_absolute():
            name = str(config.parent / name)
    try:
        return load_scenario(name)
    except ScenarioError as exc:
        raise SimulateError(f"--scenario: {exc}") from None


def _count(given: Any, data: Mapping[str, Any], key: str, default: int) -> int:
    """A whole number >= 1 (0 allowed for byte budgets) from the option, else the config."""
    value = given if given is not None else data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SimulateError(f"{key}: expected a whole number >= 0, got {value!r}")
    if key == "max_exchanges" and value < 1:
        raise SimulateError(f"{key}: expected a whole number >= 1, got {value!r}")
    return value


def build_limits(args: argparse.Namespace) -> Any:
    """The listener's ``ListenerLimits``: command-line options over --config keys over the
    defaults."""
    from mm7.transport.listener import ListenerLimits

    data: Mapping[str, Any] = {}
    if args.config is not None:
        try:
            data = tomllib.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            data = {}  # build_config reports it
    values: dict[str, Any] = {}
    for key in LIMIT_KEYS:
        value = getattr(args, key, None)
        if value is None:
            value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SimulateError(f"{key}: expected a number, got {value!r}")
        values[key] = value
    try:
        return ListenerLimits(**values)
    except (TypeError, ValueError) as exc:
        raise SimulateError(str(exc)) from None


def _path(
    given: Path | None, data: Mapping[str, Any], key: str, config: Path | None
) -> Path | None:
    """A file named on the command line, else in the config (relative to the config file)."""
    if given is not None:
        return given
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SimulateError(f"config: {key} must be a path")
    path = Path(value)
    return path if path.is_absolute() or config is None else config.parent / path


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
    import dataclasses

    import structlog

    from mm7.simulator.app import SIMULATOR, create_simulator_app
    from mm7.transport.listener import Listener, serve
    from mm7.transport.logs import configure_logging
    from mm7.transport.stop_signal import stop_requested

    host, port = _listen(args.listen)
    workers = _workers(args.workers)
    config = build_config(args)
    limits = build_limits(args)
    # validated now: a fault section with a typo fails here, not at the first request
    # the scenario starts once the logs are set up (below), not with the application
    app = create_simulator_app(dataclasses.replace(config, scenario=None))
    try:
        ssl_context = config.ssl_context()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise SimulateError(f"TLS: cannot load the certificate, key or CA: {exc}") from None

    log = structlog.get_logger("mm7.simulator")

    def announce(bound: int) -> None:
        scheme = "https" if ssl_context is not None else "http"
        base = f"{scheme}://{host}:{bound}"
        if host not in ("127.0.0.1", "::1", "localhost"):
            print(f"warning: the control API on {host} has no authentication", file=sys.stderr)
        print(
            f"mm7 simulator ({config.persona.name}, "
            f"{'strict' if config.is_strict else 'lenient'}) on {base}{config.path}; "
            f"control API {base}{config.control_path}; "
            f"reports to {config.vasp_url or '(none)'}",
            flush=True,
        )
        if workers > 1:
            print(f"mm7 simulator: {workers} workers", flush=True)
        if config.ui_path:
            print(f"mm7 simulator: page {base}{config.ui_path}", flush=True)
        if config.scenario is not None:
            print(f"mm7 simulator: scenario {config.scenario.name} started", flush=True)
        log.info(
            "mm7.simulator.started",
            mm7=f"{base}{config.path}",
            ui=f"{base}{config.ui_path}" if config.ui_path else None,
            persona=config.persona.name,
            workers=workers,
        )

    if workers > 1:
        return _serve_workers(config, limits, host, port, workers, args.log_json, announce)

    async def run() -> None:
        # handlers in place before the ready line: a SIGTERM right after it stops cleanly
        stopping = asyncio.create_task(stop_requested())
        await asyncio.sleep(0)  # the task installs them on its first step
        listener: Listener | None = None
        try:
            listener = await serve(
                app, host, port, limits, ssl_context=ssl_context, name="simulator"
            )
            # once the port is ours: a simulator that cannot start changes nothing
            configure_logging("info", json=args.log_json)
            if config.scenario is not None:
                app[SIMULATOR].run_scenario(config.scenario)
            announce(listener.port)
            await stopping
        finally:
            stopping.cancel()
            if listener is not None:
                await listener.close()
        log.info("mm7.simulator.stopped")

    try:
        asyncio.run(run())
    except OSError as exc:  # the listen address in use, or not this machine's
        raise SimulateError(f"cannot start: {exc}") from None
    return 0


def _workers(count: int) -> int:
    """``--workers``: at least 1; more only where SO_REUSEPORT exists (Linux)."""
    from mm7.simulator.cluster import workers_supported

    if count < 1:
        raise SimulateError(f"--workers: expected a whole number >= 1, got {count}")
    if count > 1 and not workers_supported():
        raise SimulateError(
            f"--workers {count}: several processes on one port need SO_REUSEPORT (Linux); "
            "run one (--workers 1)"
        )
    return count


def _serve_workers(
    config: Any,
    limits: Any,
    host: str,
    port: int,
    workers: int,
    log_json: bool,
    announce: Callable[[int], None],
) -> int:
    """``--workers N`` (N > 1): the parent (``mm7.simulator.cluster``) until interrupted."""
    import asyncio

    from mm7.simulator.cluster import Cluster
    from mm7.transport.logs import configure_logging
    from mm7.transport.stop_signal import stop_requested

    async def run() -> int:
        stopping = asyncio.create_task(stop_requested())
        await asyncio.sleep(0)  # the task installs the handlers on its first step
        configure_logging("info", json=log_json)
        cluster = Cluster(config, limits, host, port, workers=workers, log_json=log_json)
        if config.scenario is not None:
            cluster.sim.run_scenario(config.scenario)
        return await cluster.run(stopping, announce)

    try:
        status = asyncio.run(run())
    except OSError as exc:  # the listen address in use, or not this machine's
        raise SimulateError(f"cannot start: {exc}") from None
    print("mm7 simulator: stopped", flush=True)
    return status


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
    answer = control_post(args.simulator, "/control/mo", payload, context=_client_context(args))
    print(json.dumps(answer, indent=2))
    return 0 if answer.get("ok") else 1


def _client_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context for reaching an https:// simulator (verified; mutual with --cert)."""
    if args.cacert is None and args.cert is None:
        return None
    if (args.cert is None) != (args.key is None):
        raise SimulateError("--cert and --key go together")
    try:
        context = ssl.create_default_context(
            cafile=None if args.cacert is None else str(args.cacert)
        )
        if args.cert is not None:
            context.load_cert_chain(args.cert, args.key)
    except OSError as exc:  # ssl.SSLError too
        raise SimulateError(f"TLS: cannot load the CA, certificate or key: {exc}") from None
    return context


def control_post(
    base: str,
    path: str,
    payload: Mapping[str, Any],
    *,
    context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """POST JSON to a running simulator's control API; its JSON answer (SimulateError if not).
    ``context``: TLS settings for an https:// simulator (None: the system's defaults)."""
    try:
        return post_json(
            base.rstrip("/") + path, payload, timeout=120, context=context, who="the simulator"
        )
    except JSONPostError as exc:
        if exc.http_status is not None:
            detail = exc.body.decode("utf-8", "replace")
            raise SimulateError(f"simulator answered HTTP {exc.http_status}: {detail}") from None
        raise SimulateError(str(exc)) from None
