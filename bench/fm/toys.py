"""Flow matching on the 2-D toys: test NLL beside this project's NSF at about the same training
time, and a table of sample quality against solver cost, with and without minibatch OT.

Data: the toy sets of ../../../shared/bench/peers/quality.py (imported, so definitions and
seeds are shared with the peer harness): 20,000 train / 10,000 test rows.
Models (all through the CLI, default validation split 0.1):
  nsf     --flow nsf (6 coupling layers, 128x128, 8 bins), --max-steps NSF_STEPS
  fm      --flow fm --hidden 128,128,128,128,128 --lr 5e-3 --time-sampling logit-normal:1.2,1,
          --max-steps FM_STEPS (about NSF's time; the logit-normal times lowered the
          checkerboard's NLL by ~0.1 nats at the same steps, uniform times did better by ~0.01
          on moons and 8gaussians)
  fm-ot   the same with --ot (minibatch OT couplings; each step also solves a 256x256
          assignment, so the same steps take longer)
Test NLL: `normflow eval` (fm: Dormand-Prince at rtol 1e-5). Round trip: encode/decode at
rtol 1e-6. Table: for Euler and RK4 at 4, 8, 16, 32 steps and Dormand-Prince (rtol 1e-5),
5,000 samples' energy distance to 5,000 random test rows (same rows for every cell; two
halves of the test set are 2e-4 apart), the function
evaluations per sample path, the NLL with that solver, and the sampling time.

Usage: python toys.py [--normflow PATH] [--datasets moons,8gaussians,checkerboard]
                      [--nsf-steps 3700] [--fm-steps 7500]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "shared", "bench", "peers"))
import quality  # noqa: E402


def run(args):
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr}")
    return out.stdout


def energy_distance(a, b):
    """Squared energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic)."""
    def mean_dist(p, q):
        total = 0.0
        for i in range(0, len(p), 1000):
            d = np.sqrt(((p[i:i + 1000, None, :] - q[None, :, :]) ** 2).sum(-1))
            total += d.sum()
        return total / (len(p) * len(q))
    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


def write_csv(path, x):
    np.savetxt(path, x, delimiter=",", header="x,y", comments="")


SOLVERS = [("euler", k) for k in (4, 8, 16, 32)] + [("rk4", k) for k in (4, 8, 16, 32)] + [("dopri5", None)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--normflow", default=os.path.join(HERE, "..", "..", "target", "release", "normflow"))
    p.add_argument("--datasets", default="moons,8gaussians,checkerboard")
    p.add_argument("--nsf-steps", type=int, default=3700)
    p.add_argument("--fm-steps", type=int, default=7500)
    a = p.parse_args()
    exe = a.normflow
    work = tempfile.mkdtemp(prefix="fm-toys-")
    rows = []
    for name in a.datasets.split(","):
        train, test, true = quality.toy_data(name)
        true_nll = None if true is None else float(true() if callable(true) else true)
        tr, te = os.path.join(work, f"{name}-train.csv"), os.path.join(work, f"{name}-test.csv")
        write_csv(tr, train)
        write_csv(te, test)
        # Rows are generated in order (e.g. one moon, then the other): a random subset.
        ref = test[np.random.default_rng(0).permutation(len(test))[:5000]]
        write_csv(os.path.join(work, "probe.csv"), test[:2000])
        fm = ["--flow", "fm", "--hidden", "128,128,128,128,128", "--lr", "5e-3", "--time-sampling", "logit-normal:1.2,1",
              "--max-steps", str(a.fm_steps)]
        models = {"nsf": ["--flow", "nsf", "--max-steps", str(a.nsf_steps)], "fm": fm, "fm-ot": fm + ["--ot"]}
        for label, flags in models.items():
            model = os.path.join(work, f"{name}-{label}.safetensors")
            fit = json.loads(run([exe, "train", tr, "-o", model, "--json", "-q", "--seed", "0"] + flags))
            ev = json.loads(run([exe, "eval", model, te, "--json"]))
            row = {"dataset": name, "model": label, "train_seconds": round(fit["seconds"], 1), "steps": fit["steps"],
                   "test_nll": round(ev["nll"], 4), "test_nll_stderr": round(ev["nll_stderr"], 4),
                   "true_nll": None if true_nll is None else round(true_nll, 4)}
            if label.startswith("fm"):
                probe = os.path.join(work, "probe.csv")
                z, back = os.path.join(work, "z.csv"), os.path.join(work, "back.csv")
                run([exe, "encode", model, probe, "-o", z, "--rtol", "1e-6"])
                run([exe, "decode", model, z, "-o", back, "--rtol", "1e-6"])
                row["round_trip_max_abs"] = float(np.abs(np.loadtxt(back, delimiter=",", skiprows=1) - test[:2000]).max())
            print(json.dumps(row), flush=True)
            rows.append(row)
            if not label.startswith("fm"):
                continue
            for solver, steps in SOLVERS:
                flags_s = ["--solver", solver] + (["--steps", str(steps)] if steps else ["--rtol", "1e-5"])
                out = os.path.join(work, "s.csv")
                t0 = time.perf_counter()
                run([exe, "sample", model, "-n", "5000", "--seed", "1", "-o", out] + flags_s)
                seconds = time.perf_counter() - t0
                s = np.loadtxt(out, delimiter=",", skiprows=1)
                ev = json.loads(run([exe, "eval", model, te, "--json"] + flags_s))
                nfe = {"euler": 1, "rk4": 4}.get(solver, 0) * (steps or 0)
                cell = {"dataset": name, "model": label, "solver": solver, "steps": steps, "nfe": nfe or "adaptive",
                        "energy_distance": round(float(energy_distance(s, ref)), 5), "nll": round(ev["nll"], 4),
                        "sample_seconds": round(seconds, 2)}
                print(json.dumps(cell), flush=True)
                rows.append(cell)
    print()
    print("| data | model | train s | steps | test NLL | true NLL | round trip |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "solver" not in r:
            print(f"| {r['dataset']} | {r['model']} | {r['train_seconds']} | {r['steps']} | {r['test_nll']} ± {r['test_nll_stderr']} "
                  f"| {r['true_nll']} | {r.get('round_trip_max_abs', '')} |")
    print()
    print("| data | model | solver | steps | NFE | energy distance | NLL | sample 5000 s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "solver" in r:
            print(f"| {r['dataset']} | {r['model']} | {r['solver']} | {r['steps'] or '-'} | {r['nfe']} | {r['energy_distance']} "
                  f"| {r['nll']} | {r['sample_seconds']} |")


if __name__ == "__main__":
    main()
