"""Test AUROC of `normflow anomaly` on the ODDS shuttle and pima sets with pyod's protocol:
a random 60% of rows for training (outliers included, unlabelled: the detector never sees the
labels, as in pyod's benchmark), the other 40% for testing, 10 seeds, mean test AUROC.

Integer-valued columns are dequantised (--dequantize); every column is standardised inside the
model. Published results (pyod, same protocol) are printed beside ours.

With --normal-only the flow is fitted on the training split's normal rows only (the labels are
used to drop the outliers: a semi-supervised protocol, not pyod's); the test split is unchanged.

Without labels `anomaly fit` first drops the gross outliers of a robust Gaussian (at most the
--contamination share; see its --trim) and smooths the training rows with Gaussian noise
(--smoothing auto), so that the outliers among the training rows do not shape the density.

Usage: python bench/anomaly/odds.py [--datasets shuttle,pima] [--seeds 10] [--flow nsf]
                                    [--epochs 200] [--contamination 0.1] [--normal-only] [--normflow PATH]
"""

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "odds"))
PUBLISHED = {"shuttle": "IForest 0.997, OCSVM 0.992, PCA 0.990, MCD 0.990",
             "pima": "KNN 0.705, HBOS 0.698, MCD 0.672, IForest 0.668"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="shuttle,pima")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--flow", default="nsf", help="flow architecture (the CLI's default: nsf)")
    ap.add_argument("--epochs", type=int, default=200, help="epoch limit (the CLI's default: 200)")
    ap.add_argument("--normal-only", action="store_true")
    ap.add_argument("--no-dequantize", action="store_true", help="treat integer columns as continuous")
    ap.add_argument("--contamination", type=float, default=0.1,
                    help="expected outlier fraction: the threshold quantile and, without labels, the share of its own "
                         "highest-NLL rows the fit drops before fitting again (pyod's default is 0.1)")
    ap.add_argument("--fit-args", default="", help="more flags for `normflow anomaly fit`, space-separated")
    ap.add_argument("--normflow", default=os.path.join(HERE, "..", "..", "target", "release", "normflow"))
    a = ap.parse_args()
    for ds in a.datasets.split(","):
        path = os.path.join(DATA, f"{ds}.csv.gz" if ds == "shuttle" else f"{ds}.csv")
        table = np.genfromtxt(path, delimiter=",", names=True)
        cols = [c for c in table.dtype.names if c != "outlier"]
        x = np.stack([table[c] for c in cols], 1)
        y = table["outlier"]
        integer_cols = [str(i + 1) for i in range(len(cols)) if np.all(x[:, i] == np.round(x[:, i]))]
        aucs = []
        for seed in range(a.seeds):
            perm = np.random.default_rng(seed).permutation(len(x))
            n_tr = int(0.6 * len(x))
            with tempfile.TemporaryDirectory() as work:
                tr, te, model = (os.path.join(work, f) for f in ("train.csv", "test.csv", "m.safetensors"))
                header = ",".join(cols + ["outlier"])
                for p, idx in ((tr, perm[:n_tr]), (te, perm[n_tr:])):
                    np.savetxt(p, np.column_stack([x[idx], y[idx]]), delimiter=",", header=header, comments="", fmt="%.10g")
                cmd = [a.normflow, "anomaly", "fit", tr, "--columns", ",".join(cols), "--flow", a.flow, "--epochs", str(a.epochs),
                       "--seed", str(seed), "--contamination", str(a.contamination), "-q", "-o", model]
                if integer_cols and not a.no_dequantize:
                    cmd += ["--dequantize", ",".join(integer_cols)]
                cmd += a.fit_args.split()
                if a.normal_only:
                    cmd += ["--label-column", "outlier"]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                ev = json.loads(subprocess.run([a.normflow, "anomaly", "eval", model, te, "--label-column", "outlier", "--json"],
                                               check=True, capture_output=True, text=True).stdout)
            aucs.append(ev["auroc"])
            print(json.dumps({"dataset": ds, "seed": seed, "auroc": ev["auroc"], "average_precision": ev["average_precision"]}), flush=True)
        print(f"# {ds}: normflow {a.flow} mean test AUROC {np.mean(aucs):.4f} ± {np.std(aucs):.4f} over {len(aucs)} seeds "
              f"(dequantised columns: {len(integer_cols)} of {len(cols)}; training saw outliers: {not a.normal_only}); "
              f"published: {PUBLISHED[ds]}", flush=True)


if __name__ == "__main__":
    main()
