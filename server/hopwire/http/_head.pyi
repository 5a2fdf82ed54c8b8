from collections.abc import Sequence

def forward_head(
    head: bytes, start: int, first: bytes
) -> tuple[list[bytes], bytes | None, bool, bytes | None] | None: ...
def locate_head(buf: bytes, at: int) -> tuple[bytes, int, int, bytes, int]: ...
def plain_path(path: bytes) -> bool: ...
def scan_fields(
    headers: list[tuple[bytes, bytes]], traced: int, trusted: bool, http10: bool
) -> tuple[
    list[tuple[bytes, bytes]],
    bytes | None,
    int,
    list[bytes],
    bytes | None,
    bytes | None,
    bytes | None,
    dict[bytes, bytes] | None,
    list[tuple[bytes, bytes]] | None,
    bool,
    tuple[int, bytes] | None,
]: ...
def field_lines(fields: Sequence[tuple[bytes, bytes]]) -> bytes: ...
