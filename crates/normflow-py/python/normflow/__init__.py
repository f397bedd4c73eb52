"""normflow: normalizing flows in Rust, as scikit-learn-style density estimators.

    >>> import numpy as np, normflow
    >>> X = np.random.default_rng(0).normal(size=(2000, 2)) @ [[1.0, 0.8], [0.0, 0.6]]
    >>> flow = normflow.NSF(epochs=20).fit(X)
    >>> log_density = flow.score_samples(X[:5])        # nats per row
    >>> samples = flow.sample(100, random_state=0)     # (100, 2) float32
    >>> Z = flow.transform(X[:5]); X_back = flow.inverse_transform(Z)
    >>> flow.save("nsf.safetensors")                   # the CLI's model files: `normflow log-prob nsf.safetensors …`

Estimators: `RealNVP`, `MAF`, `NSF` (``autoregressive=True`` for NSF-AR), `FlowMatching` and
`AnomalyDetector` on tables; `Glow` and `ImageRealNVP` on 8-bit images. Every fit, score and sample runs in the Rust library with the interpreter
lock released. Matrix products run as split-bfloat16 products on CPUs with AMX by default (about
2x faster on wide layers, about 1e-5 relative error per product); `set_product_precision("f32")`
keeps them in f32.
"""

from ._estimators import MAF, NSF, AnomalyDetector, FlowMatching, Glow, ImageRealNVP, RealNVP, load
from ._normflow import Model, __version__, product_precision, set_product_precision

__all__ = ["RealNVP", "MAF", "NSF", "FlowMatching", "AnomalyDetector", "Glow", "ImageRealNVP", "Model", "load", "set_product_precision", "product_precision", "__version__"]
