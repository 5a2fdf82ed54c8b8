"""Every corpus input through the fuzzers' in-process request path, with their invariants: the
requests of tests/corpus/requests cut into reads every way the fuzzer cuts them, and the
backend answers of tests/corpus/responses (each one a finding of the response fuzzer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import targets
from tests.integration.test_corpus import CASES, load_case

RESPONSES = sorted((Path(__file__).resolve().parent.parent / "corpus" / "responses").glob("*.bin"))


@pytest.mark.parametrize("name", CASES)
def test_request_corpus(name: str) -> None:
    data, _ = load_case(name)
    for flags in (0x00, 0x01, 0x02, 0x05, 0x07, 0x80, 0x87):
        targets.request_input(bytes((flags,)) + data)


@pytest.mark.parametrize("path", RESPONSES, ids=[p.stem for p in RESPONSES])
def test_response_corpus(path: Path) -> None:
    data = path.read_bytes()
    for flags in (0x00, 0x01):
        targets.response_input(bytes((flags,)) + data[1:])


def test_a_malformed_response_is_a_502_and_dropped() -> None:
    world = targets._world("response")
    targets.response_input(b"\x00HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok")
    assert [ex.status for ex in world.answered()] == [502] and world.pooled == []
    targets.response_input(b"\x00HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [ex.status for ex in world.answered()] == [200] and len(world.pooled) == 1


def test_pipelined_unknown_method_head_and_garbage() -> None:
    """A finding of the fixed-seed run: an unknown method, a HEAD and garbage pipelined (the
    answers are right; the world's bookkeeping of the replaced exchange was not)."""
    data = (
        b"PURGEX /corpus-method HTTP/1.1\r\nHost: a.test\r\n\r\n"
        b"HEAD /corpus-method HTTP/1.1\r\nHost: a.test\r\n\r\n\r\nRGEX /corp-method HTT\xff"
    )
    targets.request_input(b"\x87" + data)
    world = targets._world("request")
    assert [ex.status for ex in world.answered()] == [200, 200, 400]
