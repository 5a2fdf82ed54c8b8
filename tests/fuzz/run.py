"""Coverage-guided fuzzing of the request path with atheris (``make fuzz``).

    python -m tests.fuzz.run [--seconds 600] [--seed N] [--target request|response|h2|all]

Each target runs in its own process (atheris/libFuzzer), instrumenting hopwire for coverage,
seeded with every request of tests/corpus/requests (the response target with a few valid and
malformed answers).  An input that raises, breaks an invariant (tests/fuzz/world.py) or makes
a callback raise stops that target; it is written as a corpus file, ready to commit:

    tests/corpus/requests/fuzz-<sha1>.http    the input, escaped as the other corpus files
    tests/corpus/requests/fuzz-<sha1>.expect  "400 close", the usual answer: check it

(a response-side finding goes to tests/corpus/responses/ as fuzz-<sha1>.bin).  Exit status 0
when nothing was found.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = ROOT / "tests" / "corpus" / "requests"
RESPONSES = ROOT / "tests" / "corpus" / "responses"
RESPONSE_SEEDS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nX-A: 1\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
]


def escape(data: bytes) -> str:
    """The corpus file form: printable ASCII as it is, the rest as \\r \\n \\t \\xNN."""
    out = []
    for c in data:
        ch = chr(c)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif 32 <= c < 127 and ch != "{":
            out.append(ch)
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def seeds(target: str, directory: Path) -> None:
    from tests.integration.test_corpus import CASES, load_case

    if target == "h2":
        from tests.fuzz.targets import h2_seeds

        for i, data in enumerate(h2_seeds()):
            for flags in (0x00, 0x02, 0x85):  # whole, in 2-byte reads, in 16-byte reads + EOF
                (directory / f"h2-{i}-{flags:02x}").write_bytes(bytes((flags,)) + data)
    elif target == "request":
        for name in CASES:
            data, _ = load_case(name)
            for flags in (0x00, 0x01, 0x87):  # whole, byte by byte, by line with EOF
                (directory / f"{name}-{flags:02x}").write_bytes(bytes((flags,)) + data)
    else:
        for i, data in enumerate(RESPONSE_SEEDS):
            for flags in (0x00, 0x01):
                (directory / f"seed-{i}-{flags}").write_bytes(bytes((flags,)) + data)
        for path in sorted(RESPONSES.glob("*.bin")) if RESPONSES.exists() else []:
            (directory / path.name).write_bytes(path.read_bytes())


def record(target: str, crash: Path) -> Path:
    data = crash.read_bytes()
    digest = hashlib.sha1(data).hexdigest()[:12]
    if target == "h2":
        RESPONSES.parent.joinpath("h2").mkdir(parents=True, exist_ok=True)
        path = RESPONSES.parent / "h2" / f"fuzz-{digest}.bin"
        path.write_bytes(data)
    elif target == "request":
        REQUESTS.mkdir(parents=True, exist_ok=True)
        path = REQUESTS / f"fuzz-{digest}.http"
        # the flag byte chose how the input was cut into reads; the corpus sends it whole
        path.write_text(escape(data[1:]) + "\n")
        (REQUESTS / f"fuzz-{digest}.expect").write_text("400 close\n")
    else:
        RESPONSES.mkdir(parents=True, exist_ok=True)
        path = RESPONSES / f"fuzz-{digest}.bin"
        path.write_bytes(data)
    return path


def fuzz(target: str, seconds: int, seed: int, keep: bool = True, runs: int = 0) -> int:
    work = Path(tempfile.mkdtemp(prefix=f"hopwire-fuzz-{target}-"))
    corpus, found = work / "corpus", work / "found"
    corpus.mkdir()
    found.mkdir()
    seeds(target, corpus)
    args = [
        sys.executable,
        "-m",
        "tests.fuzz.entry",
        target,
        str(corpus),
        f"-max_total_time={seconds}",
        f"-seed={seed}",
        *([f"-runs={runs}"] if runs else []),
        f"-artifact_prefix={found}/",
        "-max_len=16384",
        "-timeout=10",
        "-print_final_stats=1",
    ]
    print(f"fuzzing {target} for {seconds}s (seed {seed}): {' '.join(args[3:])}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "server")}
    if seed:
        env["PYTHONHASHSEED"] = "0"  # a fixed seed and a run count: the same inputs every time
    proc = subprocess.run(args, cwd=ROOT, env=env)
    crashes = sorted(found.iterdir())
    for crash in crashes:
        where = record(target, crash) if keep else crash
        print(f"  found: {crash.name} -> {where}\n  input: {crash.read_bytes()[:300]!r}")
    if proc.returncode != 0 and not crashes:
        print(f"  the {target} fuzzer failed with exit status {proc.returncode}")
        return 1
    return 1 if crashes else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "600")))
    ap.add_argument("--seed", type=int, default=0, help="0: a new random seed")
    ap.add_argument("--target", choices=("request", "response", "h2", "all"), default="all")
    ap.add_argument(
        "--no-record", action="store_true", help="print findings, do not write corpus files"
    )
    ap.add_argument(
        "--runs", type=int, default=0, help="inputs in all (with --seed: a repeatable run)"
    )
    args = ap.parse_args()
    targets = ["request", "response", "h2"] if args.target == "all" else [args.target]
    # the client sides get most of the time: they are where the input is an attacker's
    shares = (
        {"request": 0.6, "response": 0.2, "h2": 0.2} if len(targets) == 3 else {targets[0]: 1.0}
    )
    status = 0
    for target in targets:
        seconds = max(1, int(args.seconds * shares[target]))
        runs = int(args.runs * shares[target])
        status |= fuzz(target, seconds, args.seed, keep=not args.no_record, runs=runs)
    return status


if __name__ == "__main__":
    sys.exit(main())
