"""A fork server: one process that has imported the render code once, forking a child per
render. A render in a fresh interpreter paid its start and imports each time (~80 ms of CPU
on our 2-core machine, more than the render of a small app itself); a fork costs ~1 ms.

The child is what the render's child process was (render._child on its own stdin, stdout
and stderr, in a process group of its own, its own limits), so nothing about its isolation
changes: the caller makes the three pipes and hands their ends over (SCM_RIGHTS) with a
socket on which the server answers the child's pid, then its exit code once it has ended.
The server reaps the child only when the caller closes that socket (`Forked.release`): a
kill of the child's group after its end never reaches another process given its pid.
`Forked` is the caller's handle, shaped as much of `subprocess.Popen` as render._run uses.
The server is single-threaded (forking a process with threads is unsafe): one selector over
its control socket, a pidfd per child and the sockets of ended ones. It exits when the
operator's end of the control socket closes, the operator killed included.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from typing import Any

_CODE = struct.Struct("!q")
_ANSWER_TIMEOUT = 30.0  # seconds for the server to answer a fork with its pid


class Forked:
    """A child of the fork server, as render._run uses a Popen: pipes, pid, poll, wait."""

    def __init__(self, pid: int, reply: socket.socket, stdin: int, stdout: int, stderr: int):
        self.pid = pid
        self.returncode: int | None = None
        self.lost = False  # the server died: the exit code is not known
        self._reply = reply
        self.stdin = os.fdopen(stdin, "wb", buffering=0)
        self.stdout = os.fdopen(stdout, "rb", buffering=0)
        self.stderr = os.fdopen(stderr, "rb", buffering=0)

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return self.wait(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code (negative: the signal), once it has ended."""
        if self.returncode is not None:
            return self.returncode
        self._reply.settimeout(timeout)
        try:
            data = self._reply.recv(_CODE.size, socket.MSG_WAITALL)
        except (TimeoutError, BlockingIOError):
            raise subprocess.TimeoutExpired(f"render child {self.pid}", timeout or 0) from None
        if len(data) == _CODE.size:
            self.returncode = _CODE.unpack(data)[0]
        else:
            # The server died: the child is nobody's to reap. Make sure it is gone.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.returncode, self.lost = -signal.SIGKILL, True
        return self.returncode

    def release(self) -> None:
        """Done with it (killed what was to kill): the server may reap it now. Until then
        its pid, and its process group, cannot be another process's."""
        self._reply.close()

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class ForkServer:
    """The caller's side: starts the server on first use (and again if it died)."""

    def __init__(self, entry: str) -> None:
        self._entry = entry  # "module:function", run in each child
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        atexit.register(self.stop)
        os.register_at_fork(after_in_child=self._forget)

    def spawn(self) -> Forked:
        """A new child running the entry on fresh pipes; OSError if the server cannot."""
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                for attempt in (1, 2):
                    if self._control is None or self._proc is None or self._proc.poll() is not None:
                        self._start()
                    assert self._control is not None
                    try:
                        fds = [theirs.fileno(), stdin_r, out_w, err_w]
                        socket.send_fds(self._control, [b"f"], fds)
                        break
                    except OSError:
                        self._stop_locked()  # died meanwhile: once more with a new one
                        if attempt == 2:
                            raise
        except BaseException:
            for fd in (stdin_w, out_r, err_r):
                os.close(fd)
            ours.close()
            raise
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
            theirs.close()
        ours.settimeout(_ANSWER_TIMEOUT)
        why: OSError | None = None
        try:
            data = ours.recv(_CODE.size, socket.MSG_WAITALL)
        except OSError as err:
            data, why = b"", err
        if len(data) != _CODE.size:
            for fd in (stdin_w, out_r, err_r):
                os.close(fd)
            ours.close()
            raise OSError(f"the fork server did not start a render ({why or 'no answer'})")
        return Forked(_CODE.unpack(data)[0], ours, stdin_w, out_r, err_r)

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    "-c",
                    "from herd_operator.gitops import forkserver; "
                    f"forkserver.serve({theirs.fileno()}, {self._entry!r})",
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a signal to the operator's group is not its
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._control = ours

    def _stop_locked(self) -> None:
        if self._control is not None:
            self._control.close()  # the server sees the end and exits
            self._control = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _forget(self) -> None:
        # A forked copy of the caller (not ours to use): its own server if it renders.
        self._lock = threading.Lock()
        self._control, self._proc = None, None


# -- the server (its own process) ------------------------------------------------------------
def serve(fd: int, entry: str) -> None:
    module, _, name = entry.partition(":")
    function = getattr(importlib.import_module(module), name)
    control = socket.socket(fileno=fd)
    with selectors.DefaultSelector() as sel:
        sel.register(control, selectors.EVENT_READ, None)
        while True:
            for key, _ in sel.select():
                if key.data is None:  # a request
                    try:
                        msg, fds, _flags, _addr = socket.recv_fds(control, 16, 4)
                    except OSError:
                        return
                    if not msg:
                        return  # the operator has gone; children end on their own
                    if len(fds) != 4:
                        for f in fds:
                            os.close(f)
                        continue
                    _fork(sel, function, control, fds)
                elif key.data[0] == "exited":
                    _exited(sel, key)
                else:  # "released": the caller is done with it
                    _, pid, pidfd = key.data
                    sel.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
                    os.close(pidfd)


def _fork(
    sel: selectors.BaseSelector, function: Any, control: socket.socket, fds: list[int]
) -> None:
    reply_fd, *stdio = fds
    try:
        pid = os.fork()
    except OSError:  # no process to be had now (EAGAIN, ENOMEM): the caller gets no pid
        for f in fds:
            os.close(f)
        return
    if pid == 0:
        _child(sel, function, control, reply_fd, stdio)
    # Its own process group (helm is killed with it) before the caller learns its pid: set
    # here and in the child, whichever runs first (the shells' way; the server's session).
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    for f in stdio:
        os.close(f)
    reply = socket.socket(fileno=reply_fd)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # cannot watch it: killed and reaped at once; the caller gets no pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        reply.close()
        return
    with contextlib.suppress(OSError):
        reply.sendall(_CODE.pack(pid))
    sel.register(pidfd, selectors.EVENT_READ, ("exited", pid, reply))


def _exited(sel: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
    """A child ended: its exit code to the caller, then reaped only once the caller lets go
    (a kill of its group after the exit must not reach a new process with its pid)."""
    _, pid, reply = key.data
    sel.unregister(key.fileobj)
    try:
        info = os.waitid(os.P_PIDFD, key.fd, os.WEXITED | os.WNOWAIT)
    except OSError:
        info = None
    if info is None:  # not to be looked at without reaping: reaped now
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
    else:
        code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    with contextlib.suppress(OSError):
        reply.sendall(_CODE.pack(code))
    if info is None:
        reply.close()
        os.close(key.fd)
        return
    sel.register(reply, selectors.EVENT_READ, ("released", pid, key.fd))


def _child(
    sel: selectors.BaseSelector, function: Any, control: socket.socket, reply: int, stdio: list[int]
) -> None:
    code = 1
    try:
        # Nothing of the server's stays open here: the other children's sockets and pidfds.
        for key in list(sel.get_map().values()):
            if key.data is None:
                continue
            if key.data[0] == "exited":  # (its pidfd registered, its reply socket)
                os.close(key.fd)
                key.data[2].close()
            else:  # released: (its reply socket registered, its pidfd)
                key.fileobj.close()  # type: ignore[union-attr]
                os.close(key.data[2])
        control.close()
        os.close(reply)
        os.setpgid(0, 0)  # as the server does: its own process group
        for target, f in zip((0, 1, 2), stdio, strict=True):
            os.dup2(f, target)
            os.close(f)
        function()
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
