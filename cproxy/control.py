"""``cproxy [-c FILE] -k reload|stop|reopen|check``: signal the running cproxy.

As Squid's ``squid -k reconfigure|shutdown|rotate|check``: the process is found through
the PidFile of the same directive file (cproxy.server.pidfile), so the command needs the
``-c FILE`` the proxy was started with, and nothing else (no pidof, no guessing among
several cproxy processes). With Workers above 1 the file names the supervisor, which passes
the signal on.

Exit status: 0 done; 1 cproxy is not running (no PidFile, a stale one, a process that is
not cproxy) or could not be signalled or did not stop in time; 2 the directive file is
invalid (nothing is signalled: a reload of a bad file would be refused anyway, and the
person typing the command is the one who should read why).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from cproxy.directives import Config
from cproxy.server.pidfile import pid_file_path, read_pid_file

# -k action -> (signal, what it does, for the message)
ACTIONS: dict[str, tuple[signal.Signals, str]] = {
    "reload": (signal.SIGHUP, "reload the directive file"),
    "stop": (signal.SIGTERM, "stop"),
    "reopen": (signal.SIGUSR1, "reopen its log files"),
}
CHOICES = (*ACTIONS, "check")

# How long ``-k stop`` waits for the process to exit: its grace for requests in flight
# (SHUTDOWN_GRACE_S, 10 s) and some more for closing.
STOP_WAIT_S = 15.0
_STOP_POLL_S = 0.05


def run(action: str, config: Config, source: str) -> int:
    """Carry out ``action`` for the cproxy that ``config`` (read from ``source``) runs."""
    path = pid_file_path(config)
    if not path:
        print(
            f"cproxy: {source}: PidFile is empty, so the running cproxy cannot be found; "
            "set PidFile (and restart) to use -k",
            file=sys.stderr,
        )
        return 1
    state = read_pid_file(path)
    if action == "check":
        if state.running:
            print(f"cproxy: {source}: OK; running as process {state.pid} (PidFile {path})")
            return 0
        print(f"cproxy: {source}: OK; {state.problem}")
        return 1
    if not state.running or state.pid is None:
        print(f"cproxy: {state.problem}", file=sys.stderr)
        return 1
    signum, what = ACTIONS[action]
    try:
        os.kill(state.pid, signum)
    except OSError as exc:
        print(f"cproxy: cannot signal process {state.pid}: {exc.strerror}", file=sys.stderr)
        return 1
    if action != "stop":
        print(f"cproxy: asked process {state.pid} to {what} ({signum.name})")
        return 0
    return _wait_for_exit(state.pid)


def _wait_for_exit(pid: int) -> int:
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        if _exited(pid):
            print(f"cproxy: process {pid} stopped")
            return 0
        time.sleep(_STOP_POLL_S)
    print(
        f"cproxy: process {pid} was asked to stop (SIGTERM) and still runs after "
        f"{STOP_WAIT_S:.0f} s",
        file=sys.stderr,
    )
    return 1


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited: gone, or a zombie that its parent has not reaped yet
    (it has stopped serving; only its exit status is left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            # "pid (comm) state ...": the state follows the last ')'.
            return handle.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False
