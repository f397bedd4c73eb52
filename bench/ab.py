#!/usr/bin/env python3
"""A/B of two normflow binaries on the common workloads, alternating them in one sitting.

    python3 bench/ab.py OLD_BINARY NEW_BINARY --flows coupling,maf,nsf --sizes S,M --rounds 4

Runs `normflow bench` with each binary in turn, `--rounds` times (A, B, A, B, ...), so that a
machine's slow phases hit both alike, and prints the median of each timing per binary and the
ratio new / old (below 1: the new binary is faster). Environment variables in `--env-b` apply to
the second binary only (for example `NORMFLOW_ISA=portable` to time one code path against
another in the same binary).
"""
import argparse
import json
import os
import statistics
import subprocess

KEYS = ["train_step_ms", "logprob_ms", "sample_ms"]


def bench(binary, flows, sizes, steps, reps, env):
    cmd = [binary, "bench", "--flows", flows, "--sizes", sizes, "--steps", str(steps), "--reps", str(reps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **env}).stdout
    rows = {}
    for line in out.splitlines():
        d = json.loads(line)
        if "flow" in d:
            rows[(d["flow"], d["size"])] = {k: d[k] for k in KEYS}
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a", help="the old binary")
    ap.add_argument("b", help="the new binary")
    ap.add_argument("--flows", default="coupling,maf,nsf")
    ap.add_argument("--sizes", default="S,M")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--env-b", default="", help="KEY=VALUE,... for the second binary only")
    args = ap.parse_args()
    env_b = dict(kv.split("=", 1) for kv in args.env_b.split(",") if kv)
    runs = {"a": [], "b": []}
    for r in range(args.rounds):
        for which, binary, env in [("a", args.a, {}), ("b", args.b, env_b)]:
            runs[which].append(bench(binary, args.flows, args.sizes, args.steps, args.reps, env))
            print(f"# round {r + 1} {which} done", flush=True)
    print(f"# a = {args.a}\n# b = {args.b} {args.env_b}\n# medians of {args.rounds} alternating rounds, ms; ratio b / a")
    print(f"{'workload':<12}" + "".join(f"{k:>30}" for k in KEYS))
    for key in runs["a"][0]:
        cells = []
        for k in KEYS:
            a = statistics.median(run[key][k] for run in runs["a"])
            b = statistics.median(run[key][k] for run in runs["b"])
            cells.append(f"{a:9.2f} {b:9.2f} {b / a:6.2f}x")
        print(f"{key[0] + ' ' + key[1]:<12}" + "".join(f"{c:>30}" for c in cells))


if __name__ == "__main__":
    main()
