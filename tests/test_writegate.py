"""The per-process write gate of a SQLite store: writers take turns in arrival order.

The unit tests drive the gate from threads that wait on each other's
events, never on the clock.  The store test shows the starvation the gate
ends: a thread writing transaction after transaction no longer keeps
another thread of the same process from writing for more than a turn.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from inboxd.store.engine import create_store_engine, reading, writing
from inboxd.store.writegate import WriteGate, gate_of


def _queued(gate: WriteGate, tickets: int) -> bool:
    # How many turns have been asked for: the test waits for a thread to be in line, not for time to pass.
    with gate._cond:
        return gate._next >= tickets


def _wait_until(predicate) -> None:
    event = threading.Event()
    while not predicate():
        event.wait(0.001)


def test_turns_go_in_arrival_order():
    gate = WriteGate(timeout=60)
    order: list[str] = []
    gate.enter("first")
    threads = []
    for i, name in enumerate(["second", "third", "fourth"]):
        def run(name=name):
            gate.enter(name)
            order.append(name)
            gate.leave(name)
        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
        # Each thread is in line before the next one starts.
        _wait_until(lambda i=i: _queued(gate, i + 2))
    order.append("first")
    gate.leave("first")
    for thread in threads:
        thread.join(10)
    assert order == ["first", "second", "third", "fourth"]


def test_a_thread_holding_a_turn_enters_again_and_the_turn_ends_with_its_last_key():
    gate = WriteGate(timeout=60)
    gate.enter("outer")
    gate.enter("inner")  # Same thread: let through at once.
    got = threading.Event()

    def other():
        gate.enter("other")
        got.set()
        gate.leave("other")

    thread = threading.Thread(target=other)
    thread.start()
    _wait_until(lambda: _queued(gate, 2))
    gate.leave("inner")
    assert not got.is_set(), "the outer turn still holds"
    gate.leave("outer")
    thread.join(10)
    assert got.is_set()


def test_leaving_twice_or_with_an_unknown_key_changes_nothing():
    gate = WriteGate(timeout=60)
    gate.enter("a")
    gate.leave("a")
    gate.leave("a")
    gate.leave("never")
    gate.enter("b")  # Would wait forever if the second leave had moved the turn past a ticket not yet given.
    gate.leave("b")
    assert gate._serving == gate._next == 2


def test_a_writer_that_gives_up_is_passed_over():
    gate = WriteGate(timeout=0)
    gate.enter("holder")
    result: list[str] = []

    def impatient():
        gate.enter("impatient")  # Its turn does not come at once: it goes on without one.
        result.append("gone on")
        gate.leave("impatient")  # Holds no turn: nothing happens.

    thread = threading.Thread(target=impatient)
    thread.start()
    thread.join(10)
    assert result == ["gone on"]
    gate.leave("holder")
    # The skipped ticket is passed over: the next writer is served at once.
    gate.enter("next")
    assert gate._owner == threading.get_ident()
    gate.leave("next")


@pytest.fixture
def engine(tmp_path):
    engine = create_store_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with writing(engine) as conn:
        conn.execute(text("CREATE TABLE log (who TEXT)"))
    yield engine
    engine.dispose()


def _free(gate: WriteGate) -> bool:
    with gate._cond:
        return gate._owner is None and not gate._held and gate._serving == gate._next


def test_a_write_transaction_holds_a_turn_until_it_commits_or_rolls_back(engine):
    gate = gate_of(engine)
    with writing(engine) as conn:
        conn.execute(text("INSERT INTO log VALUES ('a')"))
        assert gate._owner == threading.get_ident() and gate._held
    assert _free(gate)
    with pytest.raises(RuntimeError):
        with writing(engine) as conn:
            conn.execute(text("INSERT INTO log VALUES ('b')"))
            raise RuntimeError("rolled back")
    assert _free(gate)
    with reading(engine) as conn:
        conn.execute(text("SELECT count(*) FROM log")).scalar()
        assert _free(gate), "a read takes no turn"
    with engine.connect() as conn:
        conn.begin()
        conn.execute(text("INSERT INTO log VALUES ('c')"))
    # Closed mid-transaction: the pool's rollback ends the turn.
    assert _free(gate)


def test_a_writer_that_asked_goes_before_the_next_transaction_of_a_busy_thread(engine):
    """A thread writing transaction after transaction (filing in a long sync) let another thread
    of the daemon write only when SQLite's busy handler, polling up to 100 ms apart, happened to
    find the lock free: in `run --once` no acknowledgement was sent until the sync was over."""
    gate = gate_of(engine)
    order: list[str] = []
    holding = threading.Event()
    asked = threading.Event()

    def busy():
        with writing(engine) as conn:
            conn.execute(text("INSERT INTO log VALUES ('busy')"))
            order.append("busy 1")
            holding.set()
            asked.wait(10)
        # At once, as filing does: without the gate this thread wins the lock again.
        with writing(engine) as conn:
            order.append("busy 2")

    def other():
        with writing(engine) as conn:
            conn.execute(text("INSERT INTO log VALUES ('other')"))
            order.append("other")

    first = threading.Thread(target=busy)
    first.start()
    holding.wait(10)
    before = gate._next
    second = threading.Thread(target=other)
    second.start()
    _wait_until(lambda: _queued(gate, before + 1))
    asked.set()
    first.join(30)
    second.join(30)
    assert order == ["busy 1", "other", "busy 2"]
    assert _free(gate)


def test_postgresql_engines_have_no_gate():
    from sqlalchemy import create_engine

    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert gate_of(engine) is None
