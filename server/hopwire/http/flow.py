"""Backpressure on one connection's reading, as one small explicit object.

Reading from a transport can be paused for several independent reasons (the peer's transport is
over its high-water mark, a pipelined request is queued, a body is being buffered while an
upstream connection is dialled).  Each reason is a bit; reading resumes only when every reason
is cleared.  Pause and resume are idempotent.
"""

from __future__ import annotations

from asyncio import Transport

PEER_FULL = 1  # the other side's write buffer is over its high-water mark
QUEUED = 2  # a pipelined request waits behind the active one
BUFFERING = 4  # body bytes are held while no upstream connection is attached

# Write-buffer marks: at most this much is held per direction per connection (plus the one
# read that crossed the mark), which bounds memory for slow readers and large bodies.  Towards
# a client the marks are low: a slow reader holds little, and a fast one drains into the
# kernel's send buffer (megabytes, autotuned) long before these matter.
HIGH_WATER = 256 * 1024  # towards a backend
LOW_WATER = 64 * 1024
CLIENT_HIGH_WATER = 64 * 1024  # towards a client
CLIENT_LOW_WATER = 16 * 1024
BUFFER_LIMIT = 256 * 1024  # body bytes held while no upstream connection is attached


class ReadFlow:
    __slots__ = ("reasons", "transport")

    def __init__(self, transport: Transport):
        self.transport = transport
        self.reasons = 0

    def pause(self, reason: int) -> None:
        if not self.reasons:
            self.transport.pause_reading()
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        if self.reasons & reason:
            self.reasons &= ~reason
            if not self.reasons and not self.transport.is_closing():
                self.transport.resume_reading()
