"""Lower bounds on normflow/peer ratios: the matrix-product FLOPs of each measure of
../shared/bench/WORKLOAD.md at the machine's measured product throughput, divided by the
fastest peer's time. A ratio target below this bound cannot be met by any implementation.

Usage: python3 bench/bound.py RESULTS PROBE_GFLOPS
  RESULTS       output of bench/compare.py (its JSON lines are read; other lines are skipped)
  PROBE_GFLOPS  'gflops_all_threads' of `normflow bench --gemm-probe` (first line)

FLOPs counted: 2·in·out per linear layer and row (masked MADE layers counted dense, as the peers
run them); a training step is 3 forward passes' worth (forward, input and weight gradients).
MAF sampling is skipped (its cost depends on the sampling algorithm)."""
import json, sys, statistics
sizes = {"S": (8, 5, 64, 256), "M": (32, 5, 256, 512), "L": (64, 10, 512, 1024)}
def mlp(i, h, o): return 2 * (i * h + h * h + h * o)
def fwd_per_row(flow, d, h):
    if flow == "coupling": return mlp(d // 2, h, d)
    if flow == "maf": return mlp(d, h, 2 * d)
    return mlp(d // 2, h, (d // 2) * 23)
probe = float(sys.argv[2])
res = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for flow in ["coupling", "maf", "nsf"]:
    for size, (d, k, h, b) in sizes.items():
        f = fwd_per_row(flow, d, h) * k
        need = {"train_step_ms": 3 * f * b, "logprob_ms": f * 16384, "sample_ms": f * 16384}
        for m, flops in need.items():
            if flow == "maf" and m == "sample_ms":
                continue
            peers = {}
            for l in res:
                if l["impl"] != "normflow" and l["flow"] == flow and l["size"] == size and l.get(m):
                    peers.setdefault(l["impl"], []).append(l[m])
            if not peers: continue
            best = min(statistics.median(v) for v in peers.values())
            t = flops / (probe * 1e9) * 1e3
            print(f"{flow:8s} {size} {m:14s} products {flops/1e9:7.3f} GFLOP -> >= {t:8.2f} ms at {probe:.0f} GFLOP/s; fastest peer {best:8.2f} ms; best possible ratio {t/best:.2f}")
