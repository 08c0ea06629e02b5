"""free_port never hands out a port that another test process (a pytest-xdist worker) was given."""

from __future__ import annotations

import subprocess
import sys

from inboxd.testing import ports

# A second process that takes ports with free_port, prints them, and holds them until its stdin closes.
HOLDER = """
import sys
from inboxd.testing.ports import free_port
print(" ".join(str(free_port()) for _ in range(20)), flush=True)
sys.stdin.read()
"""


def test_a_port_given_to_another_live_process_is_never_given_here() -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        theirs = [int(p) for p in holder.stdout.readline().split()]
        assert len(set(theirs)) == 20
        # The kernel may well offer one of them again (nothing listens on it), but the claim stands.
        assert not any(ports._claim(port) for port in theirs)
        assert not set(theirs) & {ports.free_port() for _ in range(50)}
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # Once that process has ended, its ports are free for the taking again.
    assert ports._claim(theirs[0])


def test_one_process_is_not_given_a_port_twice_while_it_holds_it() -> None:
    given = [ports.free_port() for _ in range(ports.HELD)]
    assert len(set(given)) == ports.HELD
