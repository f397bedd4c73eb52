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

The `products` column is the ratio normflow would reach if everything but its matrix products
took no time, with the products at the rate they ran in that very measure (`normflow bench`
times them inside each timed run: all threads' time in products over the thread count). The gap
between `products` and `ratio` is the element-wise work, copies and waiting; a target below
`products` needs faster products at the workload's own shapes.

The `target` column is the issue's goal for the cell (training 0.5 at S and M, 0.6 at L;
log-prob and sampling 0.7; peak memory 1.0). `needs` is the product rate in GFLOP/s that meeting a missed target
requires: the FLOPs over the target time (target × the fastest peer's time). It is marked
`> product` above the product rate, and `> peak` above the multiply-add peak (`normflow bench
--gemm-probe` also measures multiply-adds on registers only, with no memory traffic): no f32
implementation doing those FLOPs on this machine can reach such a rate.

`--products f32,bf16x3` runs normflow once per product precision in every round
(`NORMFLOW_PRODUCTS`; `bf16x3`, normflow's default, is the split-bf16 AMX products, see
crates/normflow/src/engine/split_product.rs; `f32` keeps every product in f32) and prints one
table per precision, the split one labelled `normflow-bf16x3`. Without the flag normflow runs
at its default. The peers run at their defaults (f32 products on the CPU).

Usage: python bench/compare.py [--sizes S,M,L] [--flows coupling,maf] [--peers plain_jax]
                               [--rounds 2] [--products bf16x3] [--out results.jsonl]
       python bench/compare.py --from bench/results/FILE.txt --sizes S,M --flows coupling,maf,nsf
(the second prints the table of a committed log again, with this script's columns)
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
# Below this fraction of the multiply-add peak, the product probe says the machine's memory
# hierarchy is in a slow phase (fast phases read about 0.88 on the development machine, slow
# ones 0.6-0.75).
SLOW_PHASE = 0.8


def label(products):
    """normflow's name in the log and tables when its products run at precision `products`."""
    return "normflow" if products == "f32" else f"normflow-{products}"


def run(cmd, cwd=None, env=None):
    """Runs cmd, returns (JSON lines, peak RSS in MiB)."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        print(f"# {' '.join(cmd)} failed with {p.returncode}", file=sys.stderr)
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return lines, usage.ru_maxrss / 1024.0


def measure(a):
    """Runs every implementation, alternating, and returns the JSON lines in the order printed:
    results with their peak RSS and round, and each normflow run's probes before its results."""
    lines_out = []
    impls = ["normflow"] + a.peers.split(",")
    for size in a.sizes.split(","):
        for r in range(a.rounds):
            order = impls if r % 2 == 0 else impls[::-1]
            for impl in order:
                if impl == "normflow":
                    cmd = [a.normflow, "bench", "--flows", a.flows, "--sizes", size, "--gemm-probe"]
                    if size == "L":
                        cmd += ["--reps", "2"]
                    lines = []
                    for products in a.products.split(","):
                        got, rss = run(cmd, env=dict(os.environ, NORMFLOW_PRODUCTS=products))
                        for l in got:
                            l["impl"] = label(products)
                            if "probe" not in l:
                                l["peak_rss_mib"] = round(rss, 1)
                                l["round"] = r
                        lines += got
                else:
                    lines, rss = run([PY, f"{impl}.py", "--sizes", size, "--flows", a.flows, "--quick", "--quick-budget", "20"], cwd=PEERS)
                for l in lines:
                    if "probe" not in l and "round" not in l:
                        l["peak_rss_mib"] = round(rss, 1)
                        l["round"] = r
                    lines_out.append(l)
                    print(json.dumps(l), flush=True)
    return lines_out


def read_log(path):
    """The JSON lines of an earlier run's printed log (a committed bench/results file)."""
    with open(path) as f:
        return [json.loads(l) for l in f if l.startswith("{")]


def probe_rates(lines, ours="normflow"):
    """(product rate, multiply-add peak) in GFLOP/s: the medians over the runs of normflow
    labelled `ours` of each run's best all-threads gemm shape and of its multiply-add probe; a
    run's probes are consecutive."""
    # The split-bf16 products' limit is the tile unit's (`split_multiply_add`, in f32 work
    # replaced), not the f32 multiply-adds'.
    mine = [l for l in lines if l.get("impl", "normflow") == ours]
    peak_probe = "split_multiply_add" if any(l.get("probe") == "split_multiply_add" for l in mine) else "multiply_add"
    gemm_runs, peaks, current = [], [], None
    for l in mine:
        if l.get("probe") == "gemm":
            if current is None:
                current = []
                gemm_runs.append(current)
            current.append(l["gflops_all_threads"])
        else:
            if l.get("probe") not in ("multiply_add", "split_multiply_add"):
                current = None
            if l.get("probe") == peak_probe:
                peaks.append(l["gflops_all_threads"])
    probes = [max(r) for r in gemm_runs]
    rate = statistics.median(probes) if probes else None
    peak = statistics.median(peaks) if peaks else None
    if rate:
        print(f"\nproduct rate for the bound: {rate:.1f} GFLOP/s (median of {len(probes)} runs' all-threads probes: {', '.join(f'{p:.0f}' for p in probes)})")
    if peak:
        print(f"{peak_probe.replace('_', '-')} peak: {peak:.1f} GFLOP/s (median of all-threads probes: {', '.join(f'{p:.0f}' for p in peaks)})")
    if rate and peak and peak_probe == "multiply_add" and rate < SLOW_PHASE * peak:
        print(f"slow phase: the product rate is {rate / peak:.0%} of the peak (about 88% in fast phases); "
              "ratios move with the phase, so compare this run only with runs in the same phase")
    return rate, peak


def target_ratio(key, size):
    """The issue's target ratio normflow / fastest peer for a measure at a size."""
    if key == "peak_rss_mib":
        return 1.0
    if key == "train_step_ms":
        return 0.6 if size == "L" else 0.5
    return 0.7


def print_table(lines, flows, sizes, ours="normflow"):
    """The table of medians over rounds, ratios, targets, bounds and needed rates, for the
    normflow runs labelled `ours`."""
    results = [l for l in lines if "probe" not in l]
    if not any(l["impl"] == ours for l in results):
        return
    print(f"\n## {ours}")
    rate, peak = probe_rates(lines, ours)
    flop_key = {"train_step_ms": "train_flop", "logprob_ms": "logprob_flop", "sample_ms": "sample_flop"}
    product_key = {"train_step_ms": "train_product_ms", "logprob_ms": "logprob_product_ms", "sample_ms": "sample_product_ms"}
    print("\n| flow | size | measure | normflow | fastest peer | ratio | target | bound | products | needs GFLOP/s |\n|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for flow in flows:
        for size in sizes:
            def med(impl, key):
                v = [l[key] for l in results if l["impl"] == impl and l["flow"] == flow and l["size"] == size and l.get(key) is not None]
                return statistics.median(v) if v else None
            for key in MEASURES + ["peak_rss_mib"]:
                mine = med(ours, key)
                peers = [(med(p, key), p) for p in {l["impl"] for l in results if not l["impl"].startswith("normflow")}]
                peers = [(v, p) for v, p in peers if v is not None]
                if mine is None or not peers:
                    continue
                best, name = min(peers)
                flop = med(ours, flop_key[key]) if key in flop_key else None
                bound = f"{flop / (rate * 1e6) / best:.2f}" if flop and rate else ""
                product_ms = med(ours, product_key[key]) if key in product_key else None
                products = f"{product_ms / best:.2f}" if product_ms else ""
                target = target_ratio(key, size)
                needs = ""
                if flop and mine / best > target:
                    gflops = flop / (target * best * 1e6)
                    needs = f"{gflops:.0f}"
                    if peak and gflops > peak:
                        needs += " (> peak)"
                    elif rate and gflops > rate:
                        needs += " (> product)"
                print(f"| {flow} | {size} | {key} | {mine:.2f} | {best:.2f} ({name}) | {mine / best:.2f} | {target:.1f} | {bound} | {products} | {needs} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="S,M,L")
    ap.add_argument("--flows", default="coupling,maf")
    ap.add_argument("--peers", default="plain_jax")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--normflow", default=os.path.join(ROOT, "target", "release", "normflow"))
    ap.add_argument("--products", default="bf16x3", help="normflow's product precisions, each run in every round (bf16x3, its default, and f32)")
    ap.add_argument("--out", default=None, help="also write the JSON lines to this file")
    ap.add_argument("--from", dest="log", default=None, help="print the table of an earlier run's log instead of measuring")
    a = ap.parse_args()
    lines = read_log(a.log) if a.log else measure(a)
    if a.out:
        with open(a.out, "w") as f:
            f.writelines(json.dumps(l) + "\n" for l in lines)
    for ours in sorted({l["impl"] for l in lines if l.get("impl", "").startswith("normflow")}):
        print_table(lines, a.flows.split(","), a.sizes.split(","), ours)


if __name__ == "__main__":
    main()
