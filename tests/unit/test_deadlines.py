"""The connection states that loopback cannot reach on cue, walked in process (the real
``Downstream`` and ``Exchange`` with fake transports, as the fuzzers drive them): a connection
closed with bytes its client does not read, and the stall bound that ends an exchange no other
deadline covers.  tests/integration/test_deadlines.py walks the rest with real processes."""

from __future__ import annotations

from typing import Any

from hopwire.http.downstream import CLOSING, Downstream
from tests.fuzz.world import ClientTransport, World


def connection(world: World) -> tuple[Downstream, ClientTransport]:
    down = Downstream(world.ep)
    client = ClientTransport(world)
    world.client = client
    down.connection_made(client)
    return down, client


def advance(world: World, seconds: float) -> float:
    clock: Any = world.worker.clock
    clock.now += seconds
    return float(clock.now)


def test_closed_with_unread_bytes_is_reset_after_the_bound() -> None:
    world = World()
    down, client = connection(world)
    client.unwritten = 300_000  # the client reads nothing of what was written
    down.close()
    assert down.closed and down.deadline_kind == CLOSING
    assert down.deadline == world.worker.clock.now + world.ep.stall_timeout
    down.timed_out()
    assert client.aborted  # reset, not left for the kernel to trickle out


def test_closed_with_everything_written_has_nothing_to_wait_for() -> None:
    world = World()
    down, client = connection(world)
    down.close()
    assert client.closed and not client.aborted and down.deadline_kind != CLOSING


def test_an_exchange_no_deadline_covers_ends_at_the_stall_bound() -> None:
    """A request sent to a backend that never answers, with no responseHeaderTimeout: the
    stall bound (idleTimeout) ends it with a 504; any progress restarts the bound."""
    world = World(response=b"")  # the backend answers nothing
    down, client = connection(world)
    down.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    ex = down.active
    assert ex is not None and ex.upstream is not None
    down.data_received(b"cd")  # the body is complete: the connection's own deadline is off
    assert down.deadline == 0.0 and ex.deadline == 0.0
    bound = world.ep.stall_timeout
    down.watch(advance(world, 0))  # the first look marks the progress so far
    down.watch(advance(world, bound - 1))
    ex.resp_bytes += 1  # progress: the bound starts again
    down.watch(advance(world, 2))
    down.watch(advance(world, bound - 1))
    assert not ex.done
    down.watch(advance(world, 1.5))
    assert ex.done and ex.status == 504 and bytes(client.out).startswith(b"HTTP/1.1 504")


def test_a_client_that_reads_nothing_is_reset_at_the_stall_bound() -> None:
    world = World(response=b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    down, client = connection(world)
    down.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    world.answer_backends()
    ex = down.active
    assert ex is not None and ex.head_sent
    client.unwritten = 1000  # nothing of it was read
    down.watch(advance(world, 0))
    down.watch(advance(world, world.ep.stall_timeout + 1))
    assert ex.done and ex.error_type == "write_timeout" and client.aborted
