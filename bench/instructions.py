"""Instructions per request of the in-process request path (bench/callpath.py), and per span
record of each OTLP encoder, counted by ``valgrind --tool=callgrind``: the same figure every
run, for A/B work on a noisy machine.

Each setting runs twice, with N and 3N requests (or records); the difference divided by 2N
is the instructions of one, start-up and imports cancelled out.  ``--ref REV`` counts another
revision's server tree (git archive) beside this one.

    python bench/instructions.py                      # every setting, this tree
    python bench/instructions.py --ref HEAD~3         # and HEAD~3's, side by side
    python bench/instructions.py --only "encoder c,encoder python"
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import ref_tree  # noqa: E402

SETTINGS = {
    "tracing off": [],
    "rate 0": ["--tracing", "0"],
    "rate 1.0": ["--tracing", "1.0"],
    "rate 0 keep": ["--tracing", "0", "--keep"],
    "rate 0.01": ["--tracing", "0.01"],
    "rate 0.01 keep": ["--tracing", "0.01", "--keep"],
    "inbound unsampled": ["--tracing", "0.5", "--parent", "unsampled"],
    "inbound sampled": ["--tracing", "0.5", "--parent", "sampled"],
    "off with an inbound header": ["--parent", "sampled"],
    "metrics+otlp": ["--telemetry", "metrics+otlp"],
    "accesslog": ["--telemetry", "accesslog"],
    "accesslog otlp": ["--telemetry", "accesslog otlp"],
    "encoder c": ["ENCODER", "c"],
    "encoder python": ["ENCODER", "python"],
}
# N span records (a SERVER and a CLIENT span each) through one encoder's add/take
ENCODE = """
import random, sys
from hopwire.telemetry import otlp
kind, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
records = [(rng.randbytes(16), rng.randbytes(8), b"", False, 3, b"", "GET", "all", "/12B", "",
            "127.0.0.1", 8080, "127.0.0.1", 40000 + i % 20000, "1.1", "wrk/4.2", 200, "",
            1764579600000000000 + i, 1764579600000090000 + i, False,
            [[rng.randbytes(8), 1764579600000010000 + i, 1764579600000080000 + i,
              "http://127.0.0.1:9000", "127.0.0.1", 9000, 200, ""]], (), (), "http") for i in range(500)]
encoder = otlp.encoder(kind)
for i in range(n):
    encoder.add(records[i % 500])
    if encoder.pending >= 512:
        encoder.take(b"r", b"s")
"""


def count(server: Path | None, args: list[str], requests: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    if server is not None:
        env["PYTHONPATH"] = str(server)
    if args[:1] == ["ENCODER"]:
        # both runs build the same 500 records, then encode N or 3N of them
        target = ["-c", ENCODE, args[1], str(requests)]
    else:
        target = [str(ROOT / "bench" / "callpath.py"), "--requests", str(requests)]
        target += ["--repeat", "1", *args]
    res = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, *target],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    found = re.search(r"Collected : (\d+)", res.stderr)
    if res.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed: {res.stderr[-2000:]}")
    return int(found.group(1))


def per_request(server: Path | None, args: list[str], n: int) -> float:
    return (count(server, args, 3 * n) - count(server, args, n)) / (2 * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=2000, help="N (the runs do N and 3N)")
    ap.add_argument("--ref", default="", help="also count this revision's server tree")
    ap.add_argument("--only", default="", help="comma-separated settings")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    settings = {k: v for k, v in SETTINGS.items() if not args.only or k in args.only.split(",")}
    trees: dict[str, Path | None] = {"this tree": None}
    tmp = None
    if args.ref:
        tmp = Path(tempfile.mkdtemp(prefix="hopwire-ref-"))
        trees[args.ref] = ref_tree(args.ref, tmp)
    header = "| setting | " + " | ".join(trees) + (" | ratio |" if args.ref else "")
    print(header)
    print("| --- |" + " ---: |" * (len(trees) + (1 if args.ref else 0)))
    for name, extra in settings.items():
        values = [per_request(tree, extra, args.requests) for tree in trees.values()]
        cells = " | ".join(f"{v:,.0f}" for v in values)
        ratio = f" | {values[0] / values[1]:.3f} |" if args.ref else ""
        print(f"| {name} | {cells}{ratio}", flush=True)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
