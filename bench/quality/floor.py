"""The quality floor: with default flags, normflow's test NLL beside a full-covariance Gaussian
fitted on the same training rows, and beside the previous defaults (`--no-whiten`).

Tables: scikit-learn's breast_cancer, wine, diabetes and iris (bundled with scikit-learn; the
CSVs are generated here, never committed), and digits, pima and shuttle from ../shared/data.
Protocol: a seeded 80/20 split; columns constant on the training rows are dropped for every model
(the Gaussian included); label columns are dropped. normflow trains with `normflow train` and its
default flags (plus `--flow`), then `normflow log-prob` scores the test rows. The Gaussian is the
maximum-likelihood mean and covariance of the training rows.

For each table and model the log prints the mean test NLL (nats) and the worst test row's NLL
beside that same row's Gaussian NLL (a tail blow-up shows as a worst row far above its Gaussian
NLL). On tables with integer-valued columns, which normflow dequantises by default, the
Gaussian of the dequantised rows is printed too, and the worst rows are compared with it.

Usage: python floor.py [--tables breast_cancer,wine,...] [--flows realnvp,maf,nsf,nsf-ar]
                       [--seed 0] [--previous] [--normflow PATH]
Needs numpy and scikit-learn.
"""

import argparse
import gzip
import os
import subprocess
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "data")


def load(name):
    """The table's feature columns as a float64 array."""
    if name in ("breast_cancer", "wine", "diabetes", "iris"):
        import sklearn.datasets as ds

        return getattr(ds, f"load_{name}")().data.astype(np.float64)
    if name == "digits":
        with gzip.open(os.path.join(SHARED, "digits", "digits.csv.gz"), "rt") as f:
            return np.loadtxt(f, delimiter=",")[:, :64]
    path = os.path.join(SHARED, "odds", "shuttle.csv.gz" if name == "shuttle" else "pima.csv")
    return np.loadtxt(path, delimiter=",", skiprows=1)[:, :-1]


def gaussian_nll(train, test):
    mu = train.mean(0)
    cov = np.cov(train, rowvar=False, bias=True)
    sign, logdet = np.linalg.slogdet(cov)
    diff = test - mu
    maha = np.einsum("ij,ij->i", diff @ np.linalg.inv(cov), diff)
    return 0.5 * (maha + logdet + train.shape[1] * np.log(2 * np.pi))


def normflow_nll(exe, work, train_csv, test_csv, flow, extra):
    model = os.path.join(work, "model.safetensors")
    t = time.time()
    subprocess.run([exe, "train", train_csv, "--flow", flow, "-q", "-o", model, *extra], check=True, capture_output=True)
    secs = time.time() - t
    out = subprocess.run([exe, "log-prob", model, test_csv], check=True, capture_output=True, text=True).stdout
    return -np.array([float(v) for v in out.split()[1:]]), secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", default="breast_cancer,wine,diabetes,iris,digits,pima,shuttle")
    ap.add_argument("--flows", default="realnvp,maf,nsf,nsf-ar")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--previous", action="store_true", help="also run the previous defaults (--no-whiten)")
    ap.add_argument("--normflow", default=os.path.join(HERE, "..", "..", "target", "release", "normflow"))
    a = ap.parse_args()
    print(f"# python {' '.join(os.sys.argv)}")
    print(f"{'table':14s} {'model':22s} {'test NLL':>10s} {'worst row':>10s} {'its Gauss':>10s} {'train s':>8s}")
    for name in a.tables.split(","):
        x = load(name)
        idx = np.random.default_rng(a.seed).permutation(len(x))
        cut = int(round(0.8 * len(x)))
        train, test = x[idx[:cut]], x[idx[cut:]]
        keep = train.std(0) > 0
        train, test = train[:, keep], test[:, keep]
        g = gaussian_nll(train, test)
        print(f"{name:14s} {'gaussian':22s} {g.mean():10.3f} {g.max():10.3f} {g.max():10.3f} {0:8.1f}  "
              f"({len(train)} train, {len(test)} test rows, {train.shape[1]} columns)", flush=True)
        # normflow dequantises integer-valued columns by default: its NLL is
        # then that of v + u, u ~ U(0, 1); the Gaussian of the dequantised rows is its peer.
        ints = [j for j in range(train.shape[1]) if np.all(train[:, j] == np.round(train[:, j]))]
        if ints:
            rng = np.random.default_rng(a.seed + 1)
            noisy = lambda v: v + np.where(np.isin(np.arange(v.shape[1]), ints), rng.random(v.shape), 0.0)
            g = gaussian_nll(noisy(train), noisy(test))
            print(f"{name:14s} {'gaussian (dequantised)':22s} {g.mean():10.3f} {g.max():10.3f} {g.max():10.3f} {0:8.1f}  "
                  f"({len(ints)} integer-valued columns)", flush=True)
        with tempfile.TemporaryDirectory() as work:
            tr, te = os.path.join(work, "train.csv"), os.path.join(work, "test.csv")
            header = ",".join(f"c{j}" for j in range(train.shape[1]))
            np.savetxt(tr, train, delimiter=",", header=header, comments="", fmt="%.9g")
            np.savetxt(te, test, delimiter=",", header=header, comments="", fmt="%.9g")
            variants = [("", [])] + ([(" (previous)", ["--no-whiten"])] if a.previous else [])
            for flow in a.flows.split(","):
                for label, extra in variants:
                    try:
                        nll, secs = normflow_nll(a.normflow, work, tr, te, flow, extra)
                    except subprocess.CalledProcessError as e:
                        print(f"{name:14s} {flow + label:22s} failed: {e.stderr.decode().strip()}", flush=True)
                        continue
                    w = int(np.argmax(nll))
                    print(f"{name:14s} {flow + label:22s} {nll.mean():10.3f} {nll[w]:10.3f} {g[w]:10.3f} {secs:8.1f}", flush=True)


if __name__ == "__main__":
    main()
