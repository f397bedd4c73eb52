"""Which test images carry an image model's mean bits/dim, and where in the latent they blow up.

For a model file from `normflow image train` (MNIST by default): bits/dim of every test image
(the dequantisation of `normflow image eval`, seed 0), the worst images, their largest latent
coordinates (`encode`: the standard-normal code, level by level as the flow factors them out),
the share of the image's NLL that those coordinates' z²/2 carry, and the pixels of the image that
training images rarely ink. Needs the Python bindings (`pip install ./crates/normflow-py`).

Usage: python bench/images/tail_images.py MODEL [--test IDX] [--train IDX] [--top 5]
"""
import argparse
import gzip
import os

import numpy as np
from normflow import _normflow as nf

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "mnist"))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(3))
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, h, w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--test", default=os.path.join(MNIST, "t10k-images-idx3-ubyte.gz"))
    ap.add_argument("--train", default=os.path.join(MNIST, "train-images-idx3-ubyte.gz"))
    ap.add_argument("--top", type=int, default=5)
    a = ap.parse_args()
    test, train = read_idx(a.test), read_idx(a.train)
    n, h, w = test.shape
    d = h * w
    model = nf.Model.load(a.model)
    x = model.dequantize(test.reshape(n, d).astype(np.float32), 0)
    bpd = -model.log_prob(x) / (d * np.log(2))
    order = np.argsort(-bpd)
    print(f"# {a.model}: {n} test images, mean {bpd.mean():.4f} bits/dim, median {np.median(bpd):.4f}")
    for k in (1, 2, 5):
        rest = np.delete(bpd, order[:k])
        print(f"# mean without the worst {k}: {rest.mean():.4f}")
    inked = (train > 0).mean(0)
    z = model.encode(x[order[:a.top]])
    for rank, i in enumerate(order[:a.top]):
        zi = z[rank]
        big = np.argsort(-np.abs(zi))[:6]
        nll = bpd[i] * d * np.log(2)
        share = (zi[big] ** 2).sum() / 2 / nll
        ys, xs = np.nonzero(test[i])
        rare = np.argsort(inked[ys, xs])[:4]
        print(f"image {i}: {bpd[i]:.2f} bits/dim; largest |z| at latent {big.tolist()}: {np.abs(zi[big]).round(1).tolist()} "
              f"(their z^2/2 = {share:.0%} of its NLL); rarest inked pixels (row, col, share of training images inked there, value): "
              f"{[(int(ys[k]), int(xs[k]), round(float(inked[ys[k], xs[k]]), 4), int(test[i][ys[k], xs[k]])) for k in rare]}")


if __name__ == "__main__":
    main()
