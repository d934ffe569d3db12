"""Process plumbing shared by the multi-process benchmarks (bare, sim, mt, mo, loss, ...).

Every process a benchmark starts goes through ``Procs.start``: it is unpinned (the driver pins
itself to one core for the in-process benchmarks; its children get every CPU the driver was
allowed at import time), its stdout is read line by line on a thread so announcements
("... on http://127.0.0.1:PORT ...") can be awaited, and ``Procs.close`` kills whatever is still
running, also when the benchmark failed. Ports are always 0 at first start: the bound ones are
read from the processes' announcements.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
#: the CPUs this process was allowed before the driver pinned itself (children get them all)
ALL_CPUS: set[int] | None = (
    set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
)
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: the API key of every gateway the benchmarks start
API_KEY = "bench-key-0123456789abcdef"


class SettingsLike(Protocol):
    """What the benchmarks use of tools/bench.py's ``Settings``."""

    @property
    def quick(self) -> bool: ...

    @property
    def profile(self) -> int: ...

    def say(self, line: str = "") -> None: ...


def _unpin() -> None:  # runs in the child between fork and exec
    if ALL_CPUS is not None:
        os.sched_setaffinity(0, ALL_CPUS)


class Proc:
    """One child process, its stdout lines on a queue (stderr to a file, for post-mortems)."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path
    ) -> None:
        self.name = name
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            preexec_fn=_unpin,  # noqa: PLW1509 - the driver starts children from one thread
        )
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first stdout line (from now on) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"{self.name}: {pattern!r} not printed in {timeout}s" + self.tail()
                )
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                raise RuntimeError(f"{self.name} exited before printing {pattern!r}" + self.tail())
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def json_result(self, timeout: float) -> dict[str, Any]:
        """The last stdout line that is a JSON object, once the process has exited."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{self.name} did not finish in {timeout}s" + self.tail()) from None
        result: dict[str, Any] | None = None
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                break
            self.seen.append(line)
            if line.startswith("{"):
                result = json.loads(line)
        if result is None:
            raise RuntimeError(f"{self.name} printed no JSON result" + self.tail())
        return result

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def tail(self) -> str:
        if not self._err.closed:
            self._err.flush()
        try:
            err = self.log.read_text(errors="replace")[-2000:]
        except OSError:
            err = ""
        return f"\n--- {self.name} stdout: {self.seen[-10:]}\n--- stderr tail:\n{err}"

    def cpu_seconds(self) -> float:
        """utime + stime of the process (all its threads) from /proc/<pid>/stat."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def thread_cpu(self) -> dict[int, float]:
        """utime + stime per thread (tid -> seconds); the main thread's tid is the pid."""
        out: dict[int, float] = {}
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return out
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        return out

    def peak_rss_mb(self) -> float:
        """VmHWM of the process, MB."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.close()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._err.close()


class Procs:
    """The processes of one benchmark run; ``with Procs(dir) as procs:`` kills them all at exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.all: list[Proc] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.all):
            proc.close()

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        full = dict(os.environ if env is None else env)
        full["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), str(TOOLS), full.get("PYTHONPATH")])
        )
        full.setdefault("PYTHONUNBUFFERED", "1")
        log = self.workdir / f"{name}-{len(self.all)}.stderr"
        proc = Proc(name, argv, full, REPO, log)
        self.all.append(proc)
        return proc

    def python(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        return self.start(name, [sys.executable, *args], env)


# --------------------------------------------------------------------------- CPU of process sets


def pid_cpu(pid: int) -> float | None:
    """utime + stime of process ``pid`` (all its threads), seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pid_cpu_fine(pid: int) -> float | None:
    """CPU seconds of process ``pid``'s main thread from /proc/<pid>/schedstat (nanoseconds,
    where /proc/<pid>/stat counts 10 ms ticks); None once it is gone. For single-threaded
    processes (PostgreSQL backends) that is the whole process: small windows need it."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (its children, theirs ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    out = [pid]
    for each in out:  # grows while walked: breadth first
        out.extend(children.get(each, []))
    return out


class CpuWindow:
    """CPU seconds a set of processes spent between ``start()`` and ``stop()``; the set is
    listed again at both ends (``pids``), so a process started in the window counts all its
    CPU; one that ended inside it is lost and counted in ``lost``. ``reader``: ``pid_cpu``
    (ticks, every thread) or ``pid_cpu_fine`` (nanoseconds, single-threaded processes)."""

    def __init__(
        self,
        pids: Callable[[], Iterable[int]],
        reader: Callable[[int], float | None] = pid_cpu,
    ) -> None:
        self._pids = pids
        self._reader = reader
        self._before: dict[int, float] = {}
        self.lost = 0
        self.processes = 0

    def _sample(self) -> dict[int, float]:
        out = {}
        for pid in self._pids():
            cpu = self._reader(pid)
            if cpu is not None:
                out[pid] = cpu
        return out

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> float:
        after = self._sample()
        self.lost = len(set(self._before) - set(after))
        self.processes = len(after)
        return sum(cpu - self._before.get(pid, 0.0) for pid, cpu in after.items())


# --------------------------------------------------------------------------- small HTTP helpers


def http_json(
    url: str,
    payload: Any = None,
    *,
    method: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Any:
    """GET (or POST ``payload`` as JSON) and return the JSON answer (blocking, urllib)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    with urllib.request.urlopen(request, timeout=timeout) as rsp:  # noqa: S310 - loopback only
        return json.loads(rsp.read())


def http_text(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as rsp:  # noqa: S310 - loopback only
        return str(rsp.read().decode())


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the Prometheus samples ``name{...}`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        rest = head[len(name) :]
        if rest and not rest.startswith("{"):
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


def wait_until(check: Any, timeout: float, interval: float = 0.1) -> Any:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def serve_until_signalled(app: Any, announce: str) -> None:
    """Serve the aiohttp ``app`` on 127.0.0.1 port 0 until SIGINT/SIGTERM (a child process).

    ``announce`` is printed once listening, with ``{port}`` replaced by the bound port: the
    parent reads it to learn the address.
    """
    import asyncio

    from aiohttp import web

    from mm7.transport.stop_signal import stop_requested

    async def run() -> None:
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(announce.format(port=runner.addresses[0][1]), flush=True)
        await stop_requested()
        await runner.cleanup()

    asyncio.run(run())
