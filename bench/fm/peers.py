"""The continuous flow side by side with the peers a user would pick, same network, data and
tolerance, on this machine in one sitting (`normflow bench --flows fm` is the normflow side):

- training step: torchcfm's TargetConditionalFlowMatcher (Lipman et al.'s straight path with
  sigma_min = 1e-4, the path normflow uses) on a torch MLP like normflow's velocity field:
  inputs x and the time features t, sin(pi 2^k t), cos(pi 2^k t) for k < 4; two hidden layers
  of H with SiLU; output d. Adam lr 1e-3, batch B. 10 warm-up steps, median of 50.
- exact log-density and sampling: zuko's CNF (exact trace, its own Dormand-Prince solver,
  atol 1e-6, rtol 1e-5: its defaults, which normflow's side also uses) with the same widths
  and activation (zuko's time features: sin/cos(pi k t), k = 1..4), its field first trained
  for 300 flow-matching steps like normflow's, then log_prob and sample of 4,096 rows under
  no_grad, median of 3.

Data: the common workload (shared/bench/WORKLOAD.md), 16,384 rows; sizes S (d 8, H 64,
B 256) and M (d 32, H 256, B 512). Two torch threads.

Usage: python peers.py [--sizes S,M] [--reps 3]
Prints one JSON line per (peer, size).
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import zuko
from torchcfm.conditional_flow_matching import TargetConditionalFlowMatcher

SIZES = {"S": (8, 64, 256), "M": (32, 256, 512)}
ROWS, EVAL_ROWS, TRAIN_STEPS = 16384, 4096, 300


def workload(d):
    g = torch.Generator().manual_seed(12345)
    x = torch.randn(ROWS, d, generator=g)
    for j in range(1, d):
        x[:, j] += 0.5 * torch.sin(x[:, j - 1])
    return x


class Field(nn.Module):
    """normflow's velocity field: MLP on [x, t, sin(pi 2^k t), cos(pi 2^k t)]."""

    def __init__(self, d, h, freqs=4):
        super().__init__()
        self.register_buffer("w", math.pi * 2.0 ** torch.arange(freqs))
        self.net = nn.Sequential(nn.Linear(d + 1 + 2 * freqs, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, d))

    def forward(self, t, x):
        a = t[:, None] * self.w
        return self.net(torch.cat([x, t[:, None], a.sin(), a.cos()], dim=1))


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def fm_steps(field, params, x, b, steps, cfm):
    """Flow-matching steps of the velocity field(t, x) on batches of x; each step's time (ms)."""
    opt = torch.optim.Adam(params, lr=1e-3)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        x1 = x[(i * b) % ROWS:(i * b) % ROWS + b]
        x0 = torch.randn_like(x1)
        t, xt, ut = cfm.sample_location_and_conditional_flow(x0, x1)
        loss = ((field(t, xt) - ut) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="S,M")
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfm = TargetConditionalFlowMatcher(sigma=1e-4)
    for size in a.sizes.split(","):
        d, h, b = SIZES[size]
        x = workload(d)
        field = Field(d, h)
        times = fm_steps(field, list(field.parameters()), x, b, 60, cfm)[10:]
        print(json.dumps({"impl": "torchcfm", "flow": "fm", "size": size, "d": d, "hidden": h, "batch": b,
                          "train_step_ms": median(times), "threads": torch.get_num_threads()}), flush=True)

        cnf = zuko.flows.CNF(d, freqs=4, hidden_features=(h, h), activation=nn.SiLU, atol=1e-6, rtol=1e-5, exact=True)
        # zuko's field f(t, x) (its time features), trained by flow matching like normflow's.
        zuko_times = fm_steps(cnf.transform.f, list(cnf.parameters()), x, b, 60, cfm)[10:]
        fm_steps(cnf.transform.f, list(cnf.parameters()), x, b, TRAIN_STEPS, cfm)
        rows = x[:EVAL_ROWS]
        lp_ms, sample_ms = [], []
        # Evaluations of the field per call (a forward hook counts them; the exact trace's
        # Jacobian comes from the same evaluation).
        calls = [0]
        cnf.transform.ode.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        with torch.no_grad():
            for _ in range(a.reps):
                calls[0] = 0
                t0 = time.perf_counter()
                lp = cnf().log_prob(rows)
                lp_ms.append((time.perf_counter() - t0) * 1e3)
                lp_nfe = calls[0]
            for _ in range(a.reps):
                calls[0] = 0
                t0 = time.perf_counter()
                cnf().sample((EVAL_ROWS,))
                sample_ms.append((time.perf_counter() - t0) * 1e3)
                sample_nfe = calls[0]
        print(json.dumps({"impl": "zuko", "flow": "fm", "size": size, "d": d, "hidden": h, "batch": b,
                          "train_step_ms": median(zuko_times), "logprob_ms": median(lp_ms), "logprob_nfe": lp_nfe,
                          "sample_ms": median(sample_ms), "sample_nfe": sample_nfe,
                          "rows": EVAL_ROWS, "nll_after": float(-lp.mean()), "threads": torch.get_num_threads(),
                          "solver": "zuko odeint (Dormand-Prince) rtol 1e-5 atol 1e-6"}), flush=True)


if __name__ == "__main__":
    main()
