"""Fuzzing in the suite: a short fixed-seed run of both atheris targets (``make fuzz`` runs them
for 10 minutes), and mutated requests against a real master with two workers."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.harness import ROOT, catch_all
from tests.integration.test_corpus import CASES, load_case

STATUS = re.compile(rb"(?:^|\r\n)HTTP/1\.1 (\d{3}) ")
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b":",
    b" ",
    b"\x00",
    b"chunked",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: -1\r\n",
    b"Host: b\r\n",
    b"Expect: 100-continue\r\n",
    b"0\r\n\r\n",
    b"HTTP/1.1",
    b"%2e%2e/",
    b"PURGEX",
]


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a byte
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert a framing token
            data[at:at] = rng.choice(TOKENS)
        elif op == 2 and data:  # delete a run
            del data[at : at + rng.randint(1, 8)]
        elif op == 3:  # splice another request in
            other = rng.choice(seeds)
            data[at:] = other[rng.randrange(len(other) + 1) :]
        else:  # pipeline another one behind
            data += rng.choice(seeds)
    return bytes(data)


def send(port: int, data: bytes, half_close: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.settimeout(0.3)
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, OSError):
                return out
            if not chunk:
                return out
            out += chunk


def test_fixed_seed_fuzz_run() -> None:
    proc = subprocess.run(
        # a fixed seed and a fixed number of inputs (about 60 s here): the same run every time;
        # the time bound only stops it on a much slower machine
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            *("--seconds", "120", "--runs", "200000", "--seed", "1", "--no-record"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = [line for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert proc.returncode == 0, "\n".join(found) or proc.stderr[-3000:]


def test_mutated_requests_against_real_workers(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)}, start=False, workers=2)
    hw.config["entryPoints"]["web"]["transport"] = {
        "respondingTimeouts": {"readTimeout": "1s", "idleTimeout": "1s"}
    }
    hw.write(hw.config)
    hw.start()
    pids = set(hw.worker_pids())
    seeds = [load_case(name)[0] for name in CASES]
    seeds.append(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
    seeds.append(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    rng = random.Random(1)
    inputs = [(mutate(rng, seeds), rng.random() < 0.3) for _ in range(600)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: send(hw.port, *i), inputs))
    statuses = [int(m) for reply in replies for m in STATUS.findall(reply)]
    assert statuses, "no answers at all"
    assert 500 not in statuses
    logs = hw.logs()
    assert '"level":"ERROR"' not in logs, [x for x in logs.splitlines() if "ERROR" in x][:3]
    assert set(hw.worker_pids()) == pids  # no worker died
    assert hw.ping() == 200
