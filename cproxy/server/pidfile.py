"""The PidFile: where it is, writing it while cproxy runs, and finding the process it names.

``cproxy -k reload|stop|reopen|check`` (cproxy.control) finds the running process here, so
the default must work for a user without root: ``cproxy.pid`` next to the directive file.
On built-in defaults (no directive file) it goes to ``$XDG_RUNTIME_DIR`` when the session
has one (a per-user directory that is cleared at logout, as a pid file should be), else
to the working directory, where the other relative names of built-in defaults go. The
systemd unit (etc/cproxy.service) uses /run/cproxy/cproxy.pid.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from cproxy.directives import DIRECTIVES, Config

DEFAULT_NAME = DIRECTIVES["PidFile"].default


def pid_file_path(cfg: Config) -> str:
    """The PidFile's absolute name for ``cfg`` ("" when PidFile is set empty: none)."""
    value = cfg.value("PidFile")
    if cfg.source_path is None and value == DEFAULT_NAME:
        runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
        if runtime_dir and os.path.isdir(runtime_dir):
            return os.path.join(runtime_dir, DEFAULT_NAME)
    return cfg.resolve_path("PidFile")


@dataclass(frozen=True)
class PidFileState:
    """What a PidFile says: ``pid`` (None when missing or unreadable), whether that
    process is a running cproxy, and a sentence for the user when it is not."""

    path: str
    pid: int | None
    running: bool
    problem: str


def read_pid_file(path: str) -> PidFileState:
    """Read ``path`` and check the process it names exists and is a cproxy."""
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read(64).strip()
    except FileNotFoundError:
        return PidFileState(path, None, False, f"cproxy is not running (no PidFile {path})")
    except (OSError, UnicodeDecodeError) as exc:
        return PidFileState(path, None, False, f"cannot read the PidFile {path}: {exc}")
    if not text.isdigit() or int(text) <= 0:
        return PidFileState(path, None, False, f"the PidFile {path} holds no process id")
    pid = int(text)
    if not process_is_cproxy(pid):
        return PidFileState(
            path,
            pid,
            False,
            f"cproxy is not running: the PidFile {path} names process {pid}, which has "
            "gone or is another program (a stale file, left by a cproxy that was killed; "
            "the next start replaces it)",
        )
    return PidFileState(path, pid, True, "")


def process_is_cproxy(pid: int) -> bool:
    """Whether process ``pid`` exists and runs cproxy (its command line names it), so a
    stale file whose number the system gave to another program is not taken for ours."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists; its command line says whose
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return True  # no /proc (or hidden): the process exists, trust the file
    return b"cproxy" in cmdline


@contextlib.contextmanager
def pid_file(path: str) -> Iterator[None]:
    """Write this process's id to ``path`` (nothing when empty) while inside; the file is
    replaced atomically, so a reader never sees it half written. Raises ``AlreadyRunning``
    when the file names another running cproxy (two processes must not share one file:
    ``-k stop`` would stop the wrong one)."""
    if not path:
        yield
        return
    state = read_pid_file(path)
    if state.running and state.pid != os.getpid():
        raise AlreadyRunning(
            f"cproxy is already running as process {state.pid} (PidFile {path}); "
            "stop it with cproxy -k stop, or give this one another PidFile"
        )
    pid = os.getpid()
    partial = f"{path}.{pid}.tmp"
    with open(partial, "w", encoding="ascii") as out:
        out.write(f"{pid}\n")
    os.replace(partial, path)
    try:
        yield
    finally:
        # A forked worker leaves the block too: only the process that wrote it removes it.
        if os.getpid() == pid:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class AlreadyRunning(OSError):
    """The PidFile names a cproxy that is running."""
