"""Side-by-side speed comparison: `normflow bench` and the Python peers of
../../shared/bench/peers/, alternating in one sitting, with ratios and peak memory.

Each (implementation, size) runs in its own process; rounds alternate the order of the
implementations so that slow drift of a shared machine hits both alike. The table shows the
median over rounds of each measure and the ratio normflow / fastest peer (below 1: normflow
is faster). Peak memory is each process's maximum resident set size.

The `bound` column is the ratio normflow would reach if its matrix products ran at the rate of
one large product on all cores (`normflow bench --gemm-probe`, measured in every normflow run;
the median over runs of each run's best shape) and nothing else took time: the product FLOPs
that normflow reports for the measure, divided by that rate, over the fastest peer's time. A
target ratio below `bound` cannot be met with this product engine without doing fewer FLOPs.
The rate itself moves by about ±15% between runs on a shared machine, and so does the bound.

Usage: python bench/compare.py [--sizes S,M,L] [--flows coupling,maf] [--peers plain_jax]
                               [--rounds 2] [--out results.jsonl]
Peers are the script names in shared/bench/peers/ (plain_jax, plain_torch, zuko_bench,
flowjax_bench, nflows_bench, normflows_bench); they run with --quick, which times MAF
sampling at M/L with fewer repetitions.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "peers"))
PY = os.path.expanduser("~/.normflow-peers/venv/bin/python")
MEASURES = ["train_step_ms", "logprob_ms", "sample_ms"]


def run(cmd, cwd=None):
    """Runs cmd, returns (JSON lines, peak RSS in MiB)."""
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        print(f"# {' '.join(cmd)} failed with {p.returncode}", file=sys.stderr)
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return lines, usage.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="S,M,L")
    ap.add_argument("--flows", default="coupling,maf")
    ap.add_argument("--peers", default="plain_jax")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--normflow", default=os.path.join(ROOT, "target", "release", "normflow"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    results = []
    probes = []
    impls = ["normflow"] + a.peers.split(",")
    for size in a.sizes.split(","):
        for r in range(a.rounds):
            order = impls if r % 2 == 0 else impls[::-1]
            for impl in order:
                if impl == "normflow":
                    cmd = [a.normflow, "bench", "--flows", a.flows, "--sizes", size]
                    if size == "L":
                        cmd += ["--reps", "2"]
                    lines, rss = run(cmd + ["--gemm-probe"])
                    run_probes = [l for l in lines if "probe" in l]
                    lines = [l for l in lines if "probe" not in l]
                    for l in run_probes:
                        print(json.dumps(l), flush=True)
                    if run_probes:
                        probes.append(max(l["gflops_all_threads"] for l in run_probes))
                else:
                    lines, rss = run([PY, f"{impl}.py", "--sizes", size, "--flows", a.flows, "--quick", "--quick-budget", "20"], cwd=PEERS)
                for l in lines:
                    l["peak_rss_mib"] = round(rss, 1)
                    l["round"] = r
                    results.append(l)
                    print(json.dumps(l), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.writelines(json.dumps(l) + "\n" for l in results)
    rate = statistics.median(probes) if probes else None
    flop_key = {"train_step_ms": "train_flop", "logprob_ms": "logprob_flop", "sample_ms": "sample_flop"}
    if rate:
        print(f"\nproduct rate for the bound: {rate:.1f} GFLOP/s (median of {len(probes)} runs' all-threads probes: {', '.join(f'{p:.0f}' for p in probes)})")
    print("\n| flow | size | measure | normflow | fastest peer | ratio | bound |\n|---|---|---|---:|---:|---:|---:|")
    for flow in a.flows.split(","):
        for size in a.sizes.split(","):
            def med(impl, key):
                v = [l[key] for l in results if l["impl"].startswith(impl) and l["flow"] == flow and l["size"] == size and l.get(key) is not None]
                return statistics.median(v) if v else None
            for key in MEASURES + ["peak_rss_mib"]:
                ours = med("normflow", key)
                peers = [(med(p, key), p) for p in {l["impl"] for l in results if l["impl"] != "normflow"}]
                peers = [(v, p) for v, p in peers if v is not None]
                if ours is None or not peers:
                    continue
                best, name = min(peers)
                flop = med("normflow", flop_key[key]) if key in flop_key else None
                bound = f"{flop / (rate * 1e6) / best:.2f}" if flop and rate else ""
                print(f"| {flow} | {size} | {key} | {ours:.2f} | {best:.2f} ({name}) | {ours / best:.2f} | {bound} |")


if __name__ == "__main__":
    main()
