"""Pick free TCP ports on the loopback interface for test servers.

Several test processes run at once (pytest-xdist's workers, and other runs
on the same machine), and a port is only free at the moment it is chosen:
another process could choose the same one before the first server binds it.
So each port handed out is also claimed for this process with an advisory
lock on a file named after it, in a directory every test process shares; a
port that another live process has claimed is passed over.  The lock is held
until HELD further ports have been handed out, long after any server binds
what it was given, and the kernel drops a process's locks when it ends.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import socket
import tempfile

# How many claims one process holds at a time (one open file each).
HELD = 64
# Ports whose claims this process holds, oldest first: port -> the locked file's descriptor.
_claims: collections.OrderedDict[int, int] = collections.OrderedDict()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing listens on right now and no other test process was given.

    A server that then fails to bind it (a process outside the tests took
    it) must pick another, as Dovecot.start and PostgresCluster.start do.
    """
    for _attempt in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if _claim(port):
            return port
    raise OSError(f"no unclaimed free port on {host} after 100 attempts")


def _claim(port: int) -> bool:
    """Lock `port`'s file for this process; False when another process (or this one) already holds it."""
    if port in _claims:
        return False
    directory = os.path.join(tempfile.gettempdir(), "inboxd-ports")
    try:
        os.makedirs(directory, exist_ok=True)
        with contextlib.suppress(PermissionError):
            # Tests also run programs as other users, which may pick ports too.
            os.chmod(directory, 0o1777)
        fd = os.open(os.path.join(directory, str(port)), os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        # Nowhere to keep claims (a read-only or foreign directory): the kernel's choice alone.
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _claims[port] = fd
    while len(_claims) > HELD:
        _old, old_fd = _claims.popitem(last=False)
        os.close(old_fd)
    return True
