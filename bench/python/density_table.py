"""normflow's NSF from Python beside scikit-learn's GaussianMixture and zuko's NSF: fit time and
test log-likelihood on shuttle's normal rows and on the 8x8 digits, one sitting.

Data (../shared/data): shuttle (ODDS) rows with outlier = 0, 9 integer-valued columns; digits,
64 pixel columns with integers 0-16. Both are integers, so every model sees the same continuous
rows: x + u with u ~ U(0, 1) drawn once (seed 0), then standardised with the training split's
mean and standard deviation; log-likelihoods are per row in that space (nats; higher is better).
Split: 80% train / 20% test (seeded permutation).
Models:
  normflow NSF-AR  normflow.NSF(autoregressive=True): 5 spline MADE layers, 8 bins, hidden 128x128
  normflow NSF     normflow.NSF(): the coupling spline flow (the CLI's default), same sizes
  zuko NSF         zuko.flows.NSF(d, transforms=5, bins=8, hidden_features=(128, 128)) (autoregressive)
  GMM-10           sklearn.mixture.GaussianMixture(10, covariance_type="full", random_state=0)
The flows share the budget and protocol: Adam lr 1e-3, batch 256, at most --steps steps; 10% of
the training rows held out, the validation NLL evaluated every epoch, training stopped after 20
evaluations without improvement and the best weights kept (normflow's `fit` does this itself;
the same loop is written out for zuko). Threads: 2 (torch.set_num_threads; normflow's pool).

Usage: ~/.normflow-peers/venv/bin/python bench/python/density_table.py [--steps 3000]
(normflow installed in that venv: pip install ./crates/normflow-py)
"""

import argparse
import gzip
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
BATCH, LR, LAYERS, HIDDEN, BINS, PATIENCE = 256, 1e-3, 5, 128, 8, 20


def load(name):
    if name == "shuttle":
        with gzip.open(os.path.join(DATA, "odds", "shuttle.csv.gz"), "rt") as f:
            raw = np.loadtxt(f, delimiter=",", skiprows=1)
        x = raw[raw[:, -1] == 0, :-1]
    else:
        with gzip.open(os.path.join(DATA, "digits", "digits.csv.gz"), "rt") as f:
            x = np.loadtxt(f, delimiter=",")[:, :-1]
    rng = np.random.default_rng(0)
    x = x + rng.uniform(size=x.shape)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    tr, te = x[order[:cut]], x[order[cut:]]
    mu, sd = tr.mean(0), tr.std(0)
    sd[sd == 0] = 1.0
    return ((tr - mu) / sd).astype(np.float32), ((te - mu) / sd).astype(np.float32)


def run_normflow(tr, te, steps, autoregressive):
    import normflow
    est = normflow.NSF(layers=LAYERS, hidden=(HIDDEN, HIDDEN), bins=BINS, autoregressive=autoregressive, max_steps=steps,
                       epochs=10**6, lr=LR, batch_size=BATCH, val_frac=0.1, patience=PATIENCE, dequantize=[],
                       standardize=False, whiten=False)
    t = time.perf_counter()
    est.fit(tr)
    return time.perf_counter() - t, float(np.mean(est.score_samples(te)))


def run_zuko(tr, te, steps):
    import copy

    import torch
    import zuko
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    order = rng.permutation(len(tr))
    n_val = int(round(0.1 * len(tr)))
    train, val = torch.from_numpy(tr[order[n_val:]]), torch.from_numpy(tr[order[:n_val]])
    flow = zuko.flows.NSF(tr.shape[1], transforms=LAYERS, bins=BINS, hidden_features=(HIDDEN, HIDDEN))
    opt = torch.optim.Adam(flow.parameters(), lr=LR)
    per_epoch = -(-len(train) // BATCH)
    best, best_state, waited = float("inf"), copy.deepcopy(flow.state_dict()), 0
    t = time.perf_counter()
    for step in range(1, steps + 1):
        loss = -flow().log_prob(train[rng.integers(0, len(train), BATCH)]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % per_epoch == 0 or step == steps:
            with torch.no_grad():
                v = -float(flow().log_prob(val).mean())
            if v < best:
                best, best_state, waited = v, copy.deepcopy(flow.state_dict()), 0
            else:
                waited += 1
                if waited >= PATIENCE:
                    break
    flow.load_state_dict(best_state)
    seconds = time.perf_counter() - t
    with torch.no_grad():
        lp = torch.cat([flow().log_prob(c) for c in torch.from_numpy(te).split(4096)])
    return seconds, float(lp.double().mean())


def run_gmm(tr, te):
    from sklearn.mixture import GaussianMixture
    t = time.perf_counter()
    gmm = GaussianMixture(10, covariance_type="full", random_state=0).fit(tr.astype(np.float64))
    return time.perf_counter() - t, float(np.mean(gmm.score_samples(te.astype(np.float64))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--datasets", default="shuttle,digits")
    a = ap.parse_args()
    rows = []
    for name in a.datasets.split(","):
        tr, te = load(name)
        for model, run in [("normflow NSF-AR", lambda: run_normflow(tr, te, a.steps, True)),
                           ("normflow NSF", lambda: run_normflow(tr, te, a.steps, False)),
                           ("zuko NSF", lambda: run_zuko(tr, te, a.steps)),
                           ("GMM-10", lambda: run_gmm(tr, te))]:
            seconds, ll = run()
            row = {"data": name, "train_rows": len(tr), "test_rows": len(te), "dim": tr.shape[1], "model": model,
                   "fit_seconds": round(seconds, 2), "test_loglik": round(ll, 4)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    print(f"| data | model | fit s | test log-likelihood (nats/row) |")
    print("|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['data']} ({r['train_rows']}+{r['test_rows']} rows, d={r['dim']}) | {r['model']} | {r['fit_seconds']} | {r['test_loglik']} |")


if __name__ == "__main__":
    main()
