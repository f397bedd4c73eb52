"""`normflow serve` beside the peer a Python user would deploy (FastAPI + uvicorn + zuko,
`peer_server.py`), the same model architecture, the same load generator (`normflow loadtest`),
one sitting on one machine.

The model: a MAF (3 transforms, 64×64 hidden) on the ODDS shuttle set's 9 columns (normal
rows), trained briefly by normflow; the peer's zuko MAF has the same shape. Each cell runs the
load generator for --seconds against /v1/models/maf/log-prob with JSON bodies of 1 or 256 rows
from the data at 1, 8 and 64 concurrent clients, first against normflow, then against the peer.

Usage: python bench/serve/compare.py [--seconds 10] [--concurrency 1,8,64] [--rows 1,256]
                                     [--peer-workers 1] [--python ~/.normflow-peers/venv/bin/python]
"""

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "odds", "shuttle.csv.gz"))


def shuttle_normal_rows():
    with gzip.open(DATA, "rt") as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    k = header.index("outlier")
    cols = [c for c in header if c != "outlier"]
    normal = [[r[i] for i in range(len(r)) if i != k] for r in rows if r[k] == "0"]
    return cols, normal


def write_csv(path, cols, rows):
    with open(path, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")


def wait_healthy(url, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"server at {url} did not come up")


def loadtest(normflow, url, data, concurrency, rows, seconds):
    out = subprocess.run([normflow, "loadtest", url, "--data", data, "--concurrency", str(concurrency), "--rows", str(rows),
                          "--duration", f"{seconds}s", "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run_cells(name, normflow, base, data, cells, seconds):
    results = {}
    for c, r in cells:
        rep = loadtest(normflow, f"{base}/v1/models/maf/log-prob", data, c, r, seconds)
        bad = {k: v for k, v in rep["status"].items() if k != "200"}
        print(f"  {name:9s} c={c:<3d} rows={r:<4d} {rep['requests_per_s']:9.0f} req/s  p50 {rep['p50_ms']:8.2f} ms  "
              f"p99 {rep['p99_ms']:8.2f} ms  errors {bad or 0} conn {rep['connection_errors']}", flush=True)
        results[(c, r)] = rep
    return results


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--rows", default="1,256")
    ap.add_argument("--peer-workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--peer-async", action="store_true", help="peer computes on the event loop (async def endpoint)")
    ap.add_argument("--peer-torch-threads", type=int, default=0, help="torch intra-op threads in the peer (0: torch's default)")
    ap.add_argument("--python", default=os.path.expanduser("~/.normflow-peers/venv/bin/python"))
    ap.add_argument("--normflow", default=os.path.join(ROOT, "target", "release", "normflow"))
    ap.add_argument("--port", type=int, default=18480)
    a = ap.parse_args()
    cells = [(int(c), int(r)) for r in a.rows.split(",") for c in a.concurrency.split(",")]
    cols, normal = shuttle_normal_rows()
    with tempfile.TemporaryDirectory() as work:
        train, rows, model = (os.path.join(work, f) for f in ("train.csv", "rows.csv", "maf.safetensors"))
        write_csv(train, cols, normal)
        write_csv(rows, cols, normal[:20000])
        subprocess.run([a.normflow, "train", train, "--flow", "maf", "--layers", "3", "--hidden", "64,64", "--epochs", "3",
                        "-q", "-o", model], check=True)
        print(f"model: MAF, 3 transforms, 64x64 hidden, {len(cols)} columns (shuttle normal rows); "
              f"{a.seconds} s per cell; load generator: normflow loadtest (one thread, keep-alive connections)", flush=True)

        port = a.port
        ours = subprocess.Popen([a.normflow, "serve", f"maf={model}", "--port", str(port)], stderr=subprocess.DEVNULL)
        wait_healthy(f"http://127.0.0.1:{port}/healthz", ours)
        print("normflow serve", flush=True)
        mine = run_cells("normflow", a.normflow, f"http://127.0.0.1:{port}", rows, cells, a.seconds)
        stop(ours)

        env = dict(os.environ, NF_DIM=str(len(cols)), NF_LAYERS="3", NF_HIDDEN="64,64")
        if a.peer_torch_threads:
            env["NF_TORCH_THREADS"] = str(a.peer_torch_threads)
        if a.peer_async:
            env["NF_ASYNC"] = "1"
        peer = subprocess.Popen([a.python, "-m", "uvicorn", "peer_server:app", "--app-dir", HERE, "--port", str(port + 1),
                                 "--workers", str(a.peer_workers), "--log-level", "warning", "--no-access-log"],
                                env=env, stderr=subprocess.DEVNULL)
        wait_healthy(f"http://127.0.0.1:{port + 1}/healthz", peer)
        threads = a.peer_torch_threads or "default"
        style = "async def endpoint" if a.peer_async else "def endpoint on the thread pool"
        print(f"FastAPI + uvicorn ({a.peer_workers} worker(s), {style}, torch threads {threads}) + zuko", flush=True)
        theirs = run_cells("peer", a.normflow, f"http://127.0.0.1:{port + 1}", rows, cells, a.seconds)
        stop(peer)

    print("\n| clients | rows/request | normflow req/s | p50 ms | p99 ms | peer req/s | p50 ms | p99 ms | throughput ratio | p99 ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c, r in cells:
        m, t = mine[(c, r)], theirs[(c, r)]
        print(f"| {c} | {r} | {m['requests_per_s']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {t['requests_per_s']:.0f} | "
              f"{t['p50_ms']:.2f} | {t['p99_ms']:.2f} | {m['requests_per_s'] / t['requests_per_s']:.1f}x | "
              f"{m['p99_ms'] / t['p99_ms']:.3f}x |")


if __name__ == "__main__":
    main()
