"""accesslog.write_all: the writer's batches go out with writev, in order and whole, across
more buffers than one writev takes and across a write the kernel cut short (a signal
arriving while the pipe is full)."""

from __future__ import annotations

import os
import signal
import threading
import time

from hopwire.telemetry.accesslog import IOV_MAX, write_all


def drain(fd: int, into: bytearray, pause: float) -> threading.Thread:
    def run() -> None:
        while True:
            data = os.read(fd, 4096)
            if not data:
                return
            into.extend(data)
            if pause:
                time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_more_buffers_than_one_writev_takes() -> None:
    r, w = os.pipe()
    got = bytearray()
    reader = drain(r, got, 0.0)
    chunks = [f"line {i}\n".encode() for i in range(IOV_MAX * 2 + 7)]
    write_all(w, chunks)
    os.close(w)
    reader.join(10)
    os.close(r)
    assert bytes(got) == b"".join(chunks)


def test_a_write_cut_short_goes_on_where_it_stopped() -> None:
    """A signal while writev waits on a full pipe ends it early with the bytes written so far
    (the kernel's partial write); the rest follows, from the middle of a buffer."""
    r, w = os.pipe()
    got = bytearray()
    reader = drain(r, got, 0.002)  # ~2 MB/s: the 1 MiB below takes a while
    fired: list[float] = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(time.monotonic()))
    chunks = [bytes([65 + i % 26]) * 65521 for i in range(16)]  # odd sizes: cuts fall mid-chunk
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        write_all(w, chunks)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    os.close(w)
    reader.join(30)
    os.close(r)
    assert fired  # the write was interrupted (at least once)
    assert bytes(got) == b"".join(chunks)
