"""`ADAPTER_WORKERS=N`: N `serve` processes sharing the MLLP and HTTP ports and the store.

Why processes: one CPython process is GIL-bound (its loop and store thread use one core
between them), so a second core only helps a second interpreter. This module is the
supervisor that `charge-adapter serve` becomes when `workers` > 1; it serves nothing
itself:

- the ports are resolved once (port 0 becomes a real one) and held by a bound socket
  with `SO_REUSEPORT` that never listens, so no other program takes them while a worker
  restarts; each worker binds and listens on the same ports with `SO_REUSEPORT`
  (`adapter.worker_role.reuse_port`), and the kernel hands each new connection to one of
  them. A connection stays in its worker: the messages of one connection are taken in
  and acknowledged in order, as with one process;
- every worker opens the same store. PostgreSQL needs nothing: its row locks and group
  commit do it. On SQLite one writer at a time: `adapter.store.writer_lock` (an exclusive
  `flock` beside the database) makes a second writer wait in the kernel and wake at the
  release, not in SQLite's busy handler, which sleeps 1, 2, 5, ... 100 ms between tries
  (p99 43 ms measured);
- worker 0 alone runs the coder and the delivery worker (`worker_role.runs_background`):
  encounters are leased, coded and delivered once, in the order one process would, and
  the DFT^P03 feed keeps its single connection; the others take messages in. Each worker
  has its own replica id (`<replica_id>-w<i>` for i > 0) for the leases it may take
  through the review API;
- `/metrics` adds up every worker: prometheus-client's multiprocess mode, in a fresh
  directory made at start (`PROMETHEUS_MULTIPROC_DIR`, given to the workers) and removed
  at exit; a dead worker's live gauges are dropped;
- SIGTERM or SIGINT: SIGTERM to every worker, each drains as one process does (stops
  accepting, finishes in-flight messages, closes the store); exit 0 when every worker
  did. SIGHUP is passed on (mapping reload). Workers get SIGKILL if the supervisor dies
  (`PR_SET_PDEATHSIG`): a killed service leaves no orphan holding the ports;
- a worker that fails during start-up (bad settings, database down, port taken) stops
  the service with that worker's exit status: the others would fail alike. A worker
  that dies after it served is logged (`workers.worker_died`, error) and started again
  after a second; more than `RESTART_LIMIT` deaths within `RESTART_WINDOW_S` stop the
  whole service loudly (`workers.crash_loop`, exit 1).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

import structlog

from adapter.config import CONFIG_FILE_VARIABLE, Settings
from adapter.setting_names import SettingName
from adapter.startup import listen_error
from adapter.worker_role import READY_FD_ENV, WORKER_ENV

log = structlog.get_logger()

RESTART_DELAY_S = 1.0
RESTART_LIMIT = 5  # deaths within the window before the service gives up
RESTART_WINDOW_S = 60.0
STOP_MARGIN_S = 10.0  # beyond shutdown_grace_seconds before a worker is killed
EXIT_CRASH_LOOP = 1
PR_SET_PDEATHSIG = 1
POLL_S = 0.1
WORKER_CODE = "import sys; from adapter.cli.main import main; sys.exit(main(['serve']))"


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    ready_fd: int | None  # read end of the start-up pipe, until the worker said ready
    ready: bool = False


@dataclass
class Supervisor:
    settings: Settings
    config_file: str | None
    metrics_dir: str
    ports: tuple[int, int]  # MLLP, HTTP as bound
    workers: dict[int, Worker] = field(default_factory=dict)
    deaths: deque[float] = field(default_factory=deque)
    respawn_at: dict[int, float] = field(default_factory=dict)
    stopping: bool = False  # a signal asked for it, or a worker failed
    stopped: bool = False
    announced: bool = False

    # --- workers ---------------------------------------------------------------------

    def environment(self, index: int, ready_fd: int) -> dict[str, str]:
        env = dict(os.environ)
        replica = self.settings.replica_id if index == 0 else f"{self.settings.replica_id}-w{index}"
        env.update(
            {
                SettingName.MLLP_PORT: str(self.ports[0]),
                SettingName.HTTP_PORT: str(self.ports[1]),
                SettingName.REPLICA_ID: replica,
                WORKER_ENV: f"{index}/{self.settings.workers}",
                READY_FD_ENV: str(ready_fd),
                "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
            }
        )
        if self.config_file:
            env[CONFIG_FILE_VARIABLE] = self.config_file
        return env

    def spawn(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", WORKER_CODE],
                env=self.environment(index, write_fd),
                stdin=subprocess.DEVNULL,
                pass_fds=(write_fd,),
                preexec_fn=_die_with_parent(os.getpid()),  # the supervisor has no threads
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.workers[index] = Worker(index, proc, read_fd)
        log.info("workers.worker_started", worker=index, pid=proc.pid)

    def signal_all(self, signum: int) -> None:
        for worker in self.workers.values():
            if worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signum)

    # --- the loop --------------------------------------------------------------------

    def run(self) -> int:
        for index in range(self.settings.workers):
            self.spawn(index)
        while not self.stopping:
            self._read_ready()
            status = self._reap()
            if status is not None:
                self.stop()
                return status
            now = time.monotonic()
            for index, when in list(self.respawn_at.items()):
                if now >= when:
                    del self.respawn_at[index]
                    self.spawn(index)
        return self.stop()

    def _read_ready(self) -> None:
        pending = {w.ready_fd: w for w in self.workers.values() if w.ready_fd is not None}
        if not pending:
            time.sleep(POLL_S)
            return
        readable, _, _ = select.select(list(pending), [], [], POLL_S)
        for fd in readable:
            worker = pending[fd]
            with contextlib.suppress(BlockingIOError):
                worker.ready = os.read(fd, 1) == b"R"
            self._close_ready(worker)
        if not self.announced and all(w.ready for w in self.workers.values()):
            self.announced = True
            log.info(
                "workers.started",
                workers=len(self.workers),
                pids=[w.proc.pid for w in self.workers.values()],
                mllp_port=self.ports[0],
                http_port=self.ports[1],
            )

    def _close_ready(self, worker: Worker) -> None:
        if worker.ready_fd is not None:
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _reap(self) -> int | None:
        """Handle workers that exited; the service's exit status when it must stop."""
        for index, worker in list(self.workers.items()):
            status = worker.proc.poll()
            if status is None or self.stopping:
                continue
            del self.workers[index]
            self._close_ready(worker)
            _mark_dead(worker.proc.pid, self.metrics_dir)
            if not worker.ready:
                log.error("workers.start_failed", worker=index, pid=worker.proc.pid, status=status)
                return status if status > 0 else EXIT_CRASH_LOOP
            log.error("workers.worker_died", worker=index, pid=worker.proc.pid, status=status)
            now = time.monotonic()
            self.deaths.append(now)
            while self.deaths and now - self.deaths[0] > RESTART_WINDOW_S:
                self.deaths.popleft()
            if len(self.deaths) > RESTART_LIMIT:
                log.error("workers.crash_loop", deaths=len(self.deaths), window_s=RESTART_WINDOW_S)
                return EXIT_CRASH_LOOP
            self.respawn_at[index] = now + RESTART_DELAY_S
        return None

    def stop(self) -> int:
        """SIGTERM to every worker, wait for each to drain; 0 when all exited 0."""
        self.stopping = self.stopped = True
        self.respawn_at.clear()
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + STOP_MARGIN_S
        statuses: dict[int, int] = {}
        for index, worker in self.workers.items():
            try:
                statuses[index] = worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("workers.stop_timeout", worker=index, pid=worker.proc.pid)
                worker.proc.kill()
                statuses[index] = worker.proc.wait()
            self._close_ready(worker)
        # a worker still starting has no signal handler yet: SIGTERM ends it before it served
        failed = {
            i: s
            for i, s in statuses.items()
            if s != 0 and not (s == -signal.SIGTERM and not self.workers[i].ready)
        }
        log.info("workers.stopped", workers=len(statuses), failed=failed or None)
        return 0 if not failed else EXIT_CRASH_LOOP


def supervise(settings: Settings, config_file: str | None = None) -> int:
    """Run `settings.workers` worker processes until SIGTERM/SIGINT; the exit status.

    A port that cannot be held is a `StartupError`, raised to the CLI's edge."""
    holders = reserve_ports(settings)
    metrics_dir = tempfile.mkdtemp(prefix="charge-adapter-metrics-")
    ports = (holders[0].getsockname()[1], holders[1].getsockname()[1])
    supervisor = Supervisor(settings, config_file, metrics_dir, ports)
    try:
        with _signals(supervisor):
            return supervisor.run()
    finally:
        if not supervisor.stopped:
            supervisor.stop()
        for sock in holders:
            sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def reserve_ports(settings: Settings) -> tuple[socket.socket, socket.socket]:
    """The MLLP and HTTP ports bound (not listening) with SO_REUSEPORT, held for the life of
    the service: port 0 becomes one real port every worker shares."""
    held: list[socket.socket] = []
    try:
        for name, port, setting in (
            ("MLLP", settings.mllp_port, SettingName.MLLP_PORT),
            ("HTTP", settings.http_port, SettingName.HTTP_PORT),
        ):
            family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                sock.bind((settings.host, port))
            except OSError as exc:
                raise listen_error(exc, name, settings.host, port, setting) from exc
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held[0], held[1]


@contextlib.contextmanager
def _signals(supervisor: Supervisor) -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping = True

    def hang_up(signum: int, frame: FrameType | None) -> None:
        supervisor.signal_all(signal.SIGHUP)

    previous = {
        signum: signal.signal(signum, handler)
        for signum, handler in (
            (signal.SIGTERM, stop),
            (signal.SIGINT, stop),
            (signal.SIGHUP, hang_up),
        )
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For `preexec_fn`: the worker gets SIGKILL when the supervisor dies (even by kill -9),
    so a crashed service never leaves workers serving on its ports."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)

    return preexec


def _mark_dead(pid: int, metrics_dir: str) -> None:
    """Drop a dead worker's live gauges (its counters stay: they were counted)."""
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
