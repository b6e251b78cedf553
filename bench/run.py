#!/usr/bin/env python3
"""msk-sidecar benchmark suite: one script, every comparison side by side on the same data.

    python3 bench/run.py                 # full run: builds, runs every row 3 times, publishes
    python3 bench/run.py --smoke         # about a minute: tiny sizes, one repeat, W1 W2 W4 W5
    python3 bench/run.py --only W1,W5 --repeats 5
    python3 bench/run.py --fake          # canned numbers through the table, plot and markdown

Rows (see bench/README.md):
  W1     backlog drain, null sink: msk-sidecar vs bench-baseline (rdkafka BaseConsumer) vs kcat
         vs the Python pattern (confluent-kafka + asyncio + aiohttp, delivering to bench-sink)
  W2     HTTP delivery, one POST per record, app answers 200: sidecar vs the Python pattern
  W4     app latency 5 ms, 12 partitions, 10,000 keys, concurrency sweep, partition and key mode
  W5     1% permanent failures (null://?fail_permille=10, dead-lettered) relative to W1
  TRACE  CPU per record with tracing off / on (100% sampling) / on (0% sampling)
  BATCH  HTTP batches of 100 vs single records
  SQS    SQS source (LocalStack) to HTTP vs the seeds' boto3 polling loop
  REDIS  Redis Streams source to HTTP vs the seeds' redis-py XREADGROUP loop (test bed's Redis)
  AMQP   RabbitMQ source to HTTP vs the seeds' aio-pika queue.iterator() (test bed's RabbitMQ)
  AVRO   CPU of decoding Glue-framed Avro records to JSON, on top of the same records raw
  PROTOBUF  the same for Protobuf records (SIDECAR_PROTOBUF_DESCRIPTOR)

Every row starts a fresh `bench-mock-cluster` (librdkafka's mock cluster in its own process)
so every tool in a comparison reads the same records from the same kind of broker. Results go
to bench/results/latest.json, bench/results/plot.png and BENCHMARKS.md (full runs), or to
bench/results/<smoke|partial|fake>.tmp/ otherwise (see --publish).

The script runs itself inside .testbed/venv-bench (created from bench/requirements.txt).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
VENV = REPO / ".testbed" / "venv-bench"
REQUIREMENTS = BENCH_DIR / "requirements.txt"
RESULTS = BENCH_DIR / "results"
LOG_ROOT = REPO / ".testbed" / "bench-logs"
PYTHON_PATTERN = BENCH_DIR / "python_pattern.py"
SQS_PATTERN = BENCH_DIR / "sqs_pattern.py"
REDIS_PATTERN = BENCH_DIR / "redis_pattern.py"
AMQP_PATTERN = BENCH_DIR / "amqp_pattern.py"
BENCH_PACKAGE = "msk-sidecar-bench"
HELPER_BINS = ("bench-mock-cluster", "bench-baseline", "bench-sink")
SCHEMA = "msk-sidecar-bench/1"
MIB = 1024 * 1024
TOPIC = "bench"

ROWS = ("W1", "W2", "W4", "W5", "TRACE", "BATCH", "SQS", "REDIS", "AMQP", "AVRO", "PROTOBUF")
# Comparison kinds with their own data; redis and amqp read no Kafka topic at all.
KINDS = ("backlog", "http", "sqs", "redis", "amqp", "avro", "protobuf")
KAFKA_KINDS = ("backlog", "http", "sqs", "avro", "protobuf")
DECODE_KINDS = ("avro", "protobuf")
DECODE_CPU_US = 2.0  # extra CPU per 100-byte record for decoding, at most
SMOKE_ROWS = ("W1", "W2", "W4", "W5")

# Target thresholds (from the benchmark issue).
W1_VS_BASELINE = 0.8
W1_VS_KCAT = 1.0
W1_CPU_US = 1.0
W2_VS_PYTHON = 5.0
W2_RSS_SHARE = 0.5
W4_KEY_C = 256
W4_KEY_SHARE = 0.8
W4_PARTITION_SHARE = 0.9  # "matches its ideal": within 10% (the sink's 5 ms sleep has 1 ms ticks)
W5_VS_W1 = 0.9
W1_STEADY_RSS_MIB = 64.0

W4_LATENCY_MS = 5
W4_PARTITIONS = 12
W4_KEYS = 10_000


class BenchError(Exception):
    """A run failed; carries the failing tool's stderr tail."""


class Fatal(BenchError):
    """The benchmark itself cannot go on (build, broker or sink failed)."""


def say(message: str = "") -> None:
    print(message, flush=True)


def loud(message: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n{message}\n{bar}\n", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The venv: the script re-executes itself inside .testbed/venv-bench.
# --------------------------------------------------------------------------------------------


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_venv(argv: list[str]) -> None:
    python = VENV / "bin" / "python"
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    stamp = VENV / ".requirements.sha256"
    if not python.exists():
        say(f"creating {VENV.relative_to(REPO)} ...")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    if not stamp.exists() or stamp.read_text().strip() != requirements_digest():
        say(f"installing bench/requirements.txt into {VENV.relative_to(REPO)} ...")
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
            check=True,
            timeout=1800,
        )
        stamp.write_text(requirements_digest() + "\n")
    if inside:
        return
    if os.environ.get("MSK_BENCH_REEXEC") == "1":
        raise SystemExit(f"re-executed into {python} but sys.prefix is {sys.prefix}")
    os.environ["MSK_BENCH_REEXEC"] = "1"
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])


# --------------------------------------------------------------------------------------------
# Child processes: every one is registered, killed on exit, reaped with wait4 (for rusage).
# --------------------------------------------------------------------------------------------

_CHILDREN: list[Child] = []
SETPRIV = shutil.which("setpriv")  # --pdeathsig: children die with this script, even on SIGKILL


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    rows = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(rows) if rows else "(empty)"


class Child:
    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        stdin_pipe: bool = False,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        self.rusage: Any = None
        self.end: float | None = None
        self.exit_code: int | None = None
        prefix = [SETPRIV, "--pdeathsig", "KILL", "--"] if SETPRIV else []
        out = subprocess.PIPE if stdout_pipe else open(self.out_path, "wb")  # noqa: SIM115
        err = open(self.err_path, "wb")  # noqa: SIM115
        self.start = time.monotonic()
        self.wall_start = time.time()
        try:
            self.popen = subprocess.Popen(
                prefix + self.argv,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=REPO,
            )
        except OSError as error:
            raise BenchError(f"{name}: cannot start {self.argv[0]}: {error}") from error
        finally:
            if not stdout_pipe:
                out.close()
            err.close()
        self.pid = self.popen.pid
        _CHILDREN.append(self)

    def poll(self) -> int | None:
        """Reaps the child if it has exited (keeping its rusage); returns its exit code or None."""
        if self.exit_code is not None:
            return self.exit_code
        try:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.exit_code = self.popen.returncode if self.popen.returncode is not None else -1
            self.end = self.end or time.monotonic()
            return self.exit_code
        if pid == 0:
            return None
        self.end = time.monotonic()
        self.rusage = rusage
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.exit_code
        return self.exit_code

    def wait(self, timeout: float, interval: float = 0.01) -> int:
        deadline = time.monotonic() + timeout
        while True:
            code = self.poll()
            if code is not None:
                return code
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} still running after {timeout:.0f}s")
            time.sleep(interval)

    def send(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int:
        """SIGTERM (or closes stdin first when we hold it), waits, then SIGKILL."""
        if self.poll() is not None:
            return self.exit_code  # type: ignore[return-value]
        self.send(sig)
        try:
            return self.wait(timeout, interval=0.02)
        except TimeoutError:
            self.send(signal.SIGKILL)
            return self.wait(10)

    def close_stdin(self) -> None:
        if self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass

    def read_stdout(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.read_stdout().splitlines():
                if line.startswith(prefix):
                    return line
            if self.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.exit_code} before printing {prefix!r}\n"
                    f"--- stderr tail ({self.err_path}) ---\n{tail(self.err_path)}"
                )
            time.sleep(0.02)
        raise BenchError(
            f"{self.name} printed no {prefix!r} line within {timeout:.0f}s\n"
            f"--- stderr tail ({self.err_path}) ---\n{tail(self.err_path)}"
        )

    def failure(self, what: str) -> BenchError:
        return BenchError(f"{self.name}: {what}\n--- stderr tail ({self.err_path}) ---\n{tail(self.err_path)}")


def cleanup_children() -> None:
    alive = [c for c in _CHILDREN if c.poll() is None]
    for child in alive:
        child.close_stdin()
        child.send(signal.SIGTERM)
    deadline = time.monotonic() + 5
    for child in alive:
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.poll() is None:
            child.send(signal.SIGKILL)
            try:
                child.wait(5)
            except TimeoutError:
                pass


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return response.read().decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------
# Sampling: RSS every 100 ms, last CPU seen; kcat's stdout counted in large reads.
# --------------------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """RSS (and VmHWM, CPU) of one process: every 10 ms for its first 3 s, then every 100 ms.

    The fast start catches the peak of a tool that is done within a fraction of a second (kcat
    on small data): once it has exited its peak can no longer be read (see proc_hwm_bytes)."""

    def __init__(self, pid: int, interval: float = 0.1, fast_interval: float = 0.01, fast_for: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.fast_interval = fast_interval
        self.fast_until = time.monotonic() + fast_for
        self.samples: list[tuple[float, int]] = []
        self.cpu: float | None = None
        self.hwm = 0  # the largest VmHWM read
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            try:
                with process.oneshot():
                    rss = process.memory_info().rss
                    times = process.cpu_times()
            except psutil.Error:
                return
            self.samples.append((time.monotonic(), rss))
            self.cpu = times.user + times.system
            self.hwm = max(self.hwm, proc_hwm_bytes(self.pid) or 0)
            fast = time.monotonic() < self.fast_until
            self._stop_event.wait(self.fast_interval if fast else self.interval)

    def finish(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)

    def peak(self) -> int:
        return max(self.hwm, max((rss for _, rss in self.samples), default=0))

    def steady(self, first: float | None, last: float | None) -> int | None:
        """Median RSS over the middle half of [first, last] (monotonic seconds)."""
        if not self.samples:
            return None
        if first is None or last is None or last <= first:
            return int(statistics.median(rss for _, rss in self.samples))
        quarter = (last - first) / 4
        middle = [rss for t, rss in self.samples if first + quarter <= t <= last - quarter]
        if not middle:
            middle = [rss for t, rss in self.samples if first <= t <= last]
        if not middle:
            middle = [min(self.samples, key=lambda s: abs(s[0] - (first + last) / 2))[1]]
        return int(statistics.median(middle))


def proc_cpu_seconds(pid: int) -> float | None:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def proc_hwm_bytes(pid: int) -> int | None:
    """VmHWM: the kernel's own peak RSS of a live process.

    (Not ru_maxrss from wait4: Linux carries the parent's RSS at fork into the child's maxrss
    across exec, so a small tool would report this script's RSS as its peak.)"""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class LineCounter(threading.Thread):
    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines = 0
        self.first: float | None = None
        self.last: float | None = None

    def run(self) -> None:
        fd = self.stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                return
            if not chunk:
                return
            now = time.monotonic()
            newlines = chunk.count(b"\n")
            if newlines:
                if self.first is None:
                    self.first = now
                self.last = now
                self.lines += newlines


# --------------------------------------------------------------------------------------------
# One run of one tool.
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    variant: str
    repeat: int
    records: int
    records_seen: int | None = None
    seconds: float | None = None
    records_per_s: float | None = None
    cpu_s: float | None = None
    cpu_us_per_record: float | None = None
    rss_peak_mib: float | None = None
    rss_steady_mib: float | None = None
    startup_s: float | None = None
    window_source: str | None = None
    exit_code: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def finish(
        self,
        child: Child,
        sampler: Sampler,
        first: float | None,
        last: float | None,
        cpu_s: float | None,
        peak_bytes: int | None,
        source: str,
        seen: int | None,
    ) -> Run:
        self.window_source = source
        self.records_seen = seen
        if first is not None and last is not None and last > first:
            self.seconds = last - first
            self.records_per_s = (seen if seen is not None else self.records) / self.seconds
        if first is not None:
            self.startup_s = first - child.start
        self.cpu_s = cpu_s
        if cpu_s is not None:
            self.cpu_us_per_record = cpu_s / self.records * 1e6
        peak = max(peak_bytes or 0, sampler.peak())
        self.rss_peak_mib = peak / MIB if peak else None
        steady = sampler.steady(first, last)
        self.rss_steady_mib = steady / MIB if steady else None
        self.exit_code = child.exit_code
        return self


def rusage_cpu(child: Child) -> float | None:
    if child.rusage is None:
        return None
    return child.rusage.ru_utime + child.rusage.ru_stime


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


@dataclass
class Ctx:
    args: argparse.Namespace
    bins: dict[str, Path]
    log_dir: Path
    kcat: str | None
    kcat_skip: str | None
    mono_minus_wall: float = 0.0

    def wall_to_mono(self, wall: float) -> float:
        return wall + self.mono_minus_wall


class Sink:
    def __init__(self, ctx: Ctx, name: str, latency_ms: int = 0, fail_permille: int = 0) -> None:
        last_error: BenchError | None = None
        for attempt in range(3):
            self.port = free_port()
            argv = [ctx.bins["bench-sink"], "--port", str(self.port)]
            if latency_ms:
                argv += ["--latency-ms", str(latency_ms)]
            if fail_permille:
                argv += ["--fail-permille", str(fail_permille)]
            self.child = Child(f"{name}-sink{attempt or ''}", argv, ctx.log_dir)
            try:
                self.child.wait_line("READY", timeout=30)
                self.count()
                return
            except (BenchError, OSError) as error:
                last_error = error if isinstance(error, BenchError) else self.child.failure(str(error))
                self.child.stop(5)
        raise Fatal(f"bench-sink did not start: {last_error}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self) -> dict[str, Any]:
        return json.loads(http_get(f"{self.url}/count"))

    def stop(self) -> None:
        self.child.stop(10)


class Cluster:
    def __init__(
        self, ctx: Ctx, name: str, partitions: int, records: int, size: int, keys: int = 0,
        value_file: Path | None = None,
    ) -> None:  # fmt: skip
        argv = [
            ctx.bins["bench-mock-cluster"],
            "--partitions", str(partitions),
            "--records", str(records),
            "--size", str(size),
            "--topic", TOPIC,
        ]  # fmt: skip
        if keys:
            argv += ["--keys", str(keys)]
        if value_file is not None:
            argv += ["--value-file", str(value_file)]
        self.params = {"partitions": partitions, "records": records, "size": size, "keys": keys, "topic": TOPIC}
        started = time.monotonic()
        self.child = Child(f"{name}-cluster", argv, ctx.log_dir, stdin_pipe=True)
        try:
            line = self.child.wait_line("READY ", timeout=120 + records / 2000)
        except BenchError as error:
            self.child.stop(5)
            raise Fatal(f"bench-mock-cluster did not start: {error}") from error
        self.bootstrap = line.split(None, 1)[1].strip()
        self.ready_s = time.monotonic() - started

    def stop(self) -> None:
        self.child.close_stdin()
        try:
            self.child.wait(10, interval=0.05)
        except TimeoutError:
            self.child.stop(10)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SIDECAR_", "KAFKA_", "OTEL_", "AWS_", "SQS_", "REDIS_", "AMQP_"))
        and k not in ("RUST_LOG", "MSK_BENCH_REEXEC")
    }
    env.update(extra)
    return env


def run_timeout(ctx: Ctx, records: int, floor_rate: float) -> float:
    if ctx.args.run_timeout:
        return float(ctx.args.run_timeout)
    return 90.0 + records / floor_rate


# /metrics is polled this often; each poll costs the sidecar a little CPU, which the CPU figures include
POLL_INTERVAL = 0.05
METRIC_RE = re.compile(r"^msk_sidecar_records_(delivered|dead_lettered)_total\{([^}]*)\}\s+(\S+)")


def parse_progress(text: str, topic: str) -> tuple[int, int]:
    delivered = dead = 0.0
    want = f'topic="{topic}"'
    for line in text.splitlines():
        match = METRIC_RE.match(line)
        if match and want in match.group(2):
            value = float(match.group(3))
            if match.group(1) == "delivered":
                delivered += value
            else:
                dead += value
    return int(delivered), int(dead)


def estimate_window(history: list[tuple[float, int]], n: int) -> tuple[float | None, float | None]:
    """First/last completion times from (time, completed) polls, interpolated with the local rate.

    The first completion lies between the last poll at 0 and the first poll above 0; it is placed
    count/rate before the latter. The last lies between the last poll below n and the first at n;
    it is placed (n - count)/rate after the former (rates from the neighbouring polls)."""
    first_i = next((i for i, (_, c) in enumerate(history) if c > 0), None)
    done_i = next((i for i, (_, c) in enumerate(history) if c >= n), None)
    if first_i is None or done_i is None:
        return None, None

    def rate(i: int, j: int) -> float:
        (t0, c0), (t1, c1) = history[max(i, 0)], history[min(j, len(history) - 1)]
        return (c1 - c0) / (t1 - t0) if t1 > t0 and c1 > c0 else 0.0

    t1, c1 = history[first_i]
    first = t1
    if first_i > 0:
        t0 = history[first_i - 1][0]
        r = rate(first_i, first_i + 5)
        first = min(t1, max(t0, t1 - c1 / r)) if r > 0 else (t0 + t1) / 2
    tn, _ = history[done_i]
    last = tn
    if done_i == first_i and first_i > 0:
        # everything finished within one poll interval: the interval bounds the window (a lower
        # bound on records/s); only tiny runs (--smoke) get here
        return history[first_i - 1][0], tn
    if done_i > 0:
        ta, ca = history[done_i - 1]
        r = rate(max(done_i - 6, first_i), done_i - 1) or rate(first_i, done_i)
        last = max(ta, min(tn, ta + (n - ca) / r)) if r > 0 else (ta + tn) / 2
    return first, last


def progress_trace(history: list[tuple[float, int]], start: float, limit: int = 300) -> list[list[float]]:
    """[seconds since spawn, completed] from the last poll at 0 on, thinned to at most `limit` points."""
    first = next((i for i, (_, c) in enumerate(history) if c > 0), len(history))
    points = history[max(first - 1, 0) :]
    step = max(1, math.ceil(len(points) / limit))
    kept = points[::step] + ([points[-1]] if points and (len(points) - 1) % step else [])
    return [[round(t - start, 4), c] for t, c in kept]


def run_sidecar(
    ctx: Ctx,
    variant: str,
    repeat: int,
    cluster: Cluster,
    url: str,
    env_extra: dict[str, str] | None = None,
    sink: Sink | None = None,
    floor_rate: float = 2000.0,
) -> Run:
    """`msk-sidecar run`; progress from /metrics; the window from the sink when it delivers to one."""
    n = cluster.params["records"]
    admin = free_port()
    group = f"bench-{variant}-r{repeat}-{uuid.uuid4().hex[:8]}"
    env = clean_env(
        {
            "KAFKA_BROKERS": cluster.bootstrap,
            "KAFKA_TOPICS": TOPIC,
            "KAFKA_CONSUMER_GROUP": group,
            "KAFKA_AUTH": "none",
            "SIDECAR_ADMIN_ADDR": f"127.0.0.1:{admin}",
            "SIDECAR_LOG_FORMAT": "text",
            "RUST_LOG": "warn",
            "SIDECAR_DELIVERY_URL": url,
            **(env_extra or {}),
        }
    )
    result = Run(variant=variant, repeat=repeat, records=n)
    result.extra["env"] = {k: v for k, v in env.items() if k.startswith(("SIDECAR_", "OTEL_"))}
    child = Child(f"{variant}-r{repeat}", [ctx.bins["msk-sidecar"], "run"], ctx.log_dir, env=env)
    sampler = Sampler(child.pid)
    sampler.start()
    metrics_url = f"http://127.0.0.1:{admin}/metrics"
    history: list[tuple[float, int]] = [(child.start, 0)]
    deadline = child.start + run_timeout(ctx, n, floor_rate)
    delivered = dead = first_count = 0
    cpu = hwm = cpu_at_first = None
    try:
        while True:
            if child.poll() is not None:
                raise child.failure(f"exited with {child.exit_code} after {delivered + dead}/{n} records")
            if time.monotonic() > deadline:
                raise child.failure(f"timed out with {delivered + dead}/{n} records")
            sent = time.monotonic()
            try:
                delivered, dead = parse_progress(http_get(metrics_url, timeout=2), TOPIC)
            except (OSError, urllib.error.URLError):
                time.sleep(POLL_INTERVAL)  # not listening yet
                continue
            now = time.monotonic()
            history.append(((sent + now) / 2, delivered + dead))
            if cpu_at_first is None and delivered + dead > 0:
                cpu_at_first, first_count = proc_cpu_seconds(child.pid), delivered + dead
            if delivered + dead >= n:
                cpu = proc_cpu_seconds(child.pid)
                hwm = proc_hwm_bytes(child.pid)
                break
            time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - sent)))
        first, last = estimate_window(history, n)
        source, seen = "metrics", delivered + dead
        if sink is not None:
            counts = sink.count()
            result.extra["sink"] = counts
            if counts.get("first_ms") and counts.get("last_ms"):
                first = ctx.wall_to_mono(counts["first_ms"] / 1000)
                last = ctx.wall_to_mono(counts["last_ms"] / 1000)
                source, seen = "sink", int(counts["records"])
        result.extra.update(delivered=delivered, dead_lettered=dead, metric_polls=len(history))
        result.extra["progress"] = progress_trace(history, child.start)
        if source == "metrics" and not any(0 < c < n for _, c in history):
            result.extra["note"] = "finished within one /metrics poll: records/s is a lower bound"
        if cpu_at_first is not None and cpu is not None:
            # CPU from the first counted record to the last, without start-up and group join
            result.extra["cpu_us_per_record_after_first"] = (cpu - cpu_at_first) / max(n - first_count, 1) * 1e6
        if delivered + dead != n:
            result.extra["note"] = f"delivered + dead-lettered = {delivered + dead}, expected {n}"
        stop_started = time.monotonic()
        code = child.stop(timeout=40)
        result.extra["shutdown_s"] = round(time.monotonic() - stop_started, 3)
        if code != 0:
            loud(f"{child.name}: exited with {code} after SIGTERM\n{tail(child.err_path, 15)}")
        sampler.finish()
        return result.finish(child, sampler, first, last, cpu, hwm, source, seen)
    finally:
        sampler.finish()
        if child.poll() is None:  # failed half-way: do not leave it consuming
            child.stop(timeout=10, sig=signal.SIGKILL)


def run_baseline(ctx: Ctx, variant: str, repeat: int, cluster: Cluster) -> Run:
    n = cluster.params["records"]
    argv = [ctx.bins["bench-baseline"], "--bootstrap", cluster.bootstrap, "--topic", TOPIC, "--records", str(n)]
    child = Child(f"{variant}-r{repeat}", argv, ctx.log_dir)
    sampler = Sampler(child.pid)
    sampler.start()
    try:
        try:
            code = child.wait(run_timeout(ctx, n, 5000))
        except TimeoutError as error:
            raise child.failure(str(error)) from error
        sampler.finish()
        report = last_json_line(child.read_stdout())
        if code != 0 or report is None:
            raise child.failure(f"exited with {code}, report {report!r}")
        result = Run(variant=variant, repeat=repeat, records=n)
        result.extra["report"] = report
        assert child.end is not None
        last = child.end
        first = last - float(report["seconds"])
        return result.finish(
            child, sampler, first, last, rusage_cpu(child), None, "self-report", int(report["records"])
        )
    finally:
        sampler.finish()
        child.stop(5)


def run_kcat(ctx: Ctx, variant: str, repeat: int, cluster: Cluster) -> Run:
    n = cluster.params["records"]
    assert ctx.kcat is not None
    # -c N: stop at the Nth record like the other tools. With -e alone kcat waits for every
    # partition's EOF (a fetch round, ~0.4 s) before it exits and flushes its last stdout buffer,
    # which would land in its window. -e stays as the guard against a short topic.
    argv = [ctx.kcat, "-C", "-b", cluster.bootstrap, "-t", TOPIC, "-o", "beginning", "-c", str(n), "-e", "-q"]
    argv += ["-f", "%o\\n"]
    child = Child(f"{variant}-r{repeat}", argv, ctx.log_dir, stdout_pipe=True)
    counter = LineCounter(child.popen.stdout)
    counter.start()
    sampler = Sampler(child.pid)
    sampler.start()
    try:
        try:
            code = child.wait(run_timeout(ctx, n, 5000))
        except TimeoutError as error:
            raise child.failure(str(error)) from error
        counter.join(timeout=10)
        sampler.finish()
        if code != 0 or counter.lines != n:
            raise child.failure(f"exited with {code} after printing {counter.lines}/{n} offsets")
        result = Run(variant=variant, repeat=repeat, records=n)
        return result.finish(
            child, sampler, counter.first, counter.last, rusage_cpu(child), None, "stdout", counter.lines
        )
    finally:
        sampler.finish()
        child.stop(5)


def sink_run(
    ctx: Ctx,
    variant: str,
    repeat: int,
    n: int,
    child: Child,
    sampler: Sampler,
    counts: dict[str, Any],
    seen: int,
    **extra: Any,
) -> Run:
    """A run measured by the sink: its first and last request bound the window, the child's
    rusage gives the CPU."""
    result = Run(variant=variant, repeat=repeat, records=n)
    result.extra.update(sink=counts, **extra)
    first = ctx.wall_to_mono(counts["first_ms"] / 1000) if counts.get("first_ms") else None
    last = ctx.wall_to_mono(counts["last_ms"] / 1000) if counts.get("last_ms") else None
    return result.finish(child, sampler, first, last, rusage_cpu(child), None, "sink", seen)


def run_python(ctx: Ctx, variant: str, repeat: int, cluster: Cluster) -> Run:
    n = cluster.params["records"]
    sink = Sink(ctx, f"{variant}-r{repeat}")
    try:
        argv = [
            VENV / "bin" / "python", PYTHON_PATTERN,
            "--bootstrap", cluster.bootstrap, "--topic", TOPIC, "--records", str(n),
            "--url", f"{sink.url}/events", "--workers", str(ctx.args.workers),
            "--timeout", str(int(run_timeout(ctx, n, 500))),
        ]  # fmt: skip
        child = Child(f"{variant}-r{repeat}", argv, ctx.log_dir, env=clean_env({"PYTHONUNBUFFERED": "1"}))
        sampler = Sampler(child.pid)
        sampler.start()
        try:
            try:
                code = child.wait(run_timeout(ctx, n, 500) + 30)
            except TimeoutError as error:
                raise child.failure(str(error)) from error
            sampler.finish()
            report = last_json_line(child.read_stdout())
            if code != 0 or report is None:
                raise child.failure(f"exited with {code}, report {report!r}")
            counts = sink.count()
            return sink_run(
                ctx, variant, repeat, n, child, sampler, counts, int(counts["records"]),
                report=report, workers=ctx.args.workers,
            )  # fmt: skip
        finally:
            sampler.finish()
            child.stop(5)
    finally:
        sink.stop()


# --------------------------------------------------------------------------------------------
# Variants, rows and comparisons.
# --------------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    label: str
    run: Callable[[Ctx, str, int, Cluster | None], Run]
    config: dict[str, Any]


def sidecar_null(url: str, env: dict[str, str] | None = None, otlp: bool = False) -> Callable[..., Run]:
    def run(ctx: Ctx, variant: str, repeat: int, cluster: Cluster) -> Run:
        extra = dict(env or {})
        sink = None
        if otlp:
            sink = Sink(ctx, f"{variant}-r{repeat}-otlp")
            extra.update(OTEL_EXPORTER_OTLP_ENDPOINT=sink.url, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
        try:
            return run_sidecar(ctx, variant, repeat, cluster, url, extra, None, floor_rate=5000)
        finally:
            if sink is not None:
                sink.stop()

    return run


def sidecar_http(env: dict[str, str]) -> Callable[..., Run]:
    def run(ctx: Ctx, variant: str, repeat: int, cluster: Cluster) -> Run:
        sink = Sink(ctx, f"{variant}-r{repeat}")
        try:
            return run_sidecar(ctx, variant, repeat, cluster, f"{sink.url}/events", env, sink, floor_rate=1000)
        finally:
            sink.stop()

    return run


def backlog_variants(args: argparse.Namespace) -> dict[str, Variant]:
    trace = {"OTEL_SERVICE_NAME": "msk-sidecar-bench"}
    return {
        "sidecar": Variant("sidecar", "msk-sidecar (null://)", sidecar_null("null://"), {"url": "null://"}),
        "baseline": Variant("baseline", "rdkafka BaseConsumer", run_baseline, {}),
        "kcat": Variant("kcat", "kcat -C -e", run_kcat, {"args": "-C -o beginning -c N -e -q -f '%o\\n'"}),
        "python": Variant(
            "python", "Python pattern (HTTP to bench-sink)", run_python, {"workers": args.workers, "sink_latency_ms": 0}
        ),
        "sidecar-fail1pct": Variant(
            "sidecar-fail1pct",
            "msk-sidecar, 1% permanent failures",
            sidecar_null("null://?fail_permille=10"),
            {"url": "null://?fail_permille=10"},
        ),
        "sidecar-trace-on": Variant(
            "sidecar-trace-on",
            "msk-sidecar, tracing on, 100% sampled",
            sidecar_null("null://", {**trace, "OTEL_TRACES_SAMPLER": "always_on"}, otlp=True),
            {"url": "null://", "OTEL_TRACES_SAMPLER": "always_on", "otlp": "http/protobuf to bench-sink"},
        ),
        "sidecar-trace-0pct": Variant(
            "sidecar-trace-0pct",
            "msk-sidecar, tracing on, 0% sampled",
            sidecar_null("null://", {**trace, "OTEL_TRACES_SAMPLER": "always_off"}, otlp=True),
            {"url": "null://", "OTEL_TRACES_SAMPLER": "always_off", "otlp": "http/protobuf to bench-sink"},
        ),
    }


def http_variants(args: argparse.Namespace) -> dict[str, Variant]:
    base = {"SIDECAR_ORDERING": args.w2_ordering}
    return {
        "sidecar-http": Variant(
            "sidecar-http", "msk-sidecar (HTTP, 1 record/request)", sidecar_http(base), {**base, "sink_latency_ms": 0}
        ),
        "python-http": Variant(
            "python-http", "Python pattern (HTTP)", run_python, {"workers": args.workers, "sink_latency_ms": 0}
        ),
        "sidecar-http-batch100": Variant(
            "sidecar-http-batch100",
            "msk-sidecar (HTTP, batches of 100)",
            sidecar_http({**base, "SIDECAR_DELIVERY_BATCH_MAX_RECORDS": "100"}),
            {**base, "SIDECAR_DELIVERY_BATCH_MAX_RECORDS": "100", "sink_latency_ms": 0},
        ),
    }


AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


def aws_env() -> dict[str, str]:
    """The SQS row's AWS variables (LocalStack's endpoint and test keys), from this environment;
    boto3 reads the region from AWS_DEFAULT_REGION, the Rust SDK from AWS_REGION."""
    env = {k: os.environ[k] for k in AWS_VARIABLES if k in os.environ}
    if "AWS_REGION" in env:
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    return env


def sqs_fill(name: str, n: int, size: int) -> str:
    """A new standard queue holding `n` messages of `size` bytes; its URL."""
    import boto3  # the bench venv has it; only the SQS row needs it

    sqs = boto3.client("sqs", region_name=aws_env().get("AWS_DEFAULT_REGION"))
    url = sqs.create_queue(QueueName=f"bench-{name}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    body = "x" * size

    def send(start: int) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, n - start))]
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if answer.get("Failed"):
            raise BenchError(f"SQS refused {len(answer['Failed'])} messages while filling {url}")

    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(0, n, 10)))
    return url


def sqs_window(ctx: Ctx, sink: Sink, n: int, child: Child) -> dict[str, Any]:  # also the REDIS and AMQP rows
    """Waits until the sink has `n` requests (or the run times out); the sink's counts."""
    deadline = time.monotonic() + run_timeout(ctx, n, 50)
    while time.monotonic() < deadline:
        counts = sink.count()
        if counts["requests"] >= n:
            return counts
        if child.poll() is not None:
            raise child.failure(f"exited with {child.exit_code} after {counts['requests']} of {n} messages")
        time.sleep(0.1)
    raise child.failure(f"{sink.count()['requests']} of {n} messages within the time limit")


def run_sidecar_sqs(ctx: Ctx, variant: str, repeat: int, cluster: Cluster) -> Run:
    """`msk-sidecar run` with an SQS source next to an empty topic, POSTing each message."""
    n, size = ctx.args.sqs_records, 100
    url = sqs_fill(f"{variant}-r{repeat}", n, size)
    sink = Sink(ctx, f"{variant}-r{repeat}")
    try:
        env = clean_env(
            {
                **aws_env(),
                "KAFKA_BROKERS": cluster.bootstrap,
                "KAFKA_TOPICS": TOPIC,
                "KAFKA_CONSUMER_GROUP": f"bench-{variant}-r{repeat}-{uuid.uuid4().hex[:8]}",
                "KAFKA_AUTH": "none",
                "SIDECAR_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
                "SIDECAR_LOG_FORMAT": "text",
                "RUST_LOG": "warn",
                "SIDECAR_DELIVERY_URL": f"{sink.url}/events",
                "SIDECAR_DLQ_ARCHIVE": f"file://{ctx.log_dir / (variant + '-archive')}",
                "SQS_QUEUE_URLS": url,
                "SQS_WAIT_TIME": "1s",
            }
        )
        child = Child(f"{variant}-r{repeat}", [ctx.bins["msk-sidecar"], "run"], ctx.log_dir, env=env)
        sampler = Sampler(child.pid)
        sampler.start()
        try:
            # The topic's one record reaches the sink too.
            counts = sqs_window(ctx, sink, n + cluster.params["records"], child)
            child.stop(30)
            sampler.finish()
            return sink_run(ctx, variant, repeat, n, child, sampler, counts, n, queue=url)
        finally:
            sampler.finish()
            child.stop(5)
    finally:
        sink.stop()


def run_python_sqs(ctx: Ctx, variant: str, repeat: int, cluster: Cluster) -> Run:
    """The seeds' SQS polling loop (bench/sqs_pattern.py): boto3, one message at a time."""
    n, size = ctx.args.sqs_records, 100
    url = sqs_fill(f"{variant}-r{repeat}", n, size)
    sink = Sink(ctx, f"{variant}-r{repeat}")
    try:
        argv = [
            VENV / "bin" / "python", SQS_PATTERN, "--queue-url", url, "--url", f"{sink.url}/events",
            "--messages", str(n), "--loops", str(ctx.args.sqs_loops),
        ]  # fmt: skip
        env = clean_env({**aws_env(), "PYTHONUNBUFFERED": "1"})
        child = Child(f"{variant}-r{repeat}", argv, ctx.log_dir, env=env)
        sampler = Sampler(child.pid)
        sampler.start()
        try:
            try:
                code = child.wait(run_timeout(ctx, n, 50) + 30)
            except TimeoutError as error:
                raise child.failure(str(error)) from error
            sampler.finish()
            report = last_json_line(child.read_stdout())
            if code != 0 or report is None or report.get("messages", 0) < n:
                raise child.failure(f"exited with {code}, report {report!r}")
            counts = sink.count()
            return sink_run(
                ctx, variant, repeat, n, child, sampler, counts, int(counts["requests"]),
                report=report, loops=ctx.args.sqs_loops, queue=url,
            )  # fmt: skip
        finally:
            sampler.finish()
            child.stop(5)
    finally:
        sink.stop()


def sqs_variants(args: argparse.Namespace) -> dict[str, Variant]:
    return {
        "sidecar-sqs": Variant(
            "sidecar-sqs",
            "msk-sidecar (SQS source, HTTP, 1 message/request)",
            run_sidecar_sqs,
            {"SQS_WAIT_TIME": "1s", "SIDECAR_MAX_IN_FLIGHT": "256"},
        ),
        "python-sqs": Variant(
            "python-sqs",
            "boto3 long-poll loop (the seeds' SQS polling loop)",
            run_python_sqs,
            {"loops": args.sqs_loops, "receive": "10 messages, 1 s wait", "delete": "batch"},
        ),
    }


# --------------------------------------------------------------------------------------------
# REDIS and AMQP rows: the test bed's servers, no Kafka.
# --------------------------------------------------------------------------------------------


def redis_fill(name: str, n: int, size: int) -> tuple[str, str]:
    """A new stream holding `n` entries whose `data` field has `size` bytes, and a consumer group
    on it from its start: (stream, group)."""
    import redis  # the bench venv has it; only the REDIS row needs it

    client = redis.Redis.from_url(os.environ["TESTBED_REDIS_URL"])
    stream, group = f"bench-{name}-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    body = b"x" * size
    for start in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(1000, n - start)):
            pipe.xadd(stream, {"data": body})
        pipe.execute()
    client.xgroup_create(stream, group, id="0")
    if client.xlen(stream) != n:
        raise BenchError(f"Redis holds {client.xlen(stream)} of {n} entries in {stream}")
    client.close()
    return stream, group


def amqp_fill(name: str, n: int, size: int) -> str:
    """A new durable classic queue holding `n` persistent messages of `size` bytes, published with
    confirms; its name."""
    import asyncio

    import aio_pika  # the bench venv has it; only the AMQP row needs it

    queue = f"bench-{name}-{uuid.uuid4().hex[:8]}"

    async def fill() -> int:
        connection = await aio_pika.connect(os.environ["TESTBED_AMQP_URL"])
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            declared = await channel.declare_queue(queue, durable=True)
            for start in range(0, n, 500):
                await asyncio.gather(*(
                    channel.default_exchange.publish(
                        aio_pika.Message(b"x" * size, message_id=f"m-{start + i}",
                                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue,
                    )
                    for i in range(min(500, n - start))
                ))  # fmt: skip
            declared = await channel.declare_queue(queue, durable=True, passive=True)
            return int(declared.declaration_result.message_count or 0)

    held = asyncio.run(fill())
    if held != n:
        raise BenchError(f"RabbitMQ holds {held} of {n} messages in {queue}")
    return queue


def source_remove(kind: str, name: str) -> None:
    """Deletes a REDIS row's stream or an AMQP row's queue (best effort: the run is measured)."""
    try:
        if kind == "redis":
            import redis

            client = redis.Redis.from_url(os.environ["TESTBED_REDIS_URL"])
            client.delete(name, f"{name}.dlq")
            client.close()
        else:
            import asyncio

            import aio_pika

            async def remove() -> None:
                connection = await aio_pika.connect(os.environ["TESTBED_AMQP_URL"])
                async with connection:
                    channel = await connection.channel()
                    await channel.queue_delete(name)

            asyncio.run(remove())
    except Exception as error:  # noqa: BLE001 - leftovers are clutter, not a failed run
        say(f"    could not remove {kind} {name}: {error}")


def run_sidecar_source(kind: str) -> Callable[..., Run]:
    """`msk-sidecar run` with only a Redis or RabbitMQ source, POSTing each message."""

    def run(ctx: Ctx, variant: str, repeat: int, _cluster: Cluster | None) -> Run:
        n, size = getattr(ctx.args, f"{kind}_records"), 100
        if kind == "redis":
            stream, group = redis_fill(f"{variant}-r{repeat}", n, size)
            source = {"REDIS_URL": os.environ["TESTBED_REDIS_URL"], "REDIS_STREAMS": stream,
                      "REDIS_CONSUMER_GROUP": group, "REDIS_CONSUMER_NAME": "sidecar"}  # fmt: skip
        else:
            stream = amqp_fill(f"{variant}-r{repeat}", n, size)
            source = {"AMQP_URL": os.environ["TESTBED_AMQP_URL"], "AMQP_QUEUES": stream}
        sink = Sink(ctx, f"{variant}-r{repeat}")
        try:
            config = {k: str(v) for k, v in source_variants(ctx.args, kind)[variant].config.items()}
            env = clean_env({
                **source, **config,
                "SIDECAR_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
                "SIDECAR_LOG_FORMAT": "text",
                "RUST_LOG": "warn",
                "SIDECAR_DELIVERY_URL": f"{sink.url}/events",
                "SIDECAR_DLQ_ARCHIVE": f"file://{ctx.log_dir / (variant + '-archive')}",
            })  # fmt: skip
            child = Child(f"{variant}-r{repeat}", [ctx.bins["msk-sidecar"], "run"], ctx.log_dir, env=env)
            sampler = Sampler(child.pid)
            sampler.start()
            try:
                counts = sqs_window(ctx, sink, n, child)
                child.stop(30)
                sampler.finish()
                return sink_run(ctx, variant, repeat, n, child, sampler, counts, n, **{kind: stream})
            finally:
                sampler.finish()
                child.stop(5)
        finally:
            sink.stop()
            source_remove(kind, stream)

    return run


def run_python_source(kind: str) -> Callable[..., Run]:
    """The seeds' consumer of that source (bench/redis_pattern.py, bench/amqp_pattern.py)."""

    def run(ctx: Ctx, variant: str, repeat: int, _cluster: Cluster | None) -> Run:
        n, size = getattr(ctx.args, f"{kind}_records"), 100
        sink = Sink(ctx, f"{variant}-r{repeat}")
        try:
            if kind == "redis":
                stream, group = redis_fill(f"{variant}-r{repeat}", n, size)
                argv = [VENV / "bin" / "python", REDIS_PATTERN, "--redis-url", os.environ["TESTBED_REDIS_URL"],
                        "--stream", stream, "--group", group]  # fmt: skip
            else:
                stream = amqp_fill(f"{variant}-r{repeat}", n, size)
                argv = [VENV / "bin" / "python", AMQP_PATTERN, "--amqp-url", os.environ["TESTBED_AMQP_URL"],
                        "--queue", stream, "--prefetch", "256"]  # fmt: skip
            argv += ["--url", f"{sink.url}/events", "--messages", str(n)]
            child = Child(f"{variant}-r{repeat}", argv, ctx.log_dir, env=clean_env({"PYTHONUNBUFFERED": "1"}))
            sampler = Sampler(child.pid)
            sampler.start()
            try:
                try:
                    code = child.wait(run_timeout(ctx, n, 50) + 30)
                except TimeoutError as error:
                    raise child.failure(str(error)) from error
                sampler.finish()
                report = last_json_line(child.read_stdout())
                if code != 0 or report is None or report.get("messages", 0) < n:
                    raise child.failure(f"exited with {code}, report {report!r}")
                counts = sink.count()
                return sink_run(
                    ctx, variant, repeat, n, child, sampler, counts, int(counts["requests"]),
                    report=report, **{kind: stream},
                )  # fmt: skip
            finally:
                sampler.finish()
                child.stop(5)
                source_remove(kind, stream)
        finally:
            sink.stop()

    return run


def source_variants(args: argparse.Namespace, kind: str) -> dict[str, Variant]:
    """The REDIS or AMQP row: the sidecar in order (the default, one stream or queue is one lane,
    as the Python loop), the sidecar with `SIDECAR_ORDERING=none`, and the seeds' loop."""
    what = {"redis": ("Redis Streams", "redis-py XREADGROUP loop, XACK per entry"),
            "amqp": ("RabbitMQ", "aio-pika queue.iterator(), prefetch 256")}[kind]  # fmt: skip
    ordered = {"SIDECAR_MAX_IN_FLIGHT": "256"}
    return {
        f"sidecar-{kind}": Variant(f"sidecar-{kind}", f"msk-sidecar ({what[0]} source, in order)",
                                   run_sidecar_source(kind), ordered),  # fmt: skip
        f"sidecar-{kind}-none": Variant(f"sidecar-{kind}-none", f"msk-sidecar ({what[0]} source, SIDECAR_ORDERING=none)",
                                        run_sidecar_source(kind), {**ordered, "SIDECAR_ORDERING": "none"}),  # fmt: skip
        f"python-{kind}": Variant(f"python-{kind}", f"{what[1]} (the seeds' consumer)", run_python_source(kind),
                                  {"messages handled": "one at a time"}),  # fmt: skip
    }


# --------------------------------------------------------------------------------------------
# AVRO and PROTOBUF rows: the cost of decoding, on the W1 workload with encoded values.
# --------------------------------------------------------------------------------------------

# One record of each: an order id, a count and a text, about 100 bytes encoded.
DECODE_FIELDS = {"id": "order-000123", "n": 123456789, "text": "x" * 76}
AVRO_SCHEMA = json.dumps({"type": "record", "name": "Bench", "namespace": "bench", "fields": [
    {"name": "id", "type": "string"}, {"name": "n", "type": "long"}, {"name": "text", "type": "string"}]})  # fmt: skip
_DECODE_MATERIAL: dict[str, dict[str, Any]] = {}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _avro_datum() -> bytes:
    """DECODE_FIELDS in Avro's binary encoding (zigzag longs, length-prefixed strings)."""
    zigzag = lambda n: (n << 1) ^ (n >> 63)  # noqa: E731
    text = lambda s: _varint(zigzag(len(s.encode()))) + s.encode()  # noqa: E731
    f = DECODE_FIELDS
    return text(f["id"]) + _varint(zigzag(f["n"])) + text(f["text"])


def decode_material(ctx: Ctx, kind: str) -> dict[str, Any]:
    """The value file and the decoding variables of an AVRO or PROTOBUF row (made once a run)."""
    if kind in _DECODE_MATERIAL:
        return _DECODE_MATERIAL[kind]
    value_file = ctx.log_dir / f"{kind}.value"
    if kind == "avro":
        import boto3  # the bench venv has it

        glue = boto3.client("glue", endpoint_url=os.environ["TESTBED_GLUE_ENDPOINT"], region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
        registry = f"bench-{uuid.uuid4().hex[:8]}"
        glue.create_registry(RegistryName=registry)
        created = glue.create_schema(RegistryId={"RegistryName": registry}, SchemaName="bench", DataFormat="AVRO",
                                     Compatibility="NONE", SchemaDefinition=AVRO_SCHEMA)  # fmt: skip
        version = uuid.UUID(created["SchemaVersionId"])
        value_file.write_bytes(b"\x03\x00" + version.bytes + _avro_datum())
        env = {"SIDECAR_VALUE_FORMAT": "avro", "SIDECAR_SCHEMA_REGISTRY": "glue",
               "AWS_ENDPOINT_URL_GLUE": os.environ["TESTBED_GLUE_ENDPOINT"], "AWS_ACCESS_KEY_ID": "test",
               "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}  # fmt: skip
    else:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # the bench venv has it

        file = descriptor_pb2.FileDescriptorProto(name="bench.proto", package="bench", syntax="proto3")
        message = file.message_type.add(name="Bench")
        for number, (name, kind_) in enumerate((("id", 9), ("n", 3), ("text", 9)), start=1):
            message.field.add(name=name, number=number, type=kind_, label=1, json_name=name)
        files = descriptor_pb2.FileDescriptorSet(file=[file])
        descriptor = ctx.log_dir / "bench.pb"
        descriptor.write_bytes(files.SerializeToString())
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Bench"))
        value_file.write_bytes(cls(**DECODE_FIELDS).SerializeToString())
        env = {"SIDECAR_VALUE_FORMAT": "protobuf", "SIDECAR_PROTOBUF_DESCRIPTOR": str(descriptor),
               "SIDECAR_PROTOBUF_MESSAGE": "bench.Bench"}  # fmt: skip
    _DECODE_MATERIAL[kind] = {"value_file": value_file, "env": env, "size": value_file.stat().st_size}
    return _DECODE_MATERIAL[kind]


def sidecar_decoding(kind: str, decode: bool) -> Callable[..., Run]:
    """The W1 sidecar (null://) on encoded values, decoding them or not."""

    def run(ctx: Ctx, variant: str, repeat: int, cluster: Cluster) -> Run:
        env = decode_material(ctx, kind)["env"] if decode else {}
        return sidecar_null("null://", env)(ctx, variant, repeat, cluster)

    return run


def decode_variants(args: argparse.Namespace, kind: str) -> dict[str, Variant]:
    what = {"avro": "Glue-framed Avro, SIDECAR_VALUE_FORMAT=avro", "protobuf": "SIDECAR_VALUE_FORMAT=protobuf"}[kind]
    return {
        f"sidecar-raw-{kind}": Variant(f"sidecar-raw-{kind}", f"msk-sidecar (null://), {kind} values raw",
                                       sidecar_decoding(kind, False), {"url": "null://"}),  # fmt: skip
        f"sidecar-{kind}": Variant(f"sidecar-{kind}", f"msk-sidecar (null://), {what}",
                                   sidecar_decoding(kind, True), {"url": "null://", "decode": what}),  # fmt: skip
    }


def catalogs(args: argparse.Namespace) -> dict[str, dict[str, Variant]]:
    return {"backlog": backlog_variants(args), "http": http_variants(args), "sqs": sqs_variants(args),
            "redis": source_variants(args, "redis"), "amqp": source_variants(args, "amqp"),
            "avro": decode_variants(args, "avro"), "protobuf": decode_variants(args, "protobuf")}  # fmt: skip


ROW_VARIANTS = {
    "W1": ("backlog", ["sidecar", "baseline", "kcat", "python"]),
    "W5": ("backlog", ["sidecar", "sidecar-fail1pct"]),
    "TRACE": ("backlog", ["sidecar", "sidecar-trace-on", "sidecar-trace-0pct"]),
    "W2": ("http", ["sidecar-http", "python-http"]),
    "BATCH": ("http", ["sidecar-http", "sidecar-http-batch100"]),
    "SQS": ("sqs", ["sidecar-sqs", "python-sqs"]),
    "REDIS": ("redis", ["sidecar-redis", "sidecar-redis-none", "python-redis"]),
    "AMQP": ("amqp", ["sidecar-amqp", "sidecar-amqp-none", "python-amqp"]),
    "AVRO": ("avro", ["sidecar-raw-avro", "sidecar-avro"]),
    "PROTOBUF": ("protobuf", ["sidecar-raw-protobuf", "sidecar-protobuf"]),
}

ROW_TITLES = {
    "W1": "W1 backlog drain (null sink)",
    "W2": "W2 HTTP delivery, one request per record, app answers 200",
    "W4": "W4 application latency 5 ms, 12 partitions, 10,000 keys",
    "W5": "W5 1% permanent failures (dead-lettered) vs W1",
    "TRACE": "Tracing cost (W1 workload, null://)",
    "BATCH": "HTTP batch delivery (W2 workload)",
    "SQS": "SQS source to HTTP (LocalStack), one request per message",
    "REDIS": "Redis Streams source to HTTP (the test bed's redis-server), one request per entry",
    "AMQP": "RabbitMQ source to HTTP (the test bed's rabbitmq-server), one request per message",
    "AVRO": "Decoding Glue-framed Avro to JSON (W1 workload, null://), CPU on top of raw",
    "PROTOBUF": "Decoding Protobuf to JSON (W1 workload, null://), CPU on top of raw",
}


def w4_ideal(mode: str, concurrency: int) -> float:
    lanes = {"partition": W4_PARTITIONS, "key": W4_KEYS}.get(mode, concurrency)
    return min(concurrency, lanes) / (W4_LATENCY_MS / 1000)


def w4_points(args: argparse.Namespace) -> list[dict[str, Any]]:
    points = []
    for mode in args.w4_modes:
        for c in args.concurrency:
            ideal = w4_ideal(mode, c)
            n = int(min(args.w4_max_records, max(args.w4_min_records, ideal * args.w4_seconds)))
            points.append({"mode": mode, "concurrency": c, "records": n, "ideal_rps": ideal})
    if args.smoke:
        keep = {("partition", 12), ("key", 256)}
        points = [p for p in points if (p["mode"], p["concurrency"]) in keep] or points[:2]
    return points


def run_w4_point(ctx: Ctx, point: dict[str, Any], repeat: int) -> Run:
    variant = f"w4-{point['mode']}-c{point['concurrency']}"
    cluster = Cluster(ctx, f"{variant}-r{repeat}", W4_PARTITIONS, point["records"], 100, keys=W4_KEYS)
    try:
        sink = Sink(ctx, f"{variant}-r{repeat}", latency_ms=W4_LATENCY_MS)
        try:
            env = {"SIDECAR_ORDERING": point["mode"], "SIDECAR_MAX_IN_FLIGHT": str(point["concurrency"])}
            floor = max(20.0, point["ideal_rps"] * 0.1)
            return run_sidecar(ctx, variant, repeat, cluster, f"{sink.url}/events", env, sink, floor_rate=floor)
        finally:
            sink.stop()
    finally:
        cluster.stop()


def guarded(ctx: Ctx, variant: str, repeat: int, records: int, fn: Callable[[], Run]) -> Run:
    started = time.monotonic()
    try:
        run = fn()
    except Fatal:
        raise
    except Exception as error:  # noqa: BLE001 - one failed run must not lose the others
        text = str(error) if isinstance(error, BenchError) else f"{type(error).__name__}: {error}"
        loud(f"{variant} (repeat {repeat + 1}) FAILED\n{text}")
        run = Run(variant=variant, repeat=repeat, records=records, error=text.splitlines()[0] if text else "failed")
    say(f"    {describe_run(run)}  [{time.monotonic() - started:.1f}s]")
    time.sleep(ctx.args.pause)
    return run


def describe_run(run: Run) -> str:
    if run.error:
        return f"{run.variant:<24} ERROR {run.error}"
    return (
        f"{run.variant:<24} {fmt_int(run.records_per_s):>11} rec/s  {fmt(run.cpu_us_per_record, 2):>7} us/rec  "
        f"peak {fmt(run.rss_peak_mib, 1):>6} MiB  steady {fmt(run.rss_steady_mib, 1):>6} MiB  "
        f"startup {fmt(run.startup_s, 2):>5}s"
    )


def execute(ctx: Ctx, rows: list[str]) -> dict[str, Any]:
    args = ctx.args
    comparisons: dict[str, Any] = {}
    wanted: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for row in rows:
        if row in ROW_VARIANTS:
            kind, names = ROW_VARIANTS[row]
            for name in names:
                if name not in wanted[kind]:
                    wanted[kind].append(name)
    if "kcat" in wanted["backlog"] and ctx.kcat is None:
        wanted["backlog"].remove("kcat")
    catalog = catalogs(args)
    data = {
        "backlog": {"partitions": 24, "records": args.records, "size": 100, "keys": 0},
        "http": {"partitions": 24, "records": args.w2_records, "size": 100, "keys": 0},
        # The SQS row's Kafka side: one record on one partition, next to the queue.
        "sqs": {"partitions": 1, "records": 1, "size": 100, "keys": 0},
        # One stream or queue: "partitions" counts them.
        "redis": {"partitions": 1, "records": args.redis_records, "size": 100, "keys": 0},
        "amqp": {"partitions": 1, "records": args.amqp_records, "size": 100, "keys": 0},
        # The W1 backlog, every value one encoded record.
        "avro": {"partitions": 24, "records": args.records, "size": 100, "keys": 0},
        "protobuf": {"partitions": 24, "records": args.records, "size": 100, "keys": 0},
    }
    if wanted["avro"] and "TESTBED_GLUE_ENDPOINT" not in os.environ:
        loud("AVRO row SKIPPED: it needs the test bed's Glue (moto): localstack/testbed.sh up; set -a; . .testbed/env; set +a")
        wanted["avro"] = []
    if wanted["sqs"] and "AWS_ENDPOINT_URL" not in os.environ:
        loud("SQS row SKIPPED: it needs LocalStack (localstack/testbed.sh up; set -a; . .testbed/env; set +a)")
        wanted["sqs"] = []
    for kind, variable in (("redis", "TESTBED_REDIS_URL"), ("amqp", "TESTBED_AMQP_URL")):
        if wanted[kind] and variable not in os.environ:
            loud(f"{kind.upper()} row SKIPPED: it needs {variable} (localstack/testbed.sh up; set -a; . .testbed/env; set +a)")
            wanted[kind] = []
    for kind in KINDS:
        names = wanted[kind]
        if not names:
            continue
        params = data[kind]
        comparison = {
            "data": {**params, "topic": TOPIC, **({"records": args.sqs_records, "queue": "standard"} if kind == "sqs" else {})},
            "variants": {
                n: {"label": catalog[kind][n].label, "config": catalog[kind][n].config, "runs": []} for n in names
            },
        }
        comparisons[kind] = comparison
        for repeat in range(args.repeats):
            say(f"\n== {kind}: {params['records']:,} x {params['size']} B over {params['partitions']} partitions, "
                f"repeat {repeat + 1}/{args.repeats}")  # fmt: skip
            cluster = None
            if kind in KAFKA_KINDS:
                value_file = decode_material(ctx, kind)["value_file"] if kind in DECODE_KINDS else None
                cluster = Cluster(ctx, f"{kind}-r{repeat}", params["partitions"], params["records"], params["size"],
                                  value_file=value_file)  # fmt: skip
                say(f"    mock cluster {cluster.bootstrap} ready in {cluster.ready_s:.1f}s")
            try:
                order = names[repeat % len(names) :] + names[: repeat % len(names)]
                for name in order:
                    variant = catalog[kind][name]
                    run = guarded(
                        ctx,
                        name,
                        repeat,
                        args.sqs_records if kind == "sqs" else params["records"],
                        lambda v=variant, r=repeat, c=cluster: v.run(ctx, v.name, r, c),
                    )
                    comparison["variants"][name]["runs"].append(asdict(run))
            finally:
                if cluster is not None:
                    cluster.stop()
    if "W4" in rows:
        points = w4_points(args)
        comparisons["w4"] = {
            "data": {"partitions": W4_PARTITIONS, "keys": W4_KEYS, "size": 100, "latency_ms": W4_LATENCY_MS},
            "points": [{**p, "runs": []} for p in points],
        }
        for repeat in range(args.repeats):
            say(f"\n== W4 sweep, repeat {repeat + 1}/{args.repeats}")
            for point in comparisons["w4"]["points"]:
                name = f"w4-{point['mode']}-c{point['concurrency']}"
                run = guarded(ctx, name, repeat, point["records"], lambda p=point, r=repeat: run_w4_point(ctx, p, r))
                point["runs"].append(asdict(run))
    return comparisons


# --------------------------------------------------------------------------------------------
# Summaries and targets.
# --------------------------------------------------------------------------------------------

METRICS = (
    "records_per_s",
    "seconds",
    "cpu_s",
    "cpu_us_per_record",
    "rss_peak_mib",
    "rss_steady_mib",
    "startup_s",
)


def median_of(runs: list[dict[str, Any]], metric: str) -> float | None:
    values = [r[metric] for r in runs if not r.get("error") and r.get(metric) is not None]
    return statistics.median(values) if values else None


def summarize(comparisons: dict[str, Any]) -> None:
    for kind in KINDS:
        for variant in comparisons.get(kind, {}).get("variants", {}).values():
            runs = variant["runs"]
            variant["median"] = {m: median_of(runs, m) for m in METRICS}
            variant["ok_runs"] = sum(1 for r in runs if not r.get("error"))
    for point in comparisons.get("w4", {}).get("points", []):
        point["median"] = {m: median_of(point["runs"], m) for m in METRICS}
        point["ok_runs"] = sum(1 for r in point["runs"] if not r.get("error"))
        rps = point["median"]["records_per_s"]
        point["share_of_ideal"] = rps / point["ideal_rps"] if rps else None


def per_repeat(runs: list[dict[str, Any]], metric: str) -> dict[int, float]:
    return {r["repeat"]: r[metric] for r in runs if not r.get("error") and r.get(metric) is not None}


def paired_ratios(a_runs: list[dict[str, Any]], b_runs: list[dict[str, Any]], metric: str) -> list[float]:
    a, b = per_repeat(a_runs, metric), per_repeat(b_runs, metric)
    return [a[k] / b[k] for k in sorted(a) if k in b and b[k]]


def target(
    tid: str,
    row: str,
    description: str,
    values: list[float],
    op: str,
    threshold: float,
    unit: str,
    missing: str | None = None,
) -> dict[str, Any]:
    value = statistics.median(values) if values else None
    compare = {">=": float.__ge__, "<=": float.__le__, "<": float.__lt__}[op]
    met = None if value is None else compare(float(value), float(threshold))
    return {
        "id": tid,
        "row": row,
        "description": description,
        "value": value,
        "op": op,
        "threshold": threshold,
        "unit": unit,
        "met": met,
        "per_repeat": values,
        "missing": missing if value is None else None,
    }


def compute_targets(comparisons: dict[str, Any], rows: list[str]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    backlog = comparisons.get("backlog", {}).get("variants", {})
    http = comparisons.get("http", {}).get("variants", {})

    def runs(group: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return group.get(name, {}).get("runs", [])

    def why(group: dict[str, Any], *names: str) -> str:
        absent = [n for n in names if not per_repeat(runs(group, n), "records_per_s")]
        return "not measured: " + ", ".join(absent) if absent else "not measured"

    if "W1" in rows:
        side = runs(backlog, "sidecar")
        targets.append(target(
            "w1-vs-baseline", "W1", "sidecar records/s / rdkafka BaseConsumer records/s",
            paired_ratios(side, runs(backlog, "baseline"), "records_per_s"), ">=", W1_VS_BASELINE, "x",
            why(backlog, "sidecar", "baseline"),
        ))  # fmt: skip
        targets.append(target(
            "w1-vs-kcat", "W1", "sidecar records/s / kcat records/s",
            paired_ratios(side, runs(backlog, "kcat"), "records_per_s"), ">=", W1_VS_KCAT, "x",
            why(backlog, "sidecar", "kcat"),
        ))  # fmt: skip
        targets.append(target(
            "w1-cpu", "W1", "sidecar CPU per record",
            list(per_repeat(side, "cpu_us_per_record").values()), "<=", W1_CPU_US, "us",
            why(backlog, "sidecar"),
        ))  # fmt: skip
        targets.append(target(
            "w1-steady-rss", "W1", "sidecar steady RSS at full W1 speed",
            list(per_repeat(side, "rss_steady_mib").values()), "<", W1_STEADY_RSS_MIB, "MiB",
            why(backlog, "sidecar"),
        ))  # fmt: skip
    if "W2" in rows:
        targets.append(target(
            "w2-vs-python", "W2", "sidecar records/s / Python pattern records/s (HTTP)",
            paired_ratios(runs(http, "sidecar-http"), runs(http, "python-http"), "records_per_s"),
            ">=", W2_VS_PYTHON, "x", why(http, "sidecar-http", "python-http"),
        ))  # fmt: skip
        targets.append(target(
            "w2-rss", "W2", "sidecar peak RSS / Python pattern peak RSS",
            paired_ratios(runs(http, "sidecar-http"), runs(http, "python-http"), "rss_peak_mib"),
            "<=", W2_RSS_SHARE, "x", why(http, "sidecar-http", "python-http"),
        ))  # fmt: skip
    if "W4" in rows:
        points = comparisons.get("w4", {}).get("points", [])
        key = [p for p in points if p["mode"] == "key" and p["concurrency"] == W4_KEY_C]
        if key:
            p = key[0]
            shares = [
                r["records_per_s"] / p["ideal_rps"] for r in p["runs"] if not r.get("error") and r["records_per_s"]
            ]
            targets.append(target(
                "w4-key-256", "W4",
                f"key mode, C={W4_KEY_C}: records/s / ideal ({fmt_int(p['ideal_rps'])}/s)",
                shares, ">=", W4_KEY_SHARE, "x", "not measured",
            ))  # fmt: skip
        part = [p for p in points if p["mode"] == "partition" and p["concurrency"] >= W4_PARTITIONS]
        if part:
            # the worst point decides; its per-repeat shares are the minimum over the points per repeat
            by_repeat: dict[int, float] = {}
            complete = True
            for p in part:
                shares = {
                    r["repeat"]: r["records_per_s"] / p["ideal_rps"]
                    for r in p["runs"]
                    if not r.get("error") and r["records_per_s"]
                }
                complete &= bool(shares)
                for k, v in shares.items():
                    by_repeat[k] = min(v, by_repeat.get(k, math.inf))
            cs = ",".join(str(p["concurrency"]) for p in part)
            targets.append(target(
                "w4-partition", "W4",
                f"partition mode, C={cs}: worst records/s / ideal ({fmt_int(w4_ideal('partition', W4_PARTITIONS))}/s)",
                list(by_repeat.values()) if complete else [], ">=", W4_PARTITION_SHARE, "x", "not measured",
            ))  # fmt: skip
    if "W5" in rows:
        targets.append(target(
            "w5-vs-w1", "W5", "sidecar records/s with 1% permanent failures / without (W1)",
            paired_ratios(runs(backlog, "sidecar-fail1pct"), runs(backlog, "sidecar"), "records_per_s"),
            ">=", W5_VS_W1, "x", why(backlog, "sidecar-fail1pct", "sidecar"),
        ))  # fmt: skip
    for kind, row in (("avro", "AVRO"), ("protobuf", "PROTOBUF")):
        if row not in rows:
            continue
        group = comparisons.get(kind, {}).get("variants", {})
        decoded, raw = per_repeat(runs(group, f"sidecar-{kind}"), "cpu_us_per_record"), per_repeat(
            runs(group, f"sidecar-raw-{kind}"), "cpu_us_per_record")  # fmt: skip
        targets.append(target(
            f"{kind}-decode-cpu", row, f"CPU us per record decoding {kind} to JSON, on top of raw",
            [decoded[k] - raw[k] for k in sorted(decoded) if k in raw], "<=", DECODE_CPU_US, "us",
            why(group, f"sidecar-{kind}", f"sidecar-raw-{kind}"),
        ))  # fmt: skip
    return targets


def derived(comparisons: dict[str, Any], rows: list[str]) -> dict[str, Any]:
    """Ratios that have no target but belong in the report."""
    out: dict[str, Any] = {}
    backlog = comparisons.get("backlog", {}).get("variants", {})
    http = comparisons.get("http", {}).get("variants", {})

    def ratio(group: dict[str, Any], a: str, b: str, metric: str) -> float | None:
        values = paired_ratios(group.get(a, {}).get("runs", []), group.get(b, {}).get("runs", []), metric)
        return statistics.median(values) if values else None

    if "W1" in rows:
        out["w1_sidecar_vs_python"] = ratio(backlog, "sidecar", "python", "records_per_s")
    if "TRACE" in rows:
        out["trace_on_cpu_vs_off"] = ratio(backlog, "sidecar-trace-on", "sidecar", "cpu_us_per_record")
        out["trace_0pct_cpu_vs_off"] = ratio(backlog, "sidecar-trace-0pct", "sidecar", "cpu_us_per_record")
        for name in ("sidecar", "sidecar-trace-on", "sidecar-trace-0pct"):
            runs = backlog.get(name, {}).get("runs", [])
            out[f"trace_cpu_us_{name}"] = median_of(runs, "cpu_us_per_record")
    if "BATCH" in rows:
        out["batch100_vs_single"] = ratio(http, "sidecar-http-batch100", "sidecar-http", "records_per_s")
    if "W2" in rows:
        out["w2_cpu_python_vs_sidecar"] = ratio(http, "python-http", "sidecar-http", "cpu_us_per_record")
    return out


# --------------------------------------------------------------------------------------------
# Formatting: the console table and BENCHMARKS.md.
# --------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_int(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_target_value(t: dict[str, Any]) -> str:
    if t["value"] is None:
        return "-"
    if t["unit"] == "x":
        return f"{t['value']:.2f}x"
    return f"{t['value']:.2f} {t['unit']}"


def status_word(t: dict[str, Any]) -> str:
    return {True: "met", False: "MISSED", None: "n/a"}[t["met"]]


VARIANT_COLUMNS = ("records/s", "CPU us/record", "peak RSS MiB", "steady RSS MiB", "startup s", "runs")


def variant_cells(variant: dict[str, Any]) -> list[str]:
    m = variant.get("median", {})
    return [
        fmt_int(m.get("records_per_s")),
        fmt(m.get("cpu_us_per_record"), 2),
        fmt(m.get("rss_peak_mib"), 1),
        fmt(m.get("rss_steady_mib"), 1),
        fmt(m.get("startup_s"), 2),
        f"{variant.get('ok_runs', 0)}/{len(variant.get('runs', []))}",
    ]


def section_tables(result: dict[str, Any]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(row, title, header, cells) for every row that ran."""
    comps = result["comparisons"]
    rows = result["rows"]
    tables = []
    for row in rows:
        if row == "W4":
            w4 = comps.get("w4")
            if not w4:
                continue
            header = ["mode", "concurrency", "records", "records/s", "ideal/s", "% of ideal", "CPU us/record",
                      "peak RSS MiB", "runs"]  # fmt: skip
            cells = []
            for p in w4["points"]:
                m = p.get("median", {})
                cells.append([
                    p["mode"], str(p["concurrency"]), fmt_int(p["records"]), fmt_int(m.get("records_per_s")),
                    fmt_int(p["ideal_rps"]),
                    "-" if p.get("share_of_ideal") is None else f"{100 * p['share_of_ideal']:.0f}%",
                    fmt(m.get("cpu_us_per_record"), 1), fmt(m.get("rss_peak_mib"), 1),
                    f"{p.get('ok_runs', 0)}/{len(p['runs'])}",
                ])  # fmt: skip
            tables.append((row, ROW_TITLES[row], header, cells))
            continue
        kind, names = ROW_VARIANTS[row]
        comp = comps.get(kind)
        if not comp:
            continue
        d = comp["data"]
        title = f"{ROW_TITLES[row]}: {d['records']:,} x {d['size']} B, {d['partitions']} partitions"
        cells = []
        for name in names:
            variant = comp["variants"].get(name)
            if variant is None:
                skip = result.get("skipped", {}).get(name, "not run")
                cells.append([name, *(["-"] * (len(VARIANT_COLUMNS) - 1)), f"skipped: {skip}"])
                continue
            cells.append([variant["label"], *variant_cells(variant)])
        tables.append((row, title, ["tool", *VARIANT_COLUMNS], cells))
    return tables


NUMERIC_CELL = re.compile(r"^[-+]?[\d,.]*\d[\d,.]*\s*(x|%|us|MiB)?$|^-$|^\d+/\d+$")


def left_columns(cells: list[list[str]]) -> set[int]:
    """Columns whose cells are not all numbers (or '-') are text: left-justified."""
    columns = list(zip(*cells)) if cells else []
    return {0} | {i for i, col in enumerate(columns) if not all(NUMERIC_CELL.match(c) for c in col)}


def text_table(header: list[str], cells: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells)]
    left = left_columns(cells)

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])


def md_table(header: list[str], cells: list[list[str]]) -> str:
    left = left_columns(cells)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i in left else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def target_rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    for t in result["targets"]:
        threshold = f"{t['op']} {t['threshold']:g}{'x' if t['unit'] == 'x' else ' ' + t['unit']}"
        per = ", ".join(f"{v:.2f}" for v in t["per_repeat"]) or (t.get("missing") or "-")
        out.append([t["row"], t["description"], fmt_target_value(t), threshold, status_word(t), per])
    return out


TARGET_HEADER = ["row", "target", "median", "wanted", "status", "per repeat"]


def derived_lines(result: dict[str, Any]) -> list[str]:
    d = result.get("derived", {})
    lines = []
    if d.get("w1_sidecar_vs_python") is not None:
        lines.append(f"W1: sidecar drains {d['w1_sidecar_vs_python']:.1f}x as fast as the Python pattern "
                     "(which delivers over HTTP; the sidecar to null://)")  # fmt: skip
    if d.get("w2_cpu_python_vs_sidecar") is not None:
        lines.append(f"W2: the Python pattern spends {d['w2_cpu_python_vs_sidecar']:.1f}x the sidecar's CPU per record")
    if d.get("trace_cpu_us_sidecar") is not None:
        parts = [f"off {fmt(d.get('trace_cpu_us_sidecar'))}"]
        if d.get("trace_cpu_us_sidecar-trace-on") is not None:
            parts.append(f"on, 100% sampled {fmt(d.get('trace_cpu_us_sidecar-trace-on'))} "
                         f"({fmt(d.get('trace_on_cpu_vs_off'))}x)")  # fmt: skip
        if d.get("trace_cpu_us_sidecar-trace-0pct") is not None:
            parts.append(f"on, 0% sampled {fmt(d.get('trace_cpu_us_sidecar-trace-0pct'))} "
                         f"({fmt(d.get('trace_0pct_cpu_vs_off'))}x)")  # fmt: skip
        if len(parts) > 1:
            lines.append("Tracing, CPU us per record: " + "; ".join(parts))
    if d.get("batch100_vs_single") is not None:
        lines.append(f"HTTP batches of 100 deliver {d['batch100_vs_single']:.1f}x the records/s of single records")
    return lines


def print_report(result: dict[str, Any]) -> None:
    say("")
    for _row, title, header, cells in section_tables(result):
        say(f"{title} (medians of {result['repeats']})")
        say(text_table(header, cells))
        say("")
    for line in derived_lines(result):
        say(line)
    if result["targets"]:
        say("\nTargets" + (" (smoke run: sizes too small for these to mean anything)" if result.get("smoke") else ""))
        say(text_table(TARGET_HEADER, target_rows(result)))
    errors = result.get("errors", [])
    if errors:
        say(f"\n{len(errors)} run(s) failed: " + "; ".join(errors))


def write_markdown(result: dict[str, Any], path: Path, plot: Path | None) -> None:
    m = result["machine"]
    v = result["versions"]
    lines = ["# Benchmarks", ""]
    if result.get("fake"):
        lines += ["> **FAKE NUMBERS** (`--fake`): canned results that exercise the report, not measurements.", ""]
    if result.get("smoke"):
        lines += ["> **SMOKE RUN** (`--smoke`): sizes too small for the numbers or the targets to mean anything.", ""]
    lines += [
        f"Generated by `bench/run.py` on {result['date']} (do not edit by hand; rerun the command below).",
        "",
        "```sh",
        result["command"],
        "```",
        "",
        f"Medians of {result['repeats']} repeat(s); every ratio is taken within one repeat (same broker, same "
        "data, tools one after the other), then the median of those ratios is reported.",
        "",
    ]
    if result["targets"]:
        met = sum(1 for t in result["targets"] if t["met"])
        lines += [
            f"## Targets ({met} of {len(result['targets'])} met)",
            "",
            md_table(TARGET_HEADER, target_rows(result)),
            "",
        ]
    extra = derived_lines(result)
    if extra:
        lines += [*(f"- {x}" for x in extra), ""]
    if plot is not None:
        lines += [f"![benchmark plot]({os.path.relpath(plot, path.parent)})", ""]
    for _row, title, header, cells in section_tables(result):
        lines += [f"## {title}", "", md_table(header, cells), ""]
    if result.get("errors"):
        lines += ["## Failed runs", "", *(f"- {e}" for e in result["errors"]), ""]
    lines += [
        "## Machine",
        "",
        f"- CPU: {m.get('cpu_model')} ({m.get('nproc')} CPUs usable, {m.get('cpu_count')} online)",
        f"- Memory: {m.get('memory')}",
        f"- Kernel: {m.get('kernel')}; OS: {m.get('os')}",
        f"- Load average before the run: {m.get('loadavg')}",
        f"- rustc: {v.get('rustc')}",
        f"- librdkafka (rdkafka-sys, used by msk-sidecar, bench-baseline, bench-mock-cluster): {v.get('librdkafka')}",
        f"- kcat: {v.get('kcat')}",
        f"- Python: {v.get('python')}; confluent-kafka {v.get('confluent_kafka')} "
        f"(librdkafka {v.get('confluent_kafka_librdkafka')}); aiohttp {v.get('aiohttp')}",
        f"- Commit: {v.get('git')}",
        "",
        "## How it is measured",
        "",
        "- Broker: `bench-mock-cluster`, librdkafka's mock cluster in its own process, one broker, a fresh one "
        "per comparison and repeat; every tool in a comparison reads the same records from it. Tools run one "
        "after the other, their order rotated from repeat to repeat.",
        "- records/s: records / seconds from the first to the last delivered record. msk-sidecar: its "
        "`/metrics` (delivered + dead-lettered) polled every 50 ms, the crossing points interpolated, or, when "
        "it delivers over HTTP, `bench-sink`'s first/last request times. bench-baseline: its own report. kcat (`-c N -e`): "
        "when its first and last offsets arrive on its stdout. Python pattern: `bench-sink`'s first/last request.",
        "- CPU us/record: user + system CPU of the tool's process (all threads) from start to the last record "
        "(msk-sidecar: read when the last record is counted, before SIGTERM; the others: rusage at exit), "
        "divided by the records. The broker's and bench-sink's CPU are not counted.",
        "- peak RSS: the larger of the kernel's high-water mark (VmHWM, read while the process runs) and the "
        "RSS samples (every 10 ms for a process's first 3 s, then every 100 ms); steady RSS: median of the "
        "samples during the middle half of the first-to-last-record window.",
        "- startup: from spawning the process to its first delivered record (includes the consumer group join; "
        "kcat joins no group).",
        "- W4 ideal: min(concurrency, lanes) / 5 ms, lanes = 12 partitions (partition mode) or 10,000 keys "
        "(key mode); the data's keys are `k<i mod 10000>` with record i in partition i mod 12.",
        "",
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# The plot.
# --------------------------------------------------------------------------------------------


def write_plot(result: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    comps = result["comparisons"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    title = f"msk-sidecar benchmarks, {result['date'][:10]}" + ("  (FAKE NUMBERS)" if result.get("fake") else "")
    fig.suptitle(title, fontsize=13)

    def short(v: float, _pos: Any = None) -> str:
        for scale, suffix in ((1e6, "M"), (1e3, "k")):
            if abs(v) >= scale:
                return f"{v / scale:g}{suffix}"
        return f"{v:g}"

    thousands = FuncFormatter(short)

    def bars(ax: Any, names: list[str], values: list[float | None], colors: list[str], xlabel: str,
             fmt_value: Callable[[float], str], line: float | None = None) -> None:  # fmt: skip
        y = list(range(len(names)))
        vals = [v or 0 for v in values]
        positive = [v for v in vals if v > 0]
        log = bool(positive) and max(positive) / min(positive) > 50 and line is not None
        ax.barh(y, vals, color=colors)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        top = max(vals + [line or 0, 1e-9])
        if log:
            ax.set_xscale("log")
            ax.set_xlim(min(positive + [line or math.inf]) / 2, top * 6)
            xlabel += " (log scale)"
        else:
            ax.set_xlim(0, top * 1.22)
            ax.xaxis.set_major_formatter(thousands)
        for i, v in enumerate(values):
            x = (v or 0) * 1.08 if log else (v or 0) + top * 0.01
            ax.text(x if v else (ax.get_xlim()[0] if log else 0), i, "n/a" if v is None else fmt_value(v),
                    va="center", fontsize=8)  # fmt: skip
        if line is not None:
            ax.axvline(line, color="crimson", linestyle="--", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)

    def not_run(ax: Any) -> None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "not run", ha="center", va="center", color="#888888", transform=ax.transAxes)

    palette = {"sidecar": "#1f77b4", "other": "#9e9e9e", "python": "#ff7f0e", "variant": "#6baed6"}

    def color(name: str) -> str:
        if name.startswith("python"):
            return palette["python"]
        if name in ("sidecar", "sidecar-http"):
            return palette["sidecar"]
        if name.startswith("sidecar"):
            return palette["variant"]
        return palette["other"]

    # (a) backlog drain
    ax = axes[0][0]
    backlog = comps.get("backlog", {}).get("variants", {})
    names = [n for n in ("sidecar", "baseline", "kcat", "python", "sidecar-fail1pct") if n in backlog]
    if names:
        bars(ax, [backlog[n]["label"] for n in names], [backlog[n]["median"]["records_per_s"] for n in names],
             [color(n) for n in names], "records/s", lambda v: f"{v:,.0f}")  # fmt: skip
        d = comps["backlog"]["data"]
        ax.set_title(
            f"W1/W5 backlog drain ({d['records']:,} x {d['size']} B, {d['partitions']} partitions)", fontsize=10
        )
    else:
        not_run(ax)

    # (b) HTTP delivery
    ax = axes[0][1]
    http = comps.get("http", {}).get("variants", {})
    names = [n for n in ("sidecar-http", "python-http", "sidecar-http-batch100") if n in http]
    if names:
        labels = [f"{http[n]['label']}\npeak {fmt(http[n]['median']['rss_peak_mib'], 0)} MiB" for n in names]
        bars(ax, labels, [http[n]["median"]["records_per_s"] for n in names], [color(n) for n in names],
             "records/s", lambda v: f"{v:,.0f}")  # fmt: skip
        d = comps["http"]["data"]
        ax.set_title(f"W2/batch HTTP delivery to bench-sink ({d['records']:,} records)", fontsize=10)
    else:
        not_run(ax)

    # (c) W4 sweep
    ax = axes[1][0]
    w4 = comps.get("w4", {}).get("points", [])
    if w4:
        for mode, style in (("partition", "o-"), ("key", "s-")):
            pts = sorted((p for p in w4 if p["mode"] == mode), key=lambda p: p["concurrency"])
            if not pts:
                continue
            xs = [p["concurrency"] for p in pts]
            line = ax.plot(xs, [p["median"]["records_per_s"] or float("nan") for p in pts], style, label=f"{mode} mode")
            ax.plot(xs, [p["ideal_rps"] for p in pts], "--x", color=line[0].get_color(), alpha=0.6,
                    label=f"{mode} ideal")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted({p["concurrency"] for p in w4})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(thousands)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("SIDECAR_MAX_IN_FLIGHT (concurrency)")
        ax.set_ylabel("records/s")
        ax.set_title("W4 app latency 5 ms, 12 partitions, 10,000 keys", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    else:
        not_run(ax)

    # (d) CPU per record
    ax = axes[1][1]
    entries = []
    for n in ("sidecar", "sidecar-fail1pct", "sidecar-trace-0pct", "sidecar-trace-on", "baseline", "kcat", "python"):
        if n in backlog:
            entries.append((n, backlog[n]["label"], backlog[n]["median"]["cpu_us_per_record"]))
    for n in ("sidecar-http", "sidecar-http-batch100", "python-http"):
        if n in http:
            entries.append((n, http[n]["label"], http[n]["median"]["cpu_us_per_record"]))
    if entries:
        bars(ax, [e[1] for e in entries], [e[2] for e in entries], [color(e[0]) for e in entries],
             "CPU us per record", lambda v: f"{v:.2f}", line=W1_CPU_US)  # fmt: skip
        ax.set_title("CPU per record (dashed: W1 target, 1 us)", fontsize=10)
    else:
        not_run(ax)

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return True


# --------------------------------------------------------------------------------------------
# Machine facts, versions, build, kcat.
# --------------------------------------------------------------------------------------------


def command_output(argv: list[str], timeout: float = 30) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text if done.returncode == 0 and text else None


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        facts["cpu_model"] = model.group(1).strip() if model else platform.processor() or platform.machine()
        facts["cpu_count"] = len(re.findall(r"^processor\s*:", cpuinfo, re.M))
    except OSError:
        facts["cpu_model"] = platform.machine()
    facts["nproc"] = command_output(["nproc"]) or str(len(os.sched_getaffinity(0)))
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(re.search(r"^MemTotal:\s*(\d+)", meminfo, re.M).group(1))  # type: ignore[union-attr]
        facts["memory"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError, ValueError):
        facts["memory"] = None
    facts["kernel"] = platform.release()
    try:
        release = Path("/etc/os-release").read_text()
        name = re.search(r'^PRETTY_NAME="?([^"\n]+)', release, re.M)
        facts["os"] = name.group(1) if name else None
    except OSError:
        facts["os"] = None
    facts["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts["arch"] = platform.machine()
    return facts


def librdkafka_from_lock() -> str | None:
    try:
        lock = tomllib.loads((REPO / "Cargo.lock").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    for package in lock.get("package", []):
        if package.get("name") == "rdkafka-sys":
            version = package.get("version", "")
            lib = version.split("+", 1)[1] if "+" in version else "?"
            return f"{lib} (rdkafka-sys {version})"
    return None


def kcat_version(kcat: str | None) -> str | None:
    if not kcat:
        return None
    text = command_output([kcat, "-V"]) or ""
    version = re.search(r"[Vv]ersion\s+(\S+)", text)
    lib = re.search(r"librdkafka\s+(\S+)", text)
    if not version:
        return text.splitlines()[0] if text else None
    return f"{version.group(1)} (librdkafka {lib.group(1) if lib else '?'})"


def versions(kcat: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rustc": command_output(["rustc", "--version"]),
        "librdkafka": librdkafka_from_lock(),
        "kcat": kcat_version(kcat),
        "python": platform.python_version(),
    }
    try:
        import confluent_kafka

        version = confluent_kafka.version()
        out["confluent_kafka"] = version if isinstance(version, str) else version[0]
        out["confluent_kafka_librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    try:
        import aiohttp

        out["aiohttp"] = aiohttp.__version__
    except ImportError:
        pass
    head = command_output(["git", "rev-parse", "--short=12", "HEAD"])
    dirty = command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    out["git"] = f"{head}{' (uncommitted changes)' if dirty else ''}" if head else None
    return out


def bench_package_exists() -> bool:
    """Whether the workspace has the msk-sidecar-bench package (its own crate)."""
    try:
        root = tomllib.loads((REPO / "Cargo.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    for pattern in root.get("workspace", {}).get("members", []):
        for member in REPO.glob(pattern):
            try:
                if tomllib.loads((member / "Cargo.toml").read_text()).get("package", {}).get("name") == BENCH_PACKAGE:
                    return True
            except (OSError, tomllib.TOMLDecodeError):
                continue
    return False


def build(args: argparse.Namespace) -> None:
    if args.no_build:
        return
    if bench_package_exists():
        cmd = ["cargo", "build", "--release", "-p", "msk-sidecar", "-p", BENCH_PACKAGE]
    else:  # the helpers as examples of the main package
        cmd = ["cargo", "build", "--release", "--bin", "msk-sidecar"]
        for name in HELPER_BINS:
            cmd += ["--example", name]
    say("$ " + shlex.join(cmd))
    try:
        done = subprocess.run(cmd, cwd=REPO, timeout=args.build_timeout)
    except subprocess.TimeoutExpired as error:
        raise Fatal(f"build timed out after {args.build_timeout}s") from error
    except OSError as error:
        raise Fatal(f"cannot run cargo: {error}") from error
    if done.returncode != 0:
        raise Fatal(f"build failed ({shlex.join(cmd)} exited with {done.returncode})")


def find_bins(args: argparse.Namespace) -> dict[str, Path]:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    dirs = [Path(args.bin_dir)] if args.bin_dir else [target / "release", target / "release" / "examples"]
    bins: dict[str, Path] = {}
    for name in ("msk-sidecar", *HELPER_BINS):
        for d in dirs:
            candidate = d / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                bins[name] = candidate
                break
        else:
            raise Fatal(f"{name} not found in {', '.join(map(str, dirs))} (build first, or pass --bin-dir)")
    return bins


def ensure_kcat(needed: bool) -> tuple[str | None, str | None]:
    found = shutil.which("kcat")
    if found or not needed:
        return found, None if found else "not needed"
    sudo: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return None, "kcat is not installed and this is not root (apt-get install -y kcat)"
        sudo = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say("kcat not found: apt-get update && apt-get install -y kcat")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "kcat"]):
        try:
            done = subprocess.run(sudo + cmd, capture_output=True, text=True, timeout=900, env=env)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"{' '.join(cmd)}: {error}"
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            return None, f"{' '.join(cmd)} failed: {last[0]}"
    found = shutil.which("kcat")
    return found, None if found else "apt-get installed no kcat binary"


# --------------------------------------------------------------------------------------------
# Fake results (for the report code without the Rust binaries).
# --------------------------------------------------------------------------------------------


def fake_comparisons(args: argparse.Namespace, rows: list[str]) -> dict[str, Any]:
    rng = random.Random(42)
    shapes = {  # records/s, CPU us/record, peak MiB, steady MiB, startup s
        "sidecar": (820_000, 0.8, 58, 41, 3.2),
        "baseline": (950_000, 0.6, 52, 40, 3.1),
        "kcat": (700_000, 0.9, 38, 30, 0.2),
        "python": (7_500, 210.0, 96, 84, 3.6),
        "sidecar-fail1pct": (780_000, 0.86, 60, 43, 3.2),
        "sidecar-trace-on": (300_000, 3.4, 88, 70, 3.3),
        "sidecar-trace-0pct": (800_000, 0.85, 60, 42, 3.2),
        "sidecar-http": (48_000, 28.0, 40, 33, 3.3),
        "python-http": (7_800, 205.0, 95, 83, 3.6),
        "sidecar-http-batch100": (420_000, 2.5, 47, 36, 3.3),
        "sidecar-sqs": (2_500, 60.0, 40, 33, 3.3),
        "python-sqs": (400, 900.0, 60, 55, 0.8),
        "sidecar-redis": (9_000, 45.0, 24, 20, 0.1),
        "sidecar-redis-none": (30_000, 35.0, 30, 24, 0.1),
        "python-redis": (1_800, 420.0, 40, 38, 0.4),
        "sidecar-amqp": (5_000, 50.0, 26, 22, 0.1),
        "sidecar-amqp-none": (20_000, 40.0, 32, 25, 0.1),
        "python-amqp": (1_500, 480.0, 42, 40, 0.5),
        "sidecar-raw-avro": (800_000, 0.85, 58, 41, 3.2),
        "sidecar-avro": (600_000, 2.3, 60, 42, 3.2),
        "sidecar-raw-protobuf": (800_000, 0.85, 58, 41, 3.2),
        "sidecar-protobuf": (620_000, 2.1, 60, 42, 3.2),
    }

    def fake_run(name: str, repeat: int, n: int, shape: tuple[float, ...]) -> dict[str, Any]:
        rps, cpu, peak, steady, startup = (x * rng.uniform(0.95, 1.05) for x in shape)
        run = Run(variant=name, repeat=repeat, records=n, records_seen=n, seconds=n / rps, records_per_s=rps,
                  cpu_s=cpu * n / 1e6, cpu_us_per_record=cpu, rss_peak_mib=peak, rss_steady_mib=steady,
                  startup_s=startup, window_source="fake", exit_code=0)  # fmt: skip
        return asdict(run)

    comparisons: dict[str, Any] = {}
    catalog = catalogs(args)
    sizes = {"backlog": args.records, "http": args.w2_records, "sqs": args.sqs_records,
             "redis": args.redis_records, "amqp": args.amqp_records, "avro": args.records,
             "protobuf": args.records}  # fmt: skip
    for kind in KINDS:
        names: list[str] = []
        for row in rows:
            if row in ROW_VARIANTS and ROW_VARIANTS[row][0] == kind:
                names += [n for n in ROW_VARIANTS[row][1] if n not in names]
        if not names:
            continue
        n = sizes[kind]
        comparisons[kind] = {
            "data": {"partitions": 24 if kind in KAFKA_KINDS else 1, "records": n, "size": 100, "keys": 0, "topic": TOPIC},
            "variants": {
                name: {
                    "label": catalog[kind][name].label,
                    "config": catalog[kind][name].config,
                    "runs": [fake_run(name, r, n, shapes[name]) for r in range(args.repeats)],
                }
                for name in names
            },
        }
    if "W4" in rows:
        points = w4_points(args)
        for p in points:
            share = 0.93 if p["mode"] == "partition" else min(0.9, 45_000 / p["ideal_rps"])
            shape = (p["ideal_rps"] * share, 30.0, 45 + p["concurrency"] / 40, 38 + p["concurrency"] / 50, 3.3)
            p["runs"] = [
                fake_run(f"w4-{p['mode']}-c{p['concurrency']}", r, p["records"], shape) for r in range(args.repeats)
            ]
        comparisons["w4"] = {
            "data": {"partitions": W4_PARTITIONS, "keys": W4_KEYS, "size": 100, "latency_ms": W4_LATENCY_MS},
            "points": points,
        }
    return comparisons


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="msk-sidecar benchmarks (see bench/README.md)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat, rows W1 W2 W4 W5 (~1 minute)")
    p.add_argument("--only", default=None, help=f"comma-separated rows to run, of {','.join(ROWS)}")
    p.add_argument("--repeats", type=int, default=None, help="repeats per comparison (default 3; smoke 1)")
    p.add_argument("--records", type=int, default=None, help="W1/W5/TRACE backlog records (default 1,000,000)")
    p.add_argument("--w2-records", type=int, default=None, help="W2/BATCH records (default 200,000)")
    p.add_argument("--w2-ordering", default="partition", choices=("partition", "key", "none"),
                   help="SIDECAR_ORDERING for W2/BATCH")  # fmt: skip
    p.add_argument("--workers", type=int, default=64, help="Python pattern worker tasks")
    p.add_argument("--sqs-records", type=int, default=20_000, help="SQS row messages (needs LocalStack)")
    p.add_argument("--sqs-loops", type=int, default=1, help="boto3 polling loops of the SQS row's baseline")
    p.add_argument("--redis-records", type=int, default=20_000, help="REDIS row entries (needs the test bed)")
    p.add_argument("--amqp-records", type=int, default=20_000, help="AMQP row messages (needs the test bed)")
    p.add_argument(
        "--concurrency", type=int_list, default=[1, 12, 64, 256, 1024], help="W4 SIDECAR_MAX_IN_FLIGHT values"
    )
    p.add_argument("--w4-modes", type=lambda s: [x for x in s.split(",") if x], default=["partition", "key"])
    p.add_argument(
        "--w4-seconds", type=float, default=None, help="W4 records per point = ideal rate x this (default 8)"
    )
    p.add_argument("--w4-min-records", type=int, default=None, help="default 2,000 (smoke 500)")
    p.add_argument("--w4-max-records", type=int, default=None, help="default 200,000 (smoke 20,000)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds of quiet between runs")
    p.add_argument("--run-timeout", type=float, default=None, help="seconds per run (default: from records)")
    p.add_argument("--build-timeout", type=float, default=3600)
    p.add_argument("--no-build", action="store_true", help="use the binaries already in target/release")
    p.add_argument("--bin-dir", default=None, help="take every binary from this directory")
    p.add_argument("--out-dir", default=None, help="write latest.json, plot.png and BENCHMARKS.md here")
    p.add_argument("--publish", action="store_true",
                   help="write bench/results/ and BENCHMARKS.md even for --smoke/--only/overrides")  # fmt: skip
    p.add_argument("--fake", action="store_true", help="no processes: canned numbers through table/plot/markdown")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)

    if args.only:
        rows = [r.strip().upper() for r in args.only.split(",") if r.strip()]
        unknown = [r for r in rows if r not in ROWS]
        if unknown:
            p.error(f"unknown row(s) {','.join(unknown)}; rows are {','.join(ROWS)}")
        args.rows = [r for r in ROWS if r in rows]
    else:
        args.rows = list(SMOKE_ROWS if args.smoke else ROWS)
    # a run that changes what is measured does not replace the published results (see --publish)
    overrides = any(x is not None for x in (args.records, args.w2_records, args.w4_seconds, args.w4_max_records))
    args.partial = bool(
        args.only
        or overrides
        or args.w2_ordering != "partition"
        or args.workers != 64
        or args.concurrency != [1, 12, 64, 256, 1024]
        or args.w4_modes != ["partition", "key"]
    )
    small = args.smoke
    args.repeats = args.repeats if args.repeats is not None else (1 if small else 3)
    args.records = args.records if args.records is not None else (20_000 if small else 1_000_000)
    args.w2_records = args.w2_records if args.w2_records is not None else (5_000 if small else 200_000)
    args.w4_seconds = args.w4_seconds if args.w4_seconds is not None else (1.5 if small else 8.0)
    args.w4_min_records = args.w4_min_records if args.w4_min_records is not None else (500 if small else 2_000)
    args.w4_max_records = args.w4_max_records if args.w4_max_records is not None else (20_000 if small else 200_000)
    if min(args.repeats, args.records, args.w2_records, args.workers) < 1:
        p.error("--repeats, --records, --w2-records and --workers must be positive")
    bad_modes = [m for m in args.w4_modes if m not in ("partition", "key", "none")]
    if bad_modes:
        p.error(f"--w4-modes: unknown {bad_modes}")
    return args


def output_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    if args.out_dir:
        out = Path(args.out_dir).resolve()
        return out / "latest.json", out / "plot.png", out / "BENCHMARKS.md"
    if args.fake:
        kind = "fake"
    elif args.publish or not (args.smoke or args.partial):
        return RESULTS / "latest.json", RESULTS / "plot.png", REPO / "BENCHMARKS.md"
    else:
        kind = "smoke" if args.smoke else "partial"
    out = RESULTS / f"{kind}.tmp"
    return out / "latest.json", out / "plot.png", out / "BENCHMARKS.md"


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        raise SystemExit("bench/run.py needs Python 3.11 or newer")
    args = parse_args(argv)  # before the venv, so --help and bad options answer at once
    ensure_venv(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    json_path, plot_path, md_path = output_paths(args)
    command = "python3 bench/run.py" + (" " + shlex.join(argv) if argv else "")
    started = datetime.datetime.now(datetime.UTC)
    machine = machine_facts()
    errors: list[str] = []
    skipped: dict[str, str] = {}
    try:
        if args.fake:
            kcat = shutil.which("kcat")
            comparisons = fake_comparisons(args, args.rows)
        else:
            build(args)
            bins = find_bins(args)
            kcat, kcat_skip = ensure_kcat("W1" in args.rows)
            if "W1" in args.rows and kcat is None:
                skipped["kcat"] = kcat_skip or "unavailable"
                loud(f"kcat rows SKIPPED: {kcat_skip}")
            log_dir = LOG_ROOT / started.strftime("%Y%m%dT%H%M%SZ")
            log_dir.mkdir(parents=True, exist_ok=True)
            ctx = Ctx(args=args, bins=bins, log_dir=log_dir, kcat=kcat, kcat_skip=kcat_skip,
                      mono_minus_wall=time.monotonic() - time.time())  # fmt: skip
            say(f"rows {','.join(args.rows)}; {args.repeats} repeat(s); logs in {log_dir}")
            comparisons = execute(ctx, args.rows)
        for group in KINDS:
            for name, variant in comparisons.get(group, {}).get("variants", {}).items():
                errors += [f"{name} repeat {r['repeat'] + 1}: {r['error']}" for r in variant["runs"] if r.get("error")]
        for point in comparisons.get("w4", {}).get("points", []):
            errors += [
                f"{r['variant']} repeat {r['repeat'] + 1}: {r['error']}" for r in point["runs"] if r.get("error")
            ]
        summarize(comparisons)
        result: dict[str, Any] = {
            "schema": SCHEMA,
            "date": started.isoformat(timespec="seconds"),
            "duration_s": round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1),
            "command": command,
            "fake": args.fake,
            "smoke": args.smoke,
            "rows": args.rows,
            "repeats": args.repeats,
            "settings": {
                "records": args.records,
                "w2_records": args.w2_records,
                "w2_ordering": args.w2_ordering,
                "python_workers": args.workers,
                "w4_concurrency": args.concurrency,
                "w4_modes": args.w4_modes,
                "w4_seconds": args.w4_seconds,
            },
            "machine": machine,
            "versions": versions(kcat),
            "comparisons": comparisons,
            "targets": compute_targets(comparisons, args.rows),
            "derived": derived(comparisons, args.rows),
            "skipped": skipped,
            "errors": errors,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        print_report(result)
        try:
            write_plot(result, plot_path)
            plot: Path | None = plot_path
        except Exception as error:  # noqa: BLE001 - the numbers matter more than the picture
            loud(f"plot failed: {error!r}")
            plot = None
        write_markdown(result, md_path, plot)
        tmp = json_path.with_name(json_path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(json_path)
        say(f"\nwrote {json_path}\nwrote {plot_path if plot else '(no plot)'}\nwrote {md_path}")
        if errors:
            return 1
        missed = [t["id"] for t in result["targets"] if t["met"] is False]
        if missed and args.strict:
            say(f"targets missed: {', '.join(missed)}")
            return 3
        return 0
    except Fatal as error:
        loud(f"benchmark aborted: {error}")
        return 2
    finally:
        cleanup_children()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        cleanup_children()
        sys.exit(130)
