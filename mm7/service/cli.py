"""`mm7 serve`, `send`, `demo`, `relay` and `store`: run the gateway, submit through it, see it
work, replay what its relay could not deliver, move its store to PostgreSQL.

    mm7 serve --config conf/gateway.toml
    mm7 send --config conf/gateway.toml --to +12025550001 --text hi --media photo.jpg
    mm7 send --config conf/gateway.toml --to-file numbers.txt --text "weekly news"
    mm7 demo [--json]
    mm7 relay list [--status dead|pending|delivered|dropped|skipped|all] [--hook H] [--json]
    mm7 relay retry ID... | --all-dead
    mm7 relay drop ID...
    mm7 relay counts
    mm7 store copy --from var/mm7.sqlite --to-env MM7_STORE_DSN [--json]

``serve`` runs until SIGTERM or SIGINT, then shuts down gracefully (``mm7.service.runtime``).
It prints the bound addresses (and the API key of the run when one was generated) on stdout.
``--workers N`` runs N gateway processes sharing the listeners under a supervising parent
(``mm7.service.cluster.workers``); N > 1 needs a store every process can use, so it is refused
with ``[store] backend = "sqlite"``.

``send`` posts one message per recipient to a running gateway's ``POST /v1/messages``: the API
address is the config file's ``[api] listen`` (``--api-url`` overrides it), the key is
``--api-key`` or ``$MM7_API_KEY``. Only ``[api] listen`` is read from the file, so the sender's
environment does not need the gateway's secrets. Each accepted message prints ``<recipient>
<message id>`` on stdout; with several recipients a progress bar goes to stderr when stderr is a
terminal (wiped before any other line is written, so it never mixes with the output). Exit status:
0 every recipient accepted, 1 some refused (each reason on stderr), 2 a bad option or file.

``relay`` works on the gateway's store directly: the ``[store]`` of ``--config``
[conf/gateway.toml], opened as the gateway opens it (``runtime.open_store``): an SQLite file (a
relative path is relative to the working directory, as for the gateway) or the PostgreSQL database
(``dsn``, or ``dsn_env`` and its variable). Only ``[store]`` is read, so no other secret is needed.
It may run while the gateway runs (SQLite in WAL mode lets both write, and the running relay worker
picks requeued events up at its next poll; on PostgreSQL a retry wakes the relay workers of every
instance at once). ``list`` shows the dead letters by default (``--status all`` for every event),
oldest first, ``--limit`` [100] at a time (``--after ID`` for the next page); ``--json`` prints the
same objects as ``GET /v1/relay/events``. ``retry`` makes dead or dropped events pending again
(their attempts and max_age start over), ``drop`` stops relaying dead or pending ones (kept as
``dropped``). Exit status: 0 done, 1 some IDs could not be acted on (unknown, or in another state:
each reason on stderr), 2 a bad option, config or database.

``store copy`` copies an SQLite store (``--from``, its media folder beside it) into an empty
PostgreSQL database (``--to DSN``, or ``--to-env VAR`` naming the variable that holds it, as
secrets are given: a DSN on the command line is visible to every user of the host), all or
nothing (``mm7.service.store.migrate_copy``), and prints the rows copied per table (``--json``:
one object). Exit status: 0 copied, 1 refused for what the databases hold (a source not at this
mm7's schema, a target not empty or newer; nothing written), 2 a bad option, an unreadable source,
an unreachable target or a failure midway (rolled back: the target is as it was), 130
interrupted (Ctrl-C: nothing written).

Kept apart from ``mm7.cli.main`` (which only registers these) so aiohttp and the service load
only when a command of theirs runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mm7.service.errors import ServiceError, StoreError
from mm7.service.starter import StarterExists, write_starter
from mm7.transport.json_post import JSONPostError, post_json

if TYPE_CHECKING:
    from mm7.service.config.settings import StoreSettings

API_KEY_ENV = "MM7_API_KEY"
DEFAULT_API = "127.0.0.1:8000"
DEFAULT_CONFIG = Path("conf/gateway.toml")
# the values of mm7.service.store.outbox's RelayStatus / RelayKind (not imported: argparse setup
# must not load the service; tests/test_relay_cli.py checks that they agree)
RELAY_STATUSES = ("pending", "delivered", "dead", "dropped", "skipped")
RELAY_KINDS = ("mo", "status", "delivery_report", "read_reply", "fallback_sms")
_MAX_EVENT_ID = 2**63 - 1


class ServiceCliError(ServiceError):
    """A bad option, file or answer: one line on stderr, exit status 2."""


def add_parsers(sub: Any) -> None:
    """Register ``serve``, ``init``, ``send``, ``demo``, ``relay`` and ``store`` on the
    subparsers of ``mm7``."""
    s = sub.add_parser("serve", help="run the gateway (API, inbound endpoint, dispatchers)")
    s.add_argument("--config", type=Path, required=True, help="the gateway TOML file")
    s.add_argument(
        "--poll-interval",
        type=_positive,
        default=1.0,
        metavar="SECONDS",
        help="how often idle dispatchers look for due retries (default 1)",
    )
    s.add_argument(
        "--grace",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="at shutdown, how long in-flight submits may finish before release (default 10)",
    )
    s.add_argument(
        "--lease-ttl",
        type=_positive,
        metavar="SECONDS",
        help="override the dispatchers' lease TTL: how soon another process takes over the "
        "work of one that died (default: longer than the worst submit; recovery drills)",
    )
    s.add_argument(
        "--workers",
        type=_count,
        metavar="N",
        help="run N gateway processes sharing the listeners (SO_REUSEPORT) under a parent that "
        'restarts any that dies; N > 1 needs [store] backend = "postgresql"',
    )
    # set by the parent of --workers for each worker (mm7.service.cluster.workers.WorkerSpec)
    s.add_argument("--worker-spec", help=argparse.SUPPRESS)
    s.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the event loop: uvloop (pip install 'mm7[fast]'), asyncio, or auto: uvloop when "
        "installed (default)",
    )

    i = sub.add_parser(
        "init", help="write a starter configuration folder (gateway.toml, dialects, profiles)"
    )
    i.add_argument("folder", type=Path, help="where to write it, e.g. conf (created if missing)")

    d = sub.add_parser(
        "demo",
        help="start a simulator and a gateway, send one MMS through the API, show it delivered",
    )
    d.add_argument("--json", action="store_true", help="end with one JSON summary line")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole path")

    t = sub.add_parser("send", help="submit messages through a running gateway's API")
    t.add_argument("--config", type=Path, help="the gateway TOML file (for [api] listen)")
    t.add_argument("--api-url", help=f"the API's base URL (default: http://{DEFAULT_API})")
    t.add_argument("--api-key", help=f"the API key (default: ${API_KEY_ENV})")
    t.add_argument("--to", action="append", default=[], help="a recipient (repeatable)")
    t.add_argument("--to-file", type=Path, help="recipients, one a line (# comments)")
    t.add_argument(
        "--one-message",
        action="store_true",
        help="a campaign: one message to all the recipients (up to 100,000 a message; the "
        "media stored once), instead of one message each",
    )
    t.add_argument("--from", dest="sender", help="the sender address")
    t.add_argument("--subject")
    t.add_argument("--text")
    t.add_argument("--media", action="extend", nargs="+", default=[], type=Path, metavar="FILE")
    t.add_argument("--link", help="the link to send on (default: routing by recipient)")
    t.add_argument("--delivery-report", action="store_true", default=None)

    _add_relay_parser(sub)
    _add_store_parser(sub)


def _add_relay_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the gateway TOML file, for its [store] (default {DEFAULT_CONFIG})",
    )
    r = sub.add_parser("relay", help="list, retry and drop relay events (dead letters)")
    actions = r.add_subparsers(dest="relay_command", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[common], help="show relay events (dead by default)")
    ls.add_argument(
        "--status",
        choices=[*RELAY_STATUSES, "all"],
        default="dead",
        help="which events (default dead)",
    )
    ls.add_argument("--hook", help="only this hook's events")
    ls.add_argument("--kind", choices=RELAY_KINDS, help="only events of this kind")
    ls.add_argument("--after", type=_event_id_or_zero, default=0, metavar="ID", help="paging")
    ls.add_argument(
        "--limit", type=_limit, default=100, metavar="N", help="at most N events (default 100)"
    )
    ls.add_argument("--json", action="store_true", help="a JSON array (as the API answers)")
    rt = actions.add_parser(
        "retry", parents=[common], help="make dead or dropped events pending again"
    )
    rt.add_argument("ids", nargs="*", type=_event_id, metavar="ID")
    rt.add_argument("--all-dead", action="store_true", help="every dead event")
    dr = actions.add_parser("drop", parents=[common], help="stop relaying dead or pending events")
    dr.add_argument("ids", nargs="+", type=_event_id, metavar="ID")
    ct = actions.add_parser("counts", parents=[common], help="how many events per status")
    ct.add_argument("--json", action="store_true", help="one JSON object")


def _add_store_parser(sub: Any) -> None:
    s = sub.add_parser("store", help="move the gateway's store: SQLite to PostgreSQL")
    actions = s.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    cp = actions.add_parser(
        "copy", help="copy an SQLite store into an empty PostgreSQL database (all or nothing)"
    )
    cp.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        metavar="SQLITE_PATH",
        help="the SQLite database ([store] path; its media folder <path>.media beside it)",
    )
    target = cp.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to", dest="dsn", metavar="DSN", help="postgresql://user:password@host:port/dbname"
    )
    target.add_argument(
        "--to-env", metavar="VAR", help="the environment variable holding the DSN (preferred)"
    )
    cp.add_argument("--json", action="store_true", help="the rows per table as one JSON object")


# --------------------------------------------------------------------------- serve


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more processes, got {text!r}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway until SIGTERM/SIGINT (``--workers``: supervise N of them)."""
    import asyncio

    from mm7.service.cluster.workers import READY, WorkerSpec, worker_config
    from mm7.service.config.loader import load_config
    from mm7.service.runtime import Gateway
    from mm7.transport.stop_signal import stop_requested

    config = load_config(args.config)
    if args.workers is not None:
        return _supervise(args, config)
    spec: WorkerSpec | None = None
    if args.worker_spec is not None:
        try:
            spec = WorkerSpec.from_json(args.worker_spec)
        except ValueError as exc:
            raise ServiceCliError(f"--worker-spec: {exc}") from None
        config = worker_config(config, spec)

    async def run() -> None:
        gateway = Gateway(
            config,
            poll_interval=args.poll_interval,
            grace=args.grace,
            lease_ttl=None if args.lease_ttl is None else timedelta(seconds=args.lease_ttl),
            reuse_port=spec is not None,
        )
        waits = {asyncio.ensure_future(stop_requested())}
        if spec is not None:
            waits.add(asyncio.ensure_future(_orphaned(os.getppid())))
        try:
            await gateway.start()
            if spec is not None:
                print(f"{READY}: {gateway.instance}", flush=True)
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            print("mm7 gateway: stopping", flush=True)
        finally:
            for wait in waits:
                wait.cancel()
            await gateway.stop()

    factory, name = _loop_factory(args.loop)
    print(f"mm7 gateway: event loop {name}", flush=True)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(run())
    except OSError as exc:  # a listen address in use, an unreadable store folder
        raise ServiceCliError(f"cannot start: {exc}") from None
    except StoreError as exc:  # the database named (never a password): unreachable, refused...
        raise ServiceCliError(f"cannot start: {exc}") from None
    print("mm7 gateway: stopped", flush=True)
    return 0


async def _orphaned(parent: int) -> None:
    """Return once the process that started this one is gone (a worker outliving ``--workers``'
    parent stops)."""
    import asyncio

    while os.getppid() == parent:
        await asyncio.sleep(1.0)


def _supervise(args: argparse.Namespace, config: Any) -> int:
    """``--workers N``: reserve the ports, start N workers, keep them running until stopped."""
    import asyncio
    import socket

    from mm7.service.cluster.workers import Supervisor, WorkerSpec, reserve_ports
    from mm7.transport.stop_signal import stop_requested

    count: int = args.workers
    if count > 1 and config.store.backend == "sqlite":
        raise ServiceCliError(
            f'--workers {count}: {config.source}: store.backend is "sqlite", a store for one '
            'process; run one (no --workers, or --workers 1) or set store.backend = "postgresql"'
        )
    try:
        ports, held = reserve_ports(config)
    except OSError as exc:
        raise ServiceCliError(f"cannot start: {exc}") from None
    base = config.cluster.instance or f"{socket.gethostname()}-{os.getpid()}"
    env = dict(os.environ)
    for key in config.api.keys:
        if key.generated and key.env:
            # one key for every worker: the parent's, passed in the variable that would hold it
            env[key.env] = key.key.reveal()
            print(
                f"mm7 gateway: API key {key.name!r} generated for this run (set {key.env} to "
                f"choose it): {key.key.reveal()}",
                flush=True,
            )
    passed = ["--poll-interval", str(args.poll_interval), "--grace", str(args.grace)]
    passed += ["--loop", args.loop]
    if args.lease_ttl is not None:
        passed += ["--lease-ttl", str(args.lease_ttl)]

    def command(index: int) -> list[str]:
        spec = WorkerSpec(index, count, base, ports)
        return [sys.executable, "-m", "mm7.cli.main", "serve", "--config", str(args.config),
                *passed, "--worker-spec", spec.to_json()]  # fmt: skip

    print(
        f"mm7 gateway: {count} worker(s) {base}-1 .. {base}-{count} on API port {ports['api']}, "
        f"inbound port {ports['inbound']}",
        flush=True,
    )
    supervisor = Supervisor(count, command, env=env, stop_timeout=args.grace + 60.0)
    try:
        with asyncio.Runner() as runner:
            status = runner.run(supervisor.run(stop_requested()))
    finally:
        for sock in held:
            sock.close()
    print("mm7 gateway: stopped", flush=True)
    return status


def _loop_factory(choice: str) -> tuple[Any, str]:
    """(loop factory or None for asyncio's, its name) for ``--loop``."""
    if choice == "asyncio":
        return None, "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ServiceCliError(
                "--loop uvloop: uvloop is not installed (pip install 'mm7[fast]')"
            ) from None
        return None, "asyncio"
    return uvloop.new_event_loop, f"uvloop {getattr(uvloop, '__version__', '')}".strip()


# --------------------------------------------------------------------------- demo


def cmd_init(args: argparse.Namespace) -> int:
    """``mm7 init DIR``: the starter configuration folder (``mm7.service.starter``)."""
    folder: Path = args.folder
    try:
        written = write_starter(folder)
    except StarterExists as exc:
        raise ServiceCliError(str(exc)) from None
    except OSError as exc:
        raise ServiceCliError(f"{folder}: cannot write: {exc.strerror or exc}") from None
    for path in written.files:
        print(f"wrote {path}")
    config = folder / "gateway.toml"
    print(
        "next:\n"
        f"  mm7 simulate --listen 127.0.0.1:8080 --vasp-url http://127.0.0.1:9000/mm7 &\n"
        f"  mm7 serve --config {config}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mm7.service.demo import run_demo

    return run_demo(json_output=args.json, timeout=args.timeout)


# --------------------------------------------------------------------------- send


def cmd_send(args: argparse.Namespace) -> int:
    """POST one message per recipient; progress on stderr; ids on stdout."""
    base = _api_base(args)
    key = args.api_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise ServiceCliError(f"no API key: give --api-key or set ${API_KEY_ENV}")
    recipients = list(args.to)
    if args.to_file is not None:
        recipients += _read_recipients(args.to_file)
    recipients = [r.strip() for r in recipients if r.strip()]
    if not recipients:
        raise ServiceCliError("no recipient: give --to or --to-file")
    if args.text is None and not args.media:
        raise ServiceCliError("nothing to send: give --text and/or --media")
    body: dict[str, Any] = {}
    for name, value in (
        ("from", args.sender),
        ("subject", args.subject),
        ("text", args.text),
        ("link", args.link),
        ("delivery_report", args.delivery_report),
    ):
        if value is not None:
            body[name] = value
    if args.media:
        body["media"] = [_media(path) for path in args.media]
    if args.one_message:
        return _send_campaign(base, key, body, recipients)
    progress = _Progress(len(recipients))
    failed = 0
    for done, recipient in enumerate(recipients, start=1):
        try:
            answer = _post(base, key, {**body, "to": recipient})
        except ServiceCliError as exc:
            if len(recipients) == 1:
                raise
            failed += 1
            progress.clear()
            print(f"mm7 send: {recipient}: {exc}", file=sys.stderr, flush=True)
        else:
            progress.clear()
            print(f"{recipient} {answer.get('id')}", flush=True)
        progress.show(done, failed)
    progress.clear()
    if failed:
        print(f"mm7 send: {failed} of {len(recipients)} refused", file=sys.stderr)
    return 1 if failed else 0


#: recipients per message of a campaign (mm7.service.api.validate.MAX_RECIPIENTS)
CAMPAIGN_CHUNK = 100_000


def _send_campaign(base: str, key: str, body: dict[str, Any], recipients: list[str]) -> int:
    """POST the recipients as few messages as the API allows; one line per message."""
    for start in range(0, len(recipients), CAMPAIGN_CHUNK):
        chunk = recipients[start : start + CAMPAIGN_CHUNK]
        answer = _post(base, key, {**body, "to": chunk})
        skipped = answer.get("suppressed") or []
        note = f" ({len(skipped)} opted out, not sent)" if skipped else ""
        print(f"{answer.get('id')} {len(chunk)} recipients{note}", flush=True)
    return 0


class _Progress:
    """``mm7 send``'s progress bar: on stderr, and only when stderr is a terminal (a log file or
    a pipe gets the refusals alone). The bar is wiped before any other line is written, so a
    terminal showing stdout and stderr together never has output glued to a half-drawn bar.
    Twenty lines of ANSI rather than a progress library: one line, no new dependency."""

    WIDTH = 30
    #: carriage return, then erase to the end of the line
    WIPE = "\r\x1b[K"

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = total > 1 and callable(isatty) and bool(isatty())
        self.shown = False

    def show(self, done: int, failed: int) -> None:
        """Draw the bar for ``done`` of ``total`` (``failed`` of them refused)."""
        if not self.enabled:
            return
        filled = self.WIDTH * done // self.total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        extra = f", {failed} refused" if failed else ""
        self.stream.write(f"{self.WIPE}mm7 send: [{bar}] {done}/{self.total}{extra}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Wipe the bar (before another line is written, and at the end)."""
        if self.shown:
            self.stream.write(self.WIPE)
            self.stream.flush()
            self.shown = False


def _api_base(args: argparse.Namespace) -> str:
    if args.api_url:
        return str(args.api_url).rstrip("/")
    listen = DEFAULT_API
    if args.config is not None:
        try:
            data = tomllib.loads(args.config.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ServiceCliError(f"--config {args.config}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ServiceCliError(f"--config {args.config}: not valid TOML: {exc}") from None
        api = data.get("api", {})
        value = api.get("listen", DEFAULT_API) if isinstance(api, dict) else DEFAULT_API
        if not isinstance(value, str):
            raise ServiceCliError(f"--config {args.config}: api.listen: expected HOST:PORT")
        listen = value
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: reach it on this machine
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _read_recipients(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServiceCliError(f"--to-file {path}: {exc.strerror or exc}") from None
    out = []
    for line in text.splitlines():
        value = line.split("#", 1)[0].strip()
        if value:
            out.append(value)
    return out


def _media(path: Path) -> dict[str, str]:
    from mm7.core.sniff import sniff

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ServiceCliError(f"--media {path}: {exc.strerror or exc}") from None
    if not data:
        raise ServiceCliError(f"--media {path}: the file is empty")
    return {
        "content_base64": base64.b64encode(data).decode("ascii"),
        "content_type": sniff(data),
        "filename": path.name,
    }


def _post(base: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return post_json(
            base + "/v1/messages",
            body,
            headers={"Authorization": f"Bearer {key}"},
            who="the gateway API",
        )
    except JSONPostError as exc:
        if exc.http_status is not None:
            raise ServiceCliError(
                f"the API answered HTTP {exc.http_status}: {_reason(exc.body)}"
            ) from None
        raise ServiceCliError(str(exc)) from None


def _reason(raw: bytes) -> str:
    """The API's error JSON as 'field: message' (the raw text when it is not that)."""
    try:
        error = json.loads(raw)["error"]
        field = error.get("field")
        return f"{field}: {error['message']}" if field else str(error["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return raw.decode("utf-8", "replace")[:200]


# --------------------------------------------------------------------------- relay


def _event_id(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit() and 0 < int(value) <= _MAX_EVENT_ID):
        raise argparse.ArgumentTypeError(f"expected a relay event id (a number), got {text!r}")
    return int(value)


def _event_id_or_zero(text: str) -> int:
    return 0 if text.strip() == "0" else _event_id(text)


def _limit(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit() and 0 < int(value) <= 100_000):
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 100000, got {text!r}")
    return int(value)


def _store_settings(config: Path) -> StoreSettings:
    """The config's ``[store]`` (nothing else is read); an SQLite database must exist."""
    from mm7.service.config.loader import load_store_settings

    settings = load_store_settings(config)
    if settings.backend == "sqlite" and not settings.path.is_file():
        raise ServiceCliError(
            f"no database at {settings.path} (store.path of {config}; relative to the working"
            " directory): has the gateway run here?"
        )
    return settings


def cmd_relay(args: argparse.Namespace) -> int:
    """``mm7 relay list|retry|drop|counts`` on the config's store (module docstring)."""
    import asyncio

    if args.relay_command == "retry" and bool(args.ids) == bool(args.all_dead):
        raise ServiceCliError("give the IDs of the events to retry, or --all-dead (not both)")
    settings = _store_settings(args.config)
    return asyncio.run(_relay(args, settings))


async def _relay(args: argparse.Namespace, settings: StoreSettings) -> int:
    import sqlite3

    from mm7.service.runtime import open_store

    try:
        store = await open_store(settings, source=args.config)
    except (StoreError, sqlite3.Error, OSError) as exc:
        raise ServiceCliError(f"cannot open the store: {exc}") from None
    where = str(settings.path)
    if settings.backend == "postgresql" and settings.dsn is not None:
        from mm7.service.store.postgres.store import describe  # the driver is there: it opened

        where = describe(settings.dsn.reveal())
    try:
        action = {
            "list": _relay_list,
            "retry": _relay_retry,
            "drop": _relay_drop,
            "counts": _relay_counts,
        }[args.relay_command]
        return await action(store, args)
    except (StoreError, sqlite3.Error) as exc:
        raise ServiceCliError(f"the store {where}: {exc}") from None
    finally:
        await store.close()


async def _relay_list(store: Any, args: argparse.Namespace) -> int:
    from mm7.service.api.relay_ops import relay_event_view
    from mm7.service.store.outbox import RelayKind, RelayStatus

    records = await store.relay_events(
        status=None if args.status == "all" else RelayStatus(args.status),
        hook=args.hook,
        kind=RelayKind(args.kind) if args.kind else None,
        after_id=args.after,
        limit=args.limit,
    )
    views = [relay_event_view(r) for r in records]
    if args.json:
        print(json.dumps(views, indent=2, ensure_ascii=False))
    elif not views:
        which = "" if args.status == "all" else f"{args.status} "
        print(f"no {which}relay events")
    else:
        rows = [("ID", "STATUS", "KIND", "HOOK", "TRIES", "HTTP", "UPDATED", "SOURCE", "ERROR")]
        for v in views:
            rows.append(
                (
                    str(v["id"]),
                    v["status"],
                    v["kind"],
                    v["hook"] or v["callback_url"] or "-",
                    str(v["attempts"]),
                    str(v["last_http_status"] or "-"),
                    v["updated_at"] or "-",
                    v["source_id"] or "-",
                    _flat(v["last_error"] or "-", 300),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[-1]]))
    if len(records) == args.limit:
        print(f"mm7 relay list: more may follow: --after {records[-1].id}", file=sys.stderr)
    return 0


async def _relay_retry(store: Any, args: argparse.Namespace) -> int:
    if args.all_dead:
        count = await store.requeue_relay(None)
        print(f"requeued {count} dead relay event{'' if count == 1 else 's'}")
        return 0
    return await _relay_each(store, args.ids, "retry")


async def _relay_drop(store: Any, args: argparse.Namespace) -> int:
    return await _relay_each(store, args.ids, "drop")


async def _relay_each(store: Any, ids: list[int], action: str) -> int:
    from mm7.service.api.relay_ops import DROPPABLE, RETRYABLE

    allowed, states, done = (
        (RETRYABLE, "dead or dropped", "requeued")
        if action == "retry"
        else (DROPPABLE, "dead or pending", "dropped")
    )
    failed = 0
    for event_id in dict.fromkeys(ids):
        record = await store.get_relay_event(event_id)
        changed = 0
        if record is not None and record.status in allowed:
            changed = await (
                store.requeue_relay([event_id])
                if action == "retry"
                else store.drop_relay([event_id])
            )
        if changed:
            print(f"{done} {event_id}", flush=True)
            continue
        failed += 1
        if record is None:
            reason = "no such relay event"
        else:
            now = await store.get_relay_event(event_id) or record
            reason = f"it is {now.status.value}; only {states} events can be {done}"
        print(f"mm7 relay {action}: {event_id}: {reason}", file=sys.stderr)
    return 1 if failed else 0


async def _relay_counts(store: Any, args: argparse.Namespace) -> int:
    from mm7.service.api.relay_ops import relay_counts_view

    counts = relay_counts_view(await store.relay_counts())
    if args.json:
        print(json.dumps(counts))
    else:
        for status, count in counts.items():
            print(f"{status} {count}")
    return 0


def _flat(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --------------------------------------------------------------------------- store

_DSN_SCHEMES = ("postgresql://", "postgres://")  # as the loader's [store] dsn


def _target_dsn(args: argparse.Namespace) -> str:
    """The DSN of ``--to`` or of the variable ``--to-env`` names; never echoed in errors."""
    if args.to_env is not None:
        dsn = os.environ.get(args.to_env, "")
        if not dsn:
            raise ServiceCliError(f"--to-env {args.to_env}: the variable is not set or empty")
        origin = f"--to-env {args.to_env}"
    else:
        dsn = args.dsn
        origin = "--to"
    if not dsn.startswith(_DSN_SCHEMES):
        raise ServiceCliError(
            f"{origin}: expected a URL postgresql://user:password@host:port/database"
        )
    return str(dsn)


def cmd_store(args: argparse.Namespace) -> int:
    """``mm7 store copy`` (module docstring)."""
    import asyncio

    from mm7.service.errors import StoreCopyError, StoreCopyRefusedError
    from mm7.service.store.migrate_copy import copy_store

    progress = _copy_progress if sys.stderr.isatty() else None
    try:
        dsn = _target_dsn(args)
        report = asyncio.run(copy_store(args.source, dsn, progress=progress))
    except ServiceCliError as exc:
        print(f"mm7 store copy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # the transaction never committed: the server rolls it back when the connection ends
        print("\nmm7 store copy: interrupted; nothing was written to the target", file=sys.stderr)
        return 130
    except StoreCopyError as exc:
        if progress is not None:
            print(file=sys.stderr)
        print(f"mm7 store copy: {_flat(str(exc), 2000)}", file=sys.stderr)
        return 1 if isinstance(exc, StoreCopyRefusedError) else 2
    if progress is not None:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(report.counts))
    else:
        width = max(len(table) for table in report.counts)
        for table, count in report.counts.items():
            print(f"{table.ljust(width)}  {count}")
    print(
        f"mm7 store copy: copied {report.source} into {report.target} as it was at "
        f"{report.snapshot_at.isoformat(timespec='milliseconds')}",
        file=sys.stderr,
    )
    for note in report.notes:
        print(f"mm7 store copy: {note}", file=sys.stderr)
    return 0


def _copy_progress(table: str, count: int) -> None:
    print(f"\r\x1b[Kcopied {table}: {count}", end="", file=sys.stderr, flush=True)
