"""The long fuzz run: a million inputs (by default) for every parser of outside input.

    .venv/bin/python scripts/fuzz_long.py                    # 1,000,000 inputs per target
    .venv/bin/python scripts/fuzz_long.py -n 20000 -t forwarded -t policy

The targets and their contract are the CI suite's (``tests/fuzz/targets.py``): each input
must give a result or the target's own one-line error, nothing else. Hypothesis is too slow
for a million inputs per target, so this run is a plain mutation fuzzer: each input is a seed
(or an earlier input) with a few random edits — byte flips, inserted, deleted or repeated
slices, special tokens (brackets, quotes, escapes, NUL, lone surrogates, 5,000-digit numbers,
year-1 timestamps), splices of two inputs — deterministic for a given ``--seed``. Inputs that
fail are written to ``--out`` (one JSON string per line) and the run carries on; the summary
line per target gives inputs, failures, distinct failure types and inputs per second.
Results are recorded in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.targets import TARGETS, Target, check

TOKENS = [
    "[",
    "]",
    "{",
    "}",
    '"',
    "\\",
    "\\\\",
    '\\"',
    ",",
    ";",
    "=",
    ":",
    "\x00",
    "\ud800",
    "\\ud800",
    "\\udc80",
    "\r",
    "\n",
    "\t",
    " ",
    "9" * 400,
    "9" * 5000,
    "1e999",
    "-1",
    "NaN",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-14:00",
    "for=",
    'for="',
    "unknown",
    "_x",
    "::ffff:",
    "[" * 100,
    "{" * 100,
    "[[",
    "=[",
    "\u202e",
    "\uffff",
]


def mutate(rng: random.Random, text: str, pool: list[str]) -> str:
    """``text`` with one to four random edits."""
    for _ in range(rng.randint(1, 4)):
        n = len(text)
        op = rng.randrange(7)
        pos = rng.randint(0, n)
        if op == 0 and n:  # replace a character
            i = rng.randrange(n)
            text = (
                text[:i]
                + chr(rng.choice((rng.randrange(32, 127), rng.randrange(0x110000))))
                + text[i + 1 :]
            )
        elif op == 1:  # insert a token
            text = text[:pos] + rng.choice(TOKENS) + text[pos:]
        elif op == 2 and n:  # delete a slice
            end = min(n, pos + rng.randint(1, 16))
            text = text[:pos] + text[end:]
        elif op == 3 and n:  # repeat a slice
            end = min(n, pos + rng.randint(1, 8))
            text = text[:pos] + text[pos:end] * rng.randint(2, 50) + text[pos:]
        elif op == 4:  # splice with another input
            other = rng.choice(pool)
            cut = rng.randint(0, len(other))
            text = text[:pos] + other[cut:]
        elif op == 5 and n:  # truncate
            text = text[:pos]
        else:  # random printable noise
            text = (
                text[:pos]
                + "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randint(1, 8)))
                + text[pos:]
            )
    return text[:70_000]


def run_target(target: Target, count: int, rng: random.Random, out: Path) -> dict[str, object]:
    pool = list(target.seeds)
    failures = 0
    kinds: dict[str, int] = {}
    started = time.perf_counter()
    for i in range(count):
        text = mutate(rng, rng.choice(pool), pool)
        try:
            check(target, text)
        except Exception as exc:
            failures += 1
            kind = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
            kinds[kind] = kinds.get(kind, 0) + 1
            if kinds[kind] <= 3:
                with out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"target": target.name, "kind": kind, "input": text}) + "\n")
        if i % 64 == 0 and len(pool) < 512:
            pool.append(text)  # keep some mutants: later inputs drift further from the seeds
    seconds = time.perf_counter() - started
    return {
        "target": target.name,
        "inputs": count,
        "failures": failures,
        "kinds": kinds,
        "seconds": round(seconds, 1),
        "per_second": round(count / seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--inputs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("-t", "--target", action="append", help="only these targets")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--out", type=Path, default=Path("fuzz-failures.jsonl"))
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.target or t.name in args.target]
    rng = random.Random(args.seed)
    total_failures = 0
    for target in chosen:
        summary = run_target(target, args.inputs, rng, args.out)
        total_failures += int(summary["failures"])  # type: ignore[call-overload]
        print(json.dumps(summary), flush=True)
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
