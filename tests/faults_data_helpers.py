"""Helpers of ``tests/test_faults_data.py``: a reader whose Ray worker the test kills, a named pipe that holds a
shard task inside a real read of the store, drivers run in their own process group with a private Ray, and
waits that always end.

Everything a test starts is ended by process id when its ``with`` block exits, whatever happened inside.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from launch import launcher_env

from ingest.atomic import write_text
from ingest.h36m import H36MReader
from ingest.store import Sequence

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 60.0  # the longest any single wait of the fault tests lasts (a driver starting its own Ray: twice)


def wait_for(
    condition: Callable[[], object],
    what: str,
    timeout: float = WAIT_S,
    proc: subprocess.Popen | None = None,
    every: float = 0.005,
):
    """Poll ``condition`` every ``every`` seconds until it returns something true, and return that.

    Raises:
        AssertionError: naming ``what``, after ``timeout`` seconds, or as soon as ``proc`` (if given) ended.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the driver ended first (exit status {proc.returncode})")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return value


@dataclass
class KilledOnceReader(H36MReader):
    """:class:`~ingest.h36m.H36MReader` whose first attempt at the file ``victim`` writes its process id to
    ``GATE/pid`` and waits (at most :data:`WAIT_S`) to be killed; later attempts read normally. Each attempt
    at ``victim`` appends its process id to ``GATE/attempts``."""

    gate: str = ""
    victim: str = ""

    def read(self, path: Path) -> list[Sequence]:
        if str(path) == self.victim:
            gate = Path(self.gate)
            with open(gate / "attempts", "a") as fh:
                fh.write(f"{os.getpid()}\n")
            if not (gate / "pid").exists():
                write_text(gate / "pid", str(os.getpid()))
                time.sleep(WAIT_S)
                raise TimeoutError(f"{path}: this worker was to be killed by the test")
        return super().read(path)


def holders(path: Path) -> list[int]:
    """Ids of the processes other than this one with ``path`` open (read from /proc)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # processes that ended meanwhile, or are not ours to read
            if int(pid) != os.getpid() and any(
                os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")
            ):
                pids.append(int(pid))
    return pids


class PartGate:
    """Inside ``with``: the ``zarr.json`` of a store part is a named pipe, so the shard task that opens the part
    blocks there, inside a real read of the store. This process holds the pipe open for reading and writing,
    so the task's ``open`` returns and its ``read`` waits: :meth:`readers` then finds it. :meth:`restore` puts
    the real file back for the tasks that open it next; :meth:`close` (also on exit) releases the pipe too."""

    def __init__(self, part: Path, keep: Path):
        self.path, self.keep, self.fd = part / "zarr.json", keep, None

    def __enter__(self) -> PartGate:
        shutil.copyfile(self.path, self.keep)
        self.path.unlink()
        os.mkfifo(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        return self

    def readers(self) -> list[int]:
        """Processes blocked reading the pipe."""
        return holders(self.path) if self.path.is_fifo() else []

    def restore(self) -> None:
        """Put the real ``zarr.json`` back (a task already reading the pipe keeps waiting on it)."""
        if self.path.is_fifo():
            os.replace(self.keep, self.path)

    def close(self) -> None:
        """Restore the file and close the pipe: a task still waiting on it reads nothing and fails."""
        self.restore()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __exit__(self, *exc) -> None:
        self.close()


def ray_processes(ray_tmp: str) -> list[psutil.Process]:
    """The processes whose command line names the Ray temp dir ``ray_tmp`` (those of one private Ray)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(ray_tmp in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


class Driver:
    """A command (``python -m ingest ...``, ``python -m shards build ...``) that starts its own local Ray, run in
    a new session with a private Ray temp dir. Its *group* (:meth:`group`) is every process it started, its
    Ray's included. Use with ``with``: on exit the group is SIGKILLed and the temp dir removed."""

    def __init__(self, cmd: list[str], log: Path):
        self.cmd, self.log = cmd, log
        self.ray_tmp = tempfile.mkdtemp(prefix="pmf", dir="/tmp")  # short: Ray's socket paths stay < 108 chars
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Driver:
        env = {k: v for k, v in launcher_env().items() if k != "RAY_ADDRESS"}
        env |= {"RAY_TMPDIR": self.ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"}
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                self.cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def group(self) -> list[psutil.Process]:
        """The driver, its descendants, its process group and the processes naming its Ray temp dir."""
        procs = {p.pid: p for p in ray_processes(self.ray_tmp)}
        with contextlib.suppress(psutil.NoSuchProcess):
            driver = psutil.Process(self.proc.pid)
            procs |= {p.pid: p for p in [driver, *driver.children(recursive=True)]}
        for proc in psutil.process_iter():
            with contextlib.suppress(OSError):  # ended meanwhile
                if os.getpgid(proc.pid) == self.proc.pid:
                    procs[proc.pid] = proc
        return list(procs.values())

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every process of the group."""
        for proc in self.group():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)

    def kill_when(self, condition: Callable[[], object], what: str, timeout: float = 2 * WAIT_S) -> None:
        """SIGKILL the group at a moment ``condition()`` holds: polled while the group runs, then checked again
        with the group stopped (SIGSTOP), so nothing changes between that check and the kill."""
        deadline = time.monotonic() + timeout
        while True:
            wait_for(condition, what, max(0.0, deadline - time.monotonic()), self.proc)
            self.signal(signal.SIGSTOP)
            if condition():
                self.kill()
                return
            self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the group and reap the driver."""
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT_S)

    def output(self) -> str:
        return self.log.read_text()

    def __exit__(self, *exc) -> None:
        self.kill()
        psutil.wait_procs(self.group(), timeout=10)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def run_limited(cmd: list[str], fsize: int, timeout: float = 2 * WAIT_S) -> tuple[int, str]:
    """Run ``cmd`` with every file it writes limited to ``fsize`` bytes (RLIMIT_FSIZE: the kernel fails a write
    past it with EFBIG, as a full disk fails one with ENOSPC; Python ignores the SIGXFSZ that comes with it).

    Returns:
        (exit status, stdout and stderr); the command's process group is SIGKILLed afterwards.
    """

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=launcher_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=limit,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode, output


def no_room_message(path: Path) -> str:
    """The message of the OSError a write raises past RLIMIT_FSIZE, once it names ``path``."""
    return f"[Errno {errno.EFBIG}] {os.strerror(errno.EFBIG)}: '{path}'"
