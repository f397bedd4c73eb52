"""scikit-learn-style estimators over the compiled core (`normflow._normflow`).

Parameters live on the estimator as constructor arguments (so `get_params`, `set_params`,
`clone`, `Pipeline` and `GridSearchCV` work); `fit` stores the trained model in ``model_``.
scikit-learn is optional: without it the estimators keep the same methods on a small base.
"""

import inspect

import numpy as np

from . import _normflow

try:  # scikit-learn's base classes and input checks when it is installed
    from sklearn.base import BaseEstimator, DensityMixin, OutlierMixin, TransformerMixin
    from sklearn.utils.validation import check_array, check_is_fitted

    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # scikit-learn before 1.6
        validate_data = None
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    validate_data = None

    class BaseEstimator:
        """`get_params` / `set_params` from the constructor's arguments, as scikit-learn's."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            for key, value in params.items():
                if key not in self._get_param_names():
                    raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}")
                setattr(self, key, value)
            return self

    class DensityMixin:
        pass

    class OutlierMixin:
        pass

    class TransformerMixin:
        def fit_transform(self, X, y=None, **fit_params):
            return self.fit(X, y, **fit_params).transform(X)

    def check_array(X, dtype=None, **_):
        X = np.asarray(X, dtype=dtype[0] if isinstance(dtype, (list, tuple)) and np.asarray(X).dtype not in dtype else None)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D array, got {X.ndim}-D")
        if not np.all(np.isfinite(X)):
            raise ValueError("Input contains NaN or infinity")
        return X

    def check_is_fitted(estimator, attributes=None):
        if not hasattr(estimator, "model_"):
            raise ValueError(f"This {type(estimator).__name__} instance is not fitted yet; call fit first")


FLOATS = [np.float32, np.float64]


def _store(estimator, arguments):
    """Keeps the constructor's arguments as they are, as scikit-learn expects of `__init__`."""
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def _rows(estimator, X, reset):
    """X as a finite 2-D float32/float64 array (kept as it is when it already is one)."""
    if validate_data is not None:
        return validate_data(estimator, X, reset=reset, dtype=FLOATS, ensure_min_samples=1)
    X = check_array(X, dtype=FLOATS)
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting {estimator.n_features_in_} features as input")
    return X


def _context(context):
    return None if context is None else check_array(context, dtype=FLOATS)


def _seed(random_state):
    """A 64-bit seed from None (fresh entropy), an int or a numpy Generator/RandomState."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (1 << 64))
    if isinstance(random_state, (int, np.integer)):
        return int(random_state) % (1 << 64)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 1 << 63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 1 << 31))
    raise ValueError(f"random_state must be None, an int or a numpy random generator, got {random_state!r}")


class _PicklesModel:
    """Pickles the fitted `model_` as its model file's bytes (the compiled model has no pickle
    support of its own); attributes named in `_not_pickled` are left out."""

    _not_pickled = ()

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in self._not_pickled}
        if "model_" in state:
            state["model_"] = state["model_"].to_bytes()
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model_"), bytes):
            state["model_"] = _normflow.Model.from_bytes(state["model_"])
        self.__dict__.update(state)


class _Flow(_PicklesModel, DensityMixin, TransformerMixin, BaseEstimator):
    """What every flow estimator shares: fit, densities, samples, latent codes, model files."""

    _kind = None

    def _options(self):
        """Keyword arguments of `_normflow.fit` from the estimator's parameters."""
        raise NotImplementedError

    def fit(self, X, y=None, context=None):
        """Fit the flow to the rows of X (y is ignored); `context`: one row per row of X for a
        conditional flow. Returns the estimator."""
        X = _rows(self, X, reset=True)
        if X.shape[1] < 2 and self._kind in ("realnvp", "maf"):
            raise ValueError(f"{type(self).__name__} needs at least 2 features, got 1 feature(s): an affine flow of one "
                             "column is only a Gaussian; use NSF for 1-D data")
        if X.shape[0] < 2:
            raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of 2 is required (n_samples = 1).")
        self.model_ = _normflow.fit(self._kind, X, _context(context), progress=self.progress, **self._options())
        return self

    def score_samples(self, X, context=None):
        """Log-density of each row (nats), like `GaussianMixture.score_samples`."""
        check_is_fitted(self, "model_")
        return self.model_.log_prob(_rows(self, X, reset=False), _context(context))

    def score(self, X, y=None, context=None):
        """Mean log-density of the rows (nats per row; higher is better)."""
        return float(np.mean(self.score_samples(X, context)))

    def sample(self, n_samples=1, context=None, random_state=None):
        """`n_samples` rows drawn from the flow (float32); with a context, one per context row."""
        check_is_fitted(self, "model_")
        return self.model_.sample(int(n_samples), _context(context), _seed(random_state))

    def transform(self, X, context=None):
        """Latent codes (the base Gaussian's coordinates) of the rows of X, in X's float type."""
        check_is_fitted(self, "model_")
        X = _rows(self, X, reset=False)
        return self.model_.encode(X, _context(context)).astype(X.dtype, copy=False)

    def inverse_transform(self, Z, context=None):
        """Data rows of latent codes, in Z's float type."""
        check_is_fitted(self, "model_")
        Z = check_array(Z, dtype=FLOATS)
        return self.model_.decode(Z, _context(context)).astype(Z.dtype, copy=False)

    def save(self, path):
        """Write the model file (the same format the CLI reads and writes)."""
        check_is_fitted(self, "model_")
        self.model_.save(str(path))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class _CouplingOptions(_Flow):
    def _options(self):
        return dict(layers=self.layers, hidden=list(self.hidden), lu_linear=self.lu_linear, batch_norm=self.batch_norm,
                    standardize=self.standardize, whiten=self.whiten, epochs=self.epochs, max_steps=self.max_steps,
                    batch_size=self.batch_size, lr=self.lr, cosine=self.cosine, patience=self.patience,
                    val_frac=self.val_frac, seed=self.random_state, dequantize=self.dequantize)


class RealNVP(_CouplingOptions):
    """RealNVP: affine coupling layers (fast densities and sampling).

    Parameters are those of ``normflow train --flow realnvp`` with the same defaults:
    ``layers`` coupling layers whose conditioners have ``hidden`` layer widths; ``lu_linear``
    learned mixing between layers; ``batch_norm``; ``standardize`` / ``whiten`` the data first;
    Adam at ``lr`` with ``batch_size`` rows for at most ``epochs`` (or ``max_steps``), stopping
    after ``patience`` epochs without a better validation NLL on ``val_frac`` of the rows,
    ``cosine`` decay; ``random_state`` seeds everything; ``dequantize``: data columns to
    dequantise (None: every integer-valued one; [] for none); ``progress``: a callable given a
    dict (step, total_steps, epoch, train_nll, val_nll, seconds) a few times a second.
    """

    _kind = "realnvp"

    def __init__(self, layers=6, hidden=(128, 128), lu_linear=False, batch_norm=False, standardize=True, whiten=True,
                 epochs=200, max_steps=None, batch_size=256, lr=5e-4, cosine=False, patience=20, val_frac=0.1,
                 random_state=0, dequantize=None, progress=None):
        _store(self, locals())


class MAF(RealNVP):
    """Masked autoregressive flow (fast densities, sequential sampling); parameters as `RealNVP`."""

    _kind = "maf"


class NSF(_CouplingOptions):
    """Neural spline flow: rational-quadratic spline couplings (``autoregressive=True``: NSF-AR,
    spline MADE layers). ``bins`` spline bins on ``[-tail_bound, tail_bound]`` of the
    standardised data (identity outside), ``residual_blocks`` per conditioner; the other
    parameters as `RealNVP`. The CLI's default flow."""

    _kind = "nsf"

    def __init__(self, layers=6, hidden=(128, 128), bins=8, tail_bound=5.0, residual_blocks=0, autoregressive=False,
                 lu_linear=False, batch_norm=False, standardize=True, whiten=True, epochs=200, max_steps=None,
                 batch_size=256, lr=5e-4, cosine=False, patience=20, val_frac=0.1, random_state=0, dequantize=None,
                 progress=None):
        _store(self, locals())

    def fit(self, X, y=None, context=None):
        self._kind = "nsf-ar" if self.autoregressive else "nsf"
        return super().fit(X, y, context)

    def _options(self):
        return dict(super()._options(), bins=self.bins, tail_bound=self.tail_bound, residual_blocks=self.residual_blocks)


class FlowMatching(_Flow):
    """A continuous flow trained by flow matching (``normflow train --flow fm``): a velocity
    field with ``hidden`` SiLU layers, integrated by an adaptive Dormand-Prince solver; exact
    log-densities through the trace of its Jacobian. ``ot``: minibatch optimal-transport
    pairs. ``time_sampling``: None for uniform training times, or ``(mean, std)`` for
    ``t = sigmoid(mean + std * eps)`` (``(1.2, 1.0)`` suits densities with sharp edges).
    Other parameters as `RealNVP`."""

    _kind = "fm"

    def __init__(self, hidden=(64, 64), epochs=200, max_steps=None, batch_size=256, lr=5e-4, val_frac=0.1, ot=False,
                 time_sampling=None, random_state=0, dequantize=None, progress=None):
        _store(self, locals())

    def _options(self):
        return dict(hidden=list(self.hidden), epochs=self.epochs, max_steps=self.max_steps, batch_size=self.batch_size,
                    lr=self.lr, val_frac=self.val_frac, ot=self.ot, time_sampling=self.time_sampling,
                    seed=self.random_state, dequantize=self.dequantize)


def _images(X):
    """8-bit images as rows of pixel values and their (channels, height, width): X is
    [N, H, W] (grayscale) or [N, C, H, W], of integers 0-255 (uint8 or any numeric type)."""
    X = np.asarray(X)
    if X.ndim == 3:
        X = X[:, None, :, :]
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"images must be an array [N, H, W] or [N, C, H, W] with N > 0, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"images must be numeric, got {X.dtype}")
    rows = X.reshape(X.shape[0], -1).astype(np.float32)
    if not np.all(np.isfinite(rows)) or rows.min() < 0 or rows.max() > 255 or np.any(rows != np.floor(rows)):
        raise ValueError("images hold integer pixel values 0..=255")
    return rows, tuple(int(v) for v in X.shape[1:])


class Glow(_PicklesModel, BaseEstimator):
    """Glow on 8-bit images (``normflow image train``, same options and defaults):
    ``levels`` levels of ``steps`` steps (ActNorm, invertible 1x1 convolution, affine coupling
    with a ``hidden``-channel 3x3 -> 1x1 -> 3x3 network; ``additive`` couplings instead),
    split priors between levels; pixels dequantised with fresh noise each batch. Adam at ``lr``,
    ``batch_size`` images, at most ``epochs`` / ``max_steps`` / ``minutes``, ``val_frac`` of the
    images held out and evaluated every ``eval_every`` steps, the best weights kept.

    `fit(X)` takes images [N, H, W] or [N, C, H, W] of integers 0-255; `score_samples(X)` the
    log-likelihood of each image (nats, of the pixels dequantised with one seeded draw, as
    ``image eval``), `bits_per_dim(X)` the mean bits per dimension; `sample(n, temperature)`
    uint8 images [n, C, H, W]; `save` writes a model file the CLI's ``image`` commands read.
    """

    _kind = "glow"

    def __init__(self, levels=2, steps=4, hidden=64, additive=False, logit=None, epochs=1000, max_steps=None, minutes=None,
                 batch_size=64, lr=1e-3, cosine=False, val_frac=0.02, eval_every=200, random_state=0, progress=None):
        _store(self, locals())

    def _options(self):
        return dict(levels=self.levels, steps=self.steps, hidden=self.hidden, additive=self.additive, logit=self.logit,
                    epochs=self.epochs, max_steps=self.max_steps, minutes=self.minutes, batch_size=self.batch_size, lr=self.lr,
                    cosine=self.cosine, val_frac=self.val_frac, eval_every=self.eval_every, seed=self.random_state)

    def fit(self, X, y=None):
        """Fit the flow to the images (y is ignored). Returns the estimator."""
        rows, self.image_shape_ = _images(X)
        self.model_ = _normflow.fit_images(self._kind, rows, self.image_shape_, progress=self.progress, **self._options())
        return self

    def _rows(self, X):
        check_is_fitted(self, "model_")
        rows, shape = _images(X)
        if shape != self.image_shape_:
            raise ValueError(f"images of shape {shape}, the model was trained on {self.image_shape_}")
        return rows

    def score_samples(self, X):
        """Log-likelihood of each image (nats), its pixels dequantised by one seeded draw."""
        rows = self._rows(X)
        return self.model_.log_prob(self.model_.dequantize(rows, 0))

    def score(self, X, y=None):
        """Mean log-likelihood per image (nats; higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def bits_per_dim(self, X):
        """Mean bits per dimension of the images: NLL / (C*H*W * ln 2)."""
        return float(-np.mean(self.score_samples(X)) / (np.prod(self.image_shape_) * np.log(2.0)))

    def sample(self, n_samples=1, temperature=0.7, random_state=None):
        """`n_samples` images [n, C, H, W] (uint8) drawn at ``temperature``."""
        check_is_fitted(self, "model_")
        x = self.model_.sample_at_temperature(int(n_samples), float(temperature), _seed(random_state))
        pixels = np.clip(np.floor(np.nan_to_num(x, nan=0.0)), 0, 255).astype(np.uint8)
        return pixels.reshape((int(n_samples),) + self.image_shape_)

    def save(self, path):
        """Write the model file (``normflow image eval/sample`` read it)."""
        check_is_fitted(self, "model_")
        self.model_.save(str(path))


class ImageRealNVP(Glow):
    """Multiscale RealNVP on 8-bit images (``image train --flow realnvp``): checkerboard and
    channel couplings with residual-network conditioners (``residual_blocks``), half the
    channels factored out per level; other parameters as `Glow`."""

    _kind = "realnvp"

    def __init__(self, levels=2, steps=4, hidden=64, additive=False, logit=None, residual_blocks=2, epochs=1000, max_steps=None,
                 minutes=None, batch_size=64, lr=1e-3, cosine=False, val_frac=0.02, eval_every=200, random_state=0, progress=None):
        _store(self, locals())

    def _options(self):
        return dict(super()._options(), residual_blocks=self.residual_blocks)


FLOWS = {"realnvp": RealNVP, "maf": MAF, "nsf": NSF, "fm": FlowMatching}


class AnomalyDetector(_PicklesModel, OutlierMixin, BaseEstimator):
    """Anomaly detection by density, like `IsolationForest`: a flow fitted to normal rows, a
    threshold at the ``1 - contamination`` quantile of the negative log-likelihoods of
    ``calibration_frac`` of the rows held out from the fit.

    `score_samples`: log-density (lower is more abnormal); `decision_function`: log-density
    minus ``offset_`` (negative for outliers); `predict`: -1 for outliers, 1 for inliers.
    ``flow`` names the flow ('nsf', 'realnvp', 'maf' or 'fm'); ``flow_params`` go to it. A
    saved detector is read by ``normflow anomaly score``.
    """

    def __init__(self, flow="nsf", contamination=0.01, calibration_frac=0.2, flow_params=None, random_state=0):
        _store(self, locals())

    def fit(self, X, y=None, context=None):
        """Fit the flow on the rows not held out, then calibrate the threshold on the rest."""
        if self.flow not in FLOWS:
            raise ValueError(f"flow must be one of {sorted(FLOWS)}, got {self.flow!r}")
        if not 0.0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination}")
        if not 0.0 < self.calibration_frac < 1.0:
            raise ValueError(f"calibration_frac must be in (0, 1), got {self.calibration_frac}")
        X = _rows(self, X, reset=True)
        context = _context(context)
        n = X.shape[0]
        n_cal = int(round(n * self.calibration_frac))
        if n - n_cal < 2 or n_cal < 1:
            raise ValueError(f"Found array with {n} sample(s) (shape={X.shape}) while a minimum of 4 is required: "
                             "some rows to fit and some to calibrate (n_samples = 1 or too few).")
        order = np.random.default_rng(_seed(self.random_state)).permutation(n)
        fit_rows, cal_rows = np.sort(order[n_cal:]), np.sort(order[:n_cal])
        params = dict(self.flow_params or {})
        params.setdefault("random_state", self.random_state)
        self.estimator_ = FLOWS[self.flow](**params).fit(X[fit_rows], context=None if context is None else context[fit_rows])
        self.model_ = self.estimator_.model_
        cal_context = None if context is None else context[cal_rows]
        threshold = self.model_.calibrate_threshold(X[cal_rows], 1.0 - self.contamination, cal_context)
        self.offset_ = -threshold
        return self

    def score_samples(self, X, context=None):
        """Log-density of each row (lower: more abnormal)."""
        check_is_fitted(self, "model_")
        return self.model_.log_prob(_rows(self, X, reset=False), _context(context))

    def decision_function(self, X, context=None):
        """`score_samples` minus ``offset_``: negative for outliers."""
        return self.score_samples(X, context) - self.offset_

    def predict(self, X, context=None):
        """-1 for outliers, 1 for inliers."""
        return np.where(self.decision_function(X, context) < 0, -1, 1)

    def save(self, path):
        """Write the model file with its threshold (``normflow anomaly score`` reads it)."""
        check_is_fitted(self, "model_")
        self.model_.save(str(path))

    _not_pickled = ("estimator_",)  # the flow estimator's model is `model_` itself


def load(path):
    """A model file (from `save`, the CLI or the Rust library) as a `Model`: ``log_prob``,
    ``sample``, ``encode``, ``decode``, ``save``."""
    return _normflow.Model.load(str(path))
