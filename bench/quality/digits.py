"""Test bits/dim of normflow's NSF on scikit-learn's 8×8 digits, beside zuko's NSF from
../../../shared/bench/peers/quality.py (same split, same budget).

Split: quality.py's (load_digits, permutation with numpy seed 0: 1257 train / 180 validation /
360 test). normflow trains on the 1437 train+validation rows and holds out 12.5% (≈180 rows) for
early stopping itself (its own random split of those rows).
Model: `--flow nsf-ar` (zuko's NSF is autoregressive) or `nsf`, 5 layers, hidden 256,256, 8 bins.
Preprocessing inside the model, as quality.py does outside it: every pixel is dequantised
(v + u, u ~ U(0, 1)), bounded to [0, 17] with a logit (α = 1e-6), and standardised on the
training rows; `normflow eval` then reports the NLL of the dequantised pixels directly (all
Jacobians included, one fixed noise draw), so bits/dim = NLL / (64 ln 2) as in quality.py.
Budget: Adam lr 1e-3 cosine to 0 over 5000 steps, batch 256, best validation checkpoint
(evaluated every epoch of ~5 steps, patience 50 epochs).

With --flow fm the continuous flow (flow matching, velocity field --hidden, default 256,256,256,
lr --lr, cosine to 0 over --steps, batch 256) trains on the same preprocessing (dequantised,
bounded, standardised per batch) and `normflow eval` reports its exact NLL (Dormand–Prince,
rtol 1e-5, exact trace).

Usage: python digits.py [--flow nsf-ar|nsf|fm] [--steps 5000] [--hidden 256,256,256] [--lr 1e-3] [--normflow PATH]
"""

import argparse
import json
import math
import os
import subprocess
import tempfile
import time

import numpy as np
from sklearn.datasets import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flow", default="nsf-ar")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--hidden", default=None, help="hidden widths (default 256,256 for the discrete flows, 256,256,256 for fm)")
    ap.add_argument("--lr", default="1e-3")
    ap.add_argument("--normflow", default=os.path.join(HERE, "..", "..", "target", "release", "normflow"))
    a = ap.parse_args()
    v = load_digits().data.astype(np.int64)
    v = v[np.random.default_rng(0).permutation(len(v))]
    train, test = v[:1437], v[1437:]
    with tempfile.TemporaryDirectory() as work:
        tr, te, model = (os.path.join(work, f) for f in ("train.csv", "test.csv", "model.safetensors"))
        np.savetxt(tr, train, fmt="%d", delimiter=",")
        np.savetxt(te, test, fmt="%d", delimiter=",")
        cols = ",".join(str(i) for i in range(1, 65))
        bounds = ",".join(["0:17"] * 64)
        if a.flow == "fm":
            cmd = [a.normflow, "train", tr, "--flow", "fm", "--hidden", a.hidden or "256,256,256",
                   "--dequantize", cols, "--bounds", bounds, "--max-steps", str(a.steps), "--lr", a.lr,
                   "--val-frac", str(180 / 1437), "--json", "-q", "-o", model]
        else:
            cmd = [a.normflow, "train", tr, "--flow", a.flow, "--layers", "5", "--hidden", a.hidden or "256,256",
                   "--dequantize", cols, "--bounds", bounds, "--max-steps", str(a.steps), "--epochs", "100000",
                   "--lr", a.lr, "--cosine", "--val-frac", str(180 / 1437), "--patience", "50", "--json", "-q", "-o", model]
        summary = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        started = time.time()
        ev = json.loads(subprocess.run([a.normflow, "eval", model, te, "--json"], check=True, capture_output=True, text=True).stdout)
        eval_s = time.time() - started
    out = {"lib": "normflow", "flow": a.flow, "dataset": "digits", "test_nll_pixel_nats": ev["nll"],
           "bits_per_dim": ev["nll"] / (64 * math.log(2)), "steps": summary["steps"], "stopped": summary["stopped"],
           "train_s": round(summary["seconds"], 1), "eval_s": round(eval_s, 1),
           "zuko_nsf_bits_per_dim (quality_results.txt)": 2.0150732697280485}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
