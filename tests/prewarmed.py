"""Run ``python -m benchmark.<module> ...`` in a fresh process that does not pay the imports again.

A job's imports (torch, torchvision, Lightning, timm, MLflow, Hydra) take 12-15 s of CPU on the 2-core machine, and
the end-to-end tests start the entry point dozens of times: most of the suite's time was imports. This module is a
fork server: one interpreter per test session (shared by pytest-xdist's workers) imports those libraries once and
then, for each command, forks a waiter that forks a child that becomes the command. The child is a real, separate
process with its own pid, working directory, environment, ``sys.argv``, standard streams and exit status; it runs
the module as ``python -m`` would (``runpy`` with ``__main__``, the working directory first on ``sys.path``) and
ends through the interpreter's normal shutdown (atexit handlers, non-daemon threads), so an uncaught exception
prints its traceback and exits 1 as usual.

What it does not reproduce, and the tests that therefore start a fresh interpreter themselves: anything about
imports (``tests/test_overhead.py``), the installed wheel (``tests/test_wheel.py``), signals sent to a sweep and its
workers (``tests/test_faults.py``), and a different hash seed per process.

    python tests/prewarmed.py SOCKET OWNER_PID   # the server: imports, prints "ready", serves until OWNER_PID ends
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRELOAD = [  # what a job imports; importing them here is the whole point
    "benchmark.run", "benchmark.job", "benchmark.hydra_callback", "benchmark.sweeper", "benchmark.report.cli",
    "benchmark.rank", "benchmark.ui", "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# The server (its own interpreter)


def _serve(path: str, owner: int) -> dict | None:
    """Serve commands until the process ``owner`` (the test session) is gone; in a forked child, return its command
    (the caller runs it). Each connection gets a waiter process that forks the command, reports its pid, waits for
    it and reports its exit status, so several test processes can run commands at once."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's plugin scan, done once (the child would do the same scan and find the same)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    print("ready", flush=True)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if not _alive(owner):
                return None
            continue
        if os.fork() != 0:  # the server: back to accepting
            conn.close()
            continue
        listener.close()  # the waiter
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        conn.settimeout(None)
        stream = conn.makefile("rw")
        request = json.loads(stream.readline())
        pid = os.fork()
        if pid == 0:
            stream.close(), conn.close()
            return request
        stream.write(json.dumps({"pid": pid}) + "\n")
        stream.flush()
        _, status = os.waitpid(pid, 0)
        stream.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        stream.flush()
        os._exit(0)  # the waiter ends here, running nothing of the server's exit


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _become(request: dict) -> None:
    """In the forked child: take the command's directory, environment and streams, then run its module."""
    import runpy

    os.setpgid(0, 0)  # its own process group, as a test's timeout kills the whole group
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, (name, mode) in enumerate([("/dev/null", os.O_RDONLY), (request["stdout"], os.O_WRONLY),
                                       (request["stderr"], os.O_WRONLY)]):  # fmt: skip
        os.dup2(os.open(name, mode), fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own streams, open until it exits
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    module, *args = request["argv"][1:] if request["argv"][0] == "-m" else request["argv"]
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    sys.argv = [module, *args]  # runpy replaces argv[0] with the module's file, as `python -m` does
    runpy.run_module(module, run_name="__main__", alter_sys=True)


# ---------------------------------------------------------------------------------------------------------------
# The client (the test process)


class Server:
    """The fork server of this test session, shared by its processes (pytest-xdist's workers): the first that needs
    it starts it, under a lock in ``folder``; it ends by itself when the process ``owner`` (the session: xdist's
    controller, or pytest itself) is gone. ``run`` is ``subprocess.run`` for ``[sys.executable, "-m",
    "benchmark.<module>", ...]`` with ``capture_output=True, text=True``."""

    def __init__(self, folder: Path, owner: int) -> None:
        self.folder, self.owner = folder, owner
        self.path: str | None = None

    def _connect(self) -> socket.socket:
        from benchmark.util import file_lock

        if self.path is None:
            with file_lock(self.folder / "lock"):
                record = self.folder / "socket.txt"
                if not record.exists():  # a short path: a Unix socket's name has at most 107 bytes
                    sock_path = os.path.join(tempfile.mkdtemp(prefix="tb-prewarmed-"), "socket")
                    proc = subprocess.Popen([sys.executable, __file__, sock_path, str(self.owner)],
                                            stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
                    if proc.stdout.readline().strip() != "ready":
                        raise RuntimeError(f"the prewarmed interpreter did not start (exit {proc.wait()})")
                    record.write_text(sock_path)
                self.path = record.read_text()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        return sock

    def run(self, cmd: list[str], *, cwd=None, env=None, timeout: float | None = None,
            **_: object) -> subprocess.CompletedProcess:  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        out, err = (Path(tempfile.mkstemp(dir=self.folder, suffix=s)[1]) for s in (".out", ".err"))
        request = {"argv": cmd[1:], "cwd": str(cwd or os.getcwd()), "env": dict(os.environ if env is None else env),
                   "stdout": str(out), "stderr": str(err)}  # fmt: skip
        with self._connect() as sock:
            stream = sock.makefile("rw")
            stream.write(json.dumps(request) + "\n")
            stream.flush()
            pid = json.loads(stream.readline())["pid"]
            sock.settimeout(timeout)
            try:
                returncode = json.loads(stream.readline())["returncode"]
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
                time.sleep(0.5)
                raise subprocess.TimeoutExpired(cmd, timeout, out.read_text(), err.read_text()) from None
        stdout, stderr = out.read_text(), err.read_text()
        out.unlink(), err.unlink()
        return subprocess.CompletedProcess(cmd, returncode, stdout, stderr)


if __name__ == "__main__":
    job = _serve(sys.argv[1], int(sys.argv[2]))
    if job is not None:  # a forked child: become the command, outside every frame of the server
        _become(job)
    else:  # the server, its session over
        os.unlink(sys.argv[1])
        os.rmdir(os.path.dirname(sys.argv[1]))
