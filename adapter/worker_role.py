"""What this process is under `ADAPTER_WORKERS=N`: the one service, or worker i of N.

`adapter.workers` (the supervisor) starts each worker with `CHARGE_ADAPTER_WORKER=i/N` in
its environment (not an `ADAPTER_*` setting: an operator never sets it) and, while the
worker starts, a pipe named by `CHARGE_ADAPTER_WORKER_READY_FD`. The listeners, the app's
start-up and the serving loop ask this module, which imports nothing of ours, so any of
them may:

- `reuse_port()`: bind with `SO_REUSEPORT`, so the N workers share the MLLP and HTTP ports
  and the kernel spreads connections over them;
- `runs_background()`: run the coder and the delivery worker (worker 0 only: one process
  codes and delivers, as with one process; the others take messages in);
- `notify_ready()`: tell the supervisor the listeners are up.

Without the variable (the default, one process) every answer is that of one process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

WORKER_ENV = "CHARGE_ADAPTER_WORKER"
READY_FD_ENV = "CHARGE_ADAPTER_WORKER_READY_FD"


@dataclass(frozen=True, slots=True)
class WorkerRole:
    index: int  # 0 .. count-1; 0 codes and delivers
    count: int


def current() -> WorkerRole | None:
    """This process's role, or None when it is the whole service (no supervisor)."""
    raw = os.environ.get(WORKER_ENV, "")
    index, sep, count = raw.partition("/")
    if not sep or not index.isdigit() or not count.isdigit():
        return None
    return WorkerRole(int(index), int(count))


def reuse_port() -> bool:
    return current() is not None


def runs_background() -> bool:
    role = current()
    return role is None or role.index == 0


def notify_ready() -> None:
    """One byte on the supervisor's pipe, once (the variable is dropped after)."""
    raw = os.environ.pop(READY_FD_ENV, "")
    if not raw.isdigit():
        return
    fd = int(raw)
    with contextlib.suppress(OSError):  # the supervisor is gone: we die with it (PDEATHSIG)
        os.write(fd, b"R")
    with contextlib.suppress(OSError):
        os.close(fd)
