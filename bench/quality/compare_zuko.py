"""Test NLL of normflow's RealNVP, MAF and NSF beside zuko's, same data, architecture and budget.

Data: the 2-D toy sets of ../../../shared/bench/peers/quality.py (imported from there, so the
definitions and seeds are identical: 20,000 train / 10,000 test rows).
Models: 5 transforms, conditioners with two hidden layers of 128 (zuko: RealNVP / MAF / NSF
(bins=8, autoregressive, zuko's default) with hidden_features=(128, 128); normflow: --flow
realnvp|maf|nsf|nsf-ar --layers 5 --hidden 128,128; nsf is normflow's coupling spline flow).
Budget: Adam, lr 1e-3 with cosine decay to 0, batch 256, --steps steps (default 5000).
zuko draws batches with replacement (as quality.py); normflow shuffles epochs (its `fit`) and
uses no validation split here (--val-frac 0), so both see the same rows for the same steps.
zuko's flows have no standardisation layer, so normflow runs with --no-standardize here (same
architecture); --standardize keeps normflow's default data standardisation instead.

Each (library, flow, data set) is trained with every seed in --seeds (torch seed / batch order
for zuko, --seed for normflow); the table reports the mean and the median over seeds, since one
unlucky seed can put a test point in a region where a model's density collapses.

Usage: python compare_zuko.py [--steps 5000] [--datasets moons,8gaussians] [--flows realnvp,maf]
                              [--seeds 0,1,2] [--normflow PATH]
Prints one JSON line per run and a Markdown table.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "bench", "peers"))
sys.path.insert(0, PEERS)
from quality import toy_data  # noqa: E402

BATCH, LR, HIDDEN, LAYERS = 256, 1e-3, 128, 5


def zuko_nll(kind, tr, te, steps, threads, seed):
    import torch
    import zuko
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if kind == "nsf":
        flow = zuko.flows.NSF(2, transforms=LAYERS, bins=8, hidden_features=(HIDDEN, HIDDEN))
    else:
        cls = {"realnvp": zuko.flows.RealNVP, "maf": zuko.flows.MAF}[kind]
        flow = cls(2, transforms=LAYERS, hidden_features=(HIDDEN, HIDDEN))
    opt = torch.optim.Adam(flow.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    rng = np.random.default_rng(123 + seed)
    for _ in range(steps):
        loss = -flow().log_prob(torch.from_numpy(tr[rng.integers(0, len(tr), BATCH)])).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        d = flow()
        lp = torch.cat([d.log_prob(c) for c in torch.from_numpy(te).split(4096)])
    return -float(lp.double().mean())


def normflow_nll(binary, kind, tr, te, steps, workdir, seed, standardize):
    trp, tep, model = (os.path.join(workdir, f) for f in ("train.npy", "test.npy", f"{kind}.safetensors"))
    np.save(trp, tr)
    np.save(tep, te)
    subprocess.run([binary, "train", trp, "--flow", kind, "--layers", str(LAYERS), "--hidden", f"{HIDDEN},{HIDDEN}",
                    *([] if standardize else ["--no-standardize"]), "--max-steps", str(steps), "--epochs", "100000", "--lr", str(LR), "--cosine",
                    "--batch-size", str(BATCH), "--val-frac", "0", "--patience", "0", "--seed", str(seed), "-q", "-o", model],
                   check=True, stderr=subprocess.DEVNULL)
    out = subprocess.run([binary, "eval", model, tep, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["nll"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--datasets", default="moons,8gaussians")
    ap.add_argument("--flows", default="realnvp,maf")
    ap.add_argument("--libs", default="normflow,zuko")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--standardize", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--normflow", default=os.path.join(HERE, "..", "..", "target", "release", "normflow"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for ds in a.datasets.split(","):
            tr, te, true_nll = toy_data(ds)
            for kind in a.flows.split(","):
                for seed in [int(v) for v in a.seeds.split(",")]:
                    for lib in a.libs.split(","):
                        zkind = "nsf" if kind.startswith("nsf") else kind
                        if lib == "zuko" and any(r["lib"] == "zuko" and r["flow"] == zkind and r["dataset"] == ds and r["seed"] == seed for r in rows):
                            continue
                        t0 = time.perf_counter()
                        if lib == "zuko":
                            nll = zuko_nll(zkind, tr, te, a.steps, a.threads, seed)
                        else:
                            nll = normflow_nll(a.normflow, kind, tr, te, a.steps, work, seed, a.standardize)
                        r = {"lib": lib, "flow": zkind if lib == "zuko" else kind, "dataset": ds, "seed": seed, "steps": a.steps,
                             "test_nll_nats": nll, "true_nll_nats": true_nll, "wall_s": round(time.perf_counter() - t0, 1)}
                        rows.append(r)
                        print(json.dumps(r), flush=True)
    print("\n| data set | flow | normflow mean (median) | zuko mean (median) | mean diff | true |\n|---|---|---:|---:|---:|---:|")
    for ds in a.datasets.split(","):
        for kind in a.flows.split(","):
            zkind = "nsf" if kind.startswith("nsf") else kind
            n = [r["test_nll_nats"] for r in rows if r["lib"] == "normflow" and r["flow"] == kind and r["dataset"] == ds]
            z = [r["test_nll_nats"] for r in rows if r["lib"] == "zuko" and r["flow"] == zkind and r["dataset"] == ds]
            t = next((r["true_nll_nats"] for r in rows if r["dataset"] == ds), None)
            if n and z:
                print(f"| {ds} | {kind} | {np.mean(n):.4f} ({np.median(n):.4f}) | {np.mean(z):.4f} ({np.median(z):.4f}) "
                      f"| {np.mean(n) - np.mean(z):+.4f} | {t if t is None else round(t, 4)} |")


if __name__ == "__main__":
    main()
