"""Glow on MNIST, normflow beside normflows (the peer a PyTorch user would pick), same machine,
one sitting.

The architecture is normflows' own Glow example: 2 levels, 16 steps per level, 256 hidden
channels (~2.78 M parameters), batch 256, uniform dequantisation, channel split. normflows
trains with Adamax(1e-3) as its example does; normflow with its Adam(1e-3). normflows' levels
end in its learned per-channel Gaussian (GlowBase); normflow's factored-out halves go through
Glow's split prior (a convolutional affine coupling).

Each library trains for the same wall-clock budget on the 60,000 training images (the peer in
this process with torch on 2 threads; normflow as its CLI, `normflow image train`), then test
bits/dim is measured on the first --test-images test images (all 10,000 by default). Training
images per second count the optimisation steps alone: the peer's every step after the first
(warm-up) step, normflow's every step (its `step_images_per_second`, which leaves out the
validation passes, initialisation and checkpoints that the peer does not do; its wall-clock rate
with them is printed beside it as `wall_images_per_second`). Peak RSS is the process's.

bits/dim: normflows models x = (v + u)/256 in [0, 1); its NLL in bits per dimension plus 8 is
that of the 8-bit data (normflow works on v + u directly and reports that number).

Usage (from the repository root, peer venv from ../shared/bench/peers/setup.sh):
  ~/.normflow-peers/venv/bin/python bench/images/compare.py --seconds 600 [--only normflow|normflows]
"""

import argparse
import gzip
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "mnist"))
TRAIN = os.path.join(MNIST, "train-images-idx3-ubyte.gz")
TEST = os.path.join(MNIST, "t10k-images-idx3-ubyte.gz")
LEVELS, STEPS, HIDDEN, BATCH, LR = 2, 16, 256, 256, 1e-3


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(3))
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, h, w)


def peer(seconds, test_images, threads):
    import torch
    import normflows as nf

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape = (1, 28, 28)
    q0, merges, flows = [], [], []
    for i in range(LEVELS):
        flows.append([nf.flows.GlowBlock(shape[0] * 2 ** (LEVELS + 1 - i), HIDDEN, split_mode="channel", scale=True)
                      for _ in range(STEPS)] + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (shape[0] * 2 ** (LEVELS - i), shape[1] // 2 ** (LEVELS - i), shape[2] // 2 ** (LEVELS - i))
        else:
            latent = (shape[0] * 2 ** (LEVELS + 1), shape[1] // 2 ** LEVELS, shape[2] // 2 ** LEVELS)
        q0.append(nf.distributions.GlowBase(latent))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adamax(model.parameters(), lr=LR, weight_decay=1e-5)
    train = torch.from_numpy(read_idx(TRAIN).astype(np.float32))
    test = torch.from_numpy(read_idx(TEST)[:test_images].astype(np.float32))
    bits = 1.0 / (math.log(2) * np.prod(shape))
    gen = torch.Generator().manual_seed(0)
    # ActNorm initialises on the first batch.
    steps, images, started, timed_from = 0, 0, time.time(), None
    nonfinite = 0
    while time.time() - started < seconds:
        idx = torch.randint(0, len(train), (BATCH,), generator=gen)
        x = (train[idx] + torch.rand(BATCH, *shape, generator=gen)) / 256.0
        loss = model.forward_kld(x)
        opt.zero_grad()
        if torch.isfinite(loss):
            loss.backward()
            opt.step()
        else:
            nonfinite += 1
        steps += 1
        if steps == 1:
            timed_from = time.time()
        else:
            images += BATCH
    rate = images / max(time.time() - timed_from, 1e-9)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        total = 0.0
        for start in range(0, len(test), 500):
            x = (test[start:start + 500] + torch.rand(len(test[start:start + 500]), *shape, generator=gen)) / 256.0
            total += -model.log_prob(x, None).double().sum().item()
        bpd = total / len(test) * bits + 8.0
    return {"impl": "normflows", "params": params, "steps": steps, "images_per_second": rate, "test_bits_per_dim": bpd,
            "test_images": len(test), "nonfinite_steps": nonfinite, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ours(seconds, test_images, normflow, eval_every):
    with tempfile.TemporaryDirectory() as work:
        model = os.path.join(work, "glow.safetensors")
        cmd = ["/usr/bin/time", "-f", "%M", normflow, "image", "train", TRAIN, "--levels", str(LEVELS), "--steps", str(STEPS),
               "--hidden", str(HIDDEN), "--batch-size", str(BATCH), "--lr", str(LR), "--minutes", str(seconds / 60),
               "--eval-every", str(eval_every), "--checkpoint-minutes", "0", "-q", "--json", "-o", model]
        run = subprocess.run(cmd, check=True, capture_output=True, text=True)
        summary = json.loads(run.stdout)
        peak_kb = int(run.stderr.strip().splitlines()[-1])
        test = TEST
        if test_images < 10000:
            test = os.path.join(work, "test.npy")
            np.save(test, read_idx(TEST)[:test_images])
        ev = json.loads(subprocess.run([normflow, "image", "eval", model, test, "--json"], check=True, capture_output=True, text=True).stdout)
    return {"impl": "normflow", "params": summary["params"], "steps": summary["steps"],
            "images_per_second": summary["step_images_per_second"], "wall_images_per_second": summary["images_per_second"],
            "test_bits_per_dim": ev["bits_per_dim"], "test_images": ev["images"], "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1800, help="training budget of each library")
    ap.add_argument("--test-images", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["normflow", "normflows"])
    ap.add_argument("--eval-every", type=int, default=50,
                    help="normflow's validation interval in steps (the peer validates never)")
    ap.add_argument("--normflow", default=os.path.join(HERE, "..", "..", "target", "release", "normflow"))
    a = ap.parse_args()
    results = []
    if a.only != "normflows":
        results.append(ours(a.seconds, a.test_images, a.normflow, a.eval_every))
        print(json.dumps(results[-1]), flush=True)
    if a.only != "normflow":
        results.append(peer(a.seconds, a.test_images, a.threads))
        print(json.dumps(results[-1]), flush=True)
    if len(results) == 2:
        r = results[0]["images_per_second"] / results[1]["images_per_second"]
        print(f"# normflow / normflows training images/s: {r:.2f}x; test bits/dim after {a.seconds:.0f} s: "
              f"{results[0]['test_bits_per_dim']:.4f} vs {results[1]['test_bits_per_dim']:.4f}; peak RSS "
              f"{results[0]['peak_rss_mb']:.0f} vs {results[1]['peak_rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
