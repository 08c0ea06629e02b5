"""Pick free TCP ports on the loopback interface for test servers."""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing listens on right now.

    The port is only free at the moment of the call; a server that then
    fails to bind it must pick another (Dovecot.start does).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
