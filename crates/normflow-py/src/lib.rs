//! `normflow._normflow`: the compiled core under the `normflow` Python package's estimators.
//!
//! Arrays come in as numpy float32 or float64 (read in place, converted once into the engine's
//! f32 rows) and go out as numpy arrays that take over the result's buffer without a copy. The
//! interpreter lock is released while the library computes; the library's errors are raised as
//! `ValueError` with its messages.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use normflow::anomaly::Threshold;
use normflow::bijection::{Dequantize, ImageShape};
use normflow::flows::{
    fit_flow_matching, Coupling, FlowMatchingConfig, GlowConfig, MafConfig, MultiscaleRealNvpConfig, NsfConfig, RealNvpConfig, TimeSampling,
};
use normflow::ode::Solver;
use normflow::train::{fit as fit_flow, FitConfig, FitProgress, LrSchedule};
use normflow::{Flow, Matrix, MatrixRef, Rng};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// Where a model file keeps an anomaly detector's threshold (the CLI's `anomaly` commands read
/// the same entry).
const THRESHOLD_KEY: &str = "anomaly_threshold";

/// Where an image model keeps its image shape (the CLI's `image` commands read the same entry).
const IMAGE_SHAPE_KEY: &str = "image_shape";

/// Relative tolerance of the adaptive solver a continuous flow integrates with (the CLI's).
const CONTINUOUS_RTOL: f64 = 1e-5;

/// How often a progress callback is called at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// A 2-D array of float32 or float64 values, as numpy holds it.
#[derive(FromPyObject)]
enum Array<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

impl Array<'_> {
    /// The rows as the engine's matrix: one pass over the array (a copy of contiguous f32
    /// rows, a conversion of f64 ones), in row order whatever the array's strides.
    fn matrix(&self) -> Matrix {
        match self.rows() {
            Rows::Borrowed(v) => v.to_matrix(),
            Rows::Owned(m) => m,
        }
    }

    /// The rows for a pass that reads them in place: C-contiguous float32 rows are borrowed
    /// from numpy as they are (no copy); any other layout or float64 is converted once.
    fn rows(&self) -> Rows<'_> {
        match self {
            Array::F32(a) => {
                let [rows, cols] = [a.shape()[0], a.shape()[1]];
                match a.as_slice() {
                    Ok(s) => Rows::Borrowed(MatrixRef::new(s, rows, cols)),
                    Err(_) => Rows::Owned(Matrix::from_vec(rows, cols, a.as_array().iter().copied().collect())),
                }
            }
            Array::F64(a) => {
                let [rows, cols] = [a.shape()[0], a.shape()[1]];
                Rows::Owned(Matrix::from_vec(rows, cols, a.as_array().iter().map(|&v| v as f32).collect()))
            }
        }
    }
}

/// Rows of an [`Array`]: numpy's own memory, or a converted copy.
enum Rows<'a> {
    Borrowed(MatrixRef<'a>),
    Owned(Matrix),
}

impl Rows<'_> {
    fn view(&self) -> MatrixRef<'_> {
        match self {
            Rows::Borrowed(v) => *v,
            Rows::Owned(m) => m.view(),
        }
    }
}

/// Runs `f` on the rows of `x` and of the optional `context`, read in place where the layout
/// allows (see [`Array::rows`]). numpy's memory is read while the interpreter lock is released,
/// as numpy's own functions do: the caller must not write to the arrays from another thread
/// during the call.
fn with_rows<T>(x: &Array<'_>, context: &Option<Array<'_>>, f: impl FnOnce(MatrixRef<'_>, Option<MatrixRef<'_>>) -> T) -> T {
    let (x, context) = (x.rows(), context.as_ref().map(Array::rows));
    f(x.view(), context.as_ref().map(Rows::view))
}

fn value_error(e: normflow::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A 2-D numpy array owning the matrix's buffer.
fn to_numpy<'py>(py: Python<'py>, m: Matrix) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (rows, cols) = (m.rows(), m.cols());
    m.into_vec().into_pyarray(py).reshape([rows, cols])
}

/// A trained flow: densities, samples, latent codes, model files.
#[pyclass(module = "normflow._normflow")]
struct Model {
    flow: Flow,
}

#[pymethods]
impl Model {
    /// Loads a model file written by `save`, by the CLI or by the Rust library.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let flow = py.allow_threads(|| Flow::load(&path)).map_err(value_error)?;
        Ok(Self { flow })
    }

    /// Writes the model file (atomically: a failed write leaves an existing file as it was).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.allow_threads(|| self.flow.save(&path)).map_err(value_error)
    }

    /// The model file's bytes (for pickling).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = normflow::io::flow_to_bytes(&self.flow).map_err(value_error)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// A model from a model file's bytes.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        let flow = normflow::io::flow_from_bytes(data, "<bytes>".as_ref()).map_err(value_error)?;
        Ok(Self { flow })
    }

    /// Number of data columns.
    #[getter]
    fn dim(&self) -> usize {
        self.flow.dim()
    }

    /// Number of context columns (0 for an unconditional flow).
    #[getter]
    fn context_dim(&self) -> usize {
        self.flow.context_dim()
    }

    /// Number of trained parameters.
    #[getter]
    fn num_params(&self) -> usize {
        self.flow.num_params()
    }

    /// The architecture's name.
    #[getter]
    fn name(&self) -> String {
        self.flow.meta.name.clone()
    }

    /// The training summary as JSON (steps, epochs, best validation NLL, …), if trained.
    #[getter]
    fn training(&self) -> Option<String> {
        self.flow.meta.training.as_ref().map(|t| serde_json::to_string(t).expect("a summary serialises"))
    }

    /// Log-density of each row (nats), float64.
    #[pyo3(signature = (x, context=None))]
    fn log_prob<'py>(&self, py: Python<'py>, x: Array<'py>, context: Option<Array<'py>>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let lp = with_rows(&x, &context, |x, c| py.allow_threads(|| self.flow.log_prob_view(x, c))).map_err(value_error)?;
        Ok(lp.into_iter().map(f64::from).collect::<Vec<_>>().into_pyarray(py))
    }

    /// `n` samples (with a context: one per context row, `n` equal to its rows).
    #[pyo3(signature = (n, context=None, seed=0))]
    fn sample<'py>(&self, py: Python<'py>, n: usize, context: Option<Array<'py>>, seed: u64) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let context = context.map(|c| c.matrix());
        let x = py.allow_threads(|| self.flow.sample(n, context.as_ref(), &mut Rng::new(seed))).map_err(value_error)?;
        to_numpy(py, x)
    }

    /// Latent codes of data rows.
    #[pyo3(signature = (x, context=None))]
    fn encode<'py>(&self, py: Python<'py>, x: Array<'py>, context: Option<Array<'py>>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let z = with_rows(&x, &context, |x, c| py.allow_threads(|| self.flow.encode_view(x, c))).map_err(value_error)?;
        to_numpy(py, z)
    }

    /// Data rows of latent codes.
    #[pyo3(signature = (z, context=None))]
    fn decode<'py>(&self, py: Python<'py>, z: Array<'py>, context: Option<Array<'py>>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let x = with_rows(&z, &context, |z, c| py.allow_threads(|| self.flow.decode_view(z, c))).map_err(value_error)?;
        to_numpy(py, x)
    }

    /// `n` samples at temperature `t` (base draws scaled by `t`; Glow samples images at 0.7).
    #[pyo3(signature = (n, temperature, seed=0))]
    fn sample_at_temperature<'py>(&self, py: Python<'py>, n: usize, temperature: f32, seed: u64) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let x = py.allow_threads(|| self.flow.sample_at_temperature(n, temperature, None, &mut Rng::new(seed))).map_err(value_error)?;
        to_numpy(py, x)
    }

    /// The rows with the model's integer columns dequantised by one seeded uniform draw (as
    /// `normflow eval` and `image eval` score them).
    #[pyo3(signature = (x, seed=0))]
    fn dequantize<'py>(&self, py: Python<'py>, x: Array<'py>, seed: u64) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let x = x.matrix();
        let d = py.allow_threads(|| self.flow.dequantize_rows(&x, &mut Rng::new(seed))).map_err(value_error)?;
        to_numpy(py, d)
    }

    /// An image model's `(channels, height, width)`, if it is one.
    #[getter]
    fn image_shape(&self) -> Option<(usize, usize, usize)> {
        let s: ImageShape = serde_json::from_value(self.flow.meta.extra.get(IMAGE_SHAPE_KEY)?.clone()).ok()?;
        Some((s.channels, s.height, s.width))
    }

    /// Sets the anomaly threshold at the `quantile` of the scores (negative log-likelihoods)
    /// of normal calibration rows, stored in the model (as `normflow anomaly fit` does);
    /// returns it.
    #[pyo3(signature = (x, quantile, context=None))]
    fn calibrate_threshold(&mut self, py: Python<'_>, x: Array<'_>, quantile: f64, context: Option<Array<'_>>) -> PyResult<f64> {
        let lp = with_rows(&x, &context, |x, c| py.allow_threads(|| self.flow.log_prob_view(x, c))).map_err(value_error)?;
        let scores: Vec<f32> = lp.iter().map(|v| -v).collect();
        let threshold = Threshold::calibrate(&scores, quantile).map_err(value_error)?;
        let value = threshold.threshold;
        self.flow.meta.extra.insert(THRESHOLD_KEY.into(), serde_json::to_value(&threshold).expect("a threshold serialises"));
        Ok(value)
    }

    /// The stored anomaly threshold on scores (negative log-likelihoods), if calibrated.
    #[getter]
    fn threshold(&self) -> Option<f64> {
        let t: Threshold = serde_json::from_value(self.flow.meta.extra.get(THRESHOLD_KEY)?.clone()).ok()?;
        Some(t.threshold)
    }
}

/// Training options, with the CLI's `train` defaults.
#[derive(Clone, Debug)]
struct Options {
    layers: usize,
    hidden: Vec<usize>,
    bins: usize,
    tail_bound: f32,
    residual_blocks: usize,
    lu_linear: bool,
    batch_norm: bool,
    standardize: bool,
    whiten: bool,
    epochs: usize,
    max_steps: Option<usize>,
    batch_size: usize,
    lr: f32,
    cosine: bool,
    patience: usize,
    val_frac: f64,
    seed: u64,
    dequantize: Option<Vec<usize>>,
    ot: bool,
    time_sampling: TimeSampling,
}

/// The untrained flow of `kind` for `dim` columns.
fn build(kind: &str, o: &Options, dim: usize, context_dim: usize) -> PyResult<Flow> {
    let mut rng = Rng::new(o.seed);
    macro_rules! shared {
        ($c:expr) => {
            $c.with_layers(o.layers)
                .with_hidden(o.hidden.clone())
                .with_context(context_dim)
                .with_lu_linear(o.lu_linear)
                .with_batch_norm(o.batch_norm)
                .with_standardize(o.standardize)
                .with_whiten(o.whiten)
        };
    }
    let flow = match kind {
        "realnvp" => shared!(RealNvpConfig::new(dim)).init(&mut rng),
        "maf" => shared!(MafConfig::new(dim)).init(&mut rng),
        "nsf" | "nsf-ar" => shared!(NsfConfig::new(dim))
            .with_residual_blocks(o.residual_blocks)
            .with_bins(o.bins)
            .with_bound(o.tail_bound)
            .with_autoregressive(kind == "nsf-ar")
            .init(&mut rng),
        other => return Err(PyValueError::new_err(format!("unknown flow '{other}' (realnvp, maf, nsf, nsf-ar or fm)"))),
    };
    flow.map_err(value_error)
}

/// Calls a Python progress callback with a dict of the training state, at most every
/// [`PROGRESS_EVERY`] and at the last step; keeps the first exception it raises.
struct ProgressCallback {
    callback: Option<PyObject>,
    last: Option<Instant>,
    error: Option<PyErr>,
}

impl ProgressCallback {
    fn report(&mut self, p: &FitProgress) {
        let Some(callback) = &self.callback else { return };
        let due = self.last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) || p.step >= p.total_steps;
        if !due || self.error.is_some() {
            return;
        }
        self.last = Some(Instant::now());
        Python::with_gil(|py| {
            let call = || -> PyResult<()> {
                let d = PyDict::new(py);
                d.set_item("step", p.step)?;
                d.set_item("total_steps", p.total_steps)?;
                d.set_item("epoch", p.epoch)?;
                d.set_item("train_nll", p.train_nll)?;
                d.set_item("val_nll", p.val_nll)?;
                d.set_item("seconds", p.seconds)?;
                callback.call1(py, (d,))?;
                Ok(())
            };
            if let Err(e) = call() {
                self.error = Some(e);
            }
        });
    }
}

/// Fits a flow of `kind` (`realnvp`, `maf`, `nsf`, `nsf-ar` or `fm`) to the rows of `x` by
/// maximum likelihood (flow matching for `fm`), as `normflow train` does with the same options
/// and seed: the same validation split, dequantised integer columns (all integer-valued ones
/// unless `dequantize` lists them; `[]` for none), early stopping on the validation NLL.
#[pyfunction]
#[pyo3(signature = (kind, x, context=None, *, layers=6, hidden=vec![128, 128], bins=8, tail_bound=5.0, residual_blocks=0,
    lu_linear=false, batch_norm=false, standardize=true, whiten=true, epochs=200, max_steps=None, batch_size=256, lr=5e-4,
    cosine=false, patience=20, val_frac=0.1, seed=0, dequantize=None, ot=false, time_sampling=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn fit(
    py: Python<'_>,
    kind: &str,
    x: Array<'_>,
    context: Option<Array<'_>>,
    layers: usize,
    hidden: Vec<usize>,
    bins: usize,
    tail_bound: f32,
    residual_blocks: usize,
    lu_linear: bool,
    batch_norm: bool,
    standardize: bool,
    whiten: bool,
    epochs: usize,
    max_steps: Option<usize>,
    batch_size: usize,
    lr: f32,
    cosine: bool,
    patience: usize,
    val_frac: f64,
    seed: u64,
    dequantize: Option<Vec<usize>>,
    ot: bool,
    time_sampling: Option<(f32, f32)>,
    progress: Option<PyObject>,
) -> PyResult<Model> {
    if time_sampling.is_some() && kind != "fm" {
        return Err(PyValueError::new_err("time_sampling (logit-normal training times) is for continuous flows (fm)"));
    }
    let time_sampling =
        time_sampling.map(|(mean, std)| TimeSampling::logit_normal(mean, std)).transpose().map_err(value_error)?.unwrap_or_default();
    let o = Options {
        layers,
        hidden,
        bins,
        tail_bound,
        residual_blocks,
        lu_linear,
        batch_norm,
        standardize,
        whiten,
        epochs,
        max_steps,
        batch_size,
        lr,
        cosine,
        patience,
        val_frac,
        seed,
        dequantize,
        ot,
        time_sampling,
    };
    let (x, context) = (x.matrix(), context.map(|c| c.matrix()));
    if x.rows() == 0 || x.cols() == 0 {
        return Err(PyValueError::new_err(format!("no data to fit: {} rows of {} columns", x.rows(), x.cols())));
    }
    let dequantized = o.dequantize.clone().unwrap_or_else(|| normflow::data::integer_columns(&x));
    if let Some(&j) = dequantized.iter().find(|&&j| j >= x.cols()) {
        return Err(PyValueError::new_err(format!("dequantize: column {j} is beyond the data's {} columns", x.cols())));
    }
    let mut reporter = ProgressCallback { callback: progress, last: None, error: None };
    let flow = if kind == "fm" {
        let n = x.rows();
        let train_rows = n - ((n as f64) * o.val_frac).round() as usize;
        let config = FlowMatchingConfig {
            hidden: o.hidden.clone(),
            steps: o.max_steps.unwrap_or(o.epochs * train_rows.max(1).div_ceil(o.batch_size.max(1))),
            batch_size: o.batch_size,
            lr: o.lr,
            seed: o.seed,
            coupling: if o.ot { Coupling::MinibatchOt } else { Coupling::Independent },
            time_sampling: o.time_sampling,
            val_frac: o.val_frac,
            dequantize: dequantized,
            ..FlowMatchingConfig::default()
        };
        py.allow_threads(|| {
            fit_flow_matching(&x, context.as_ref(), &config, Solver::adaptive(CONTINUOUS_RTOL), &mut |p| reporter.report(p))
        })
        .map_err(value_error)?
        .0
    } else {
        if o.ot {
            return Err(PyValueError::new_err("ot (minibatch optimal transport) is for continuous flows (fm)"));
        }
        let mut flow = build(kind, &o, x.cols(), context.as_ref().map_or(0, Matrix::cols))?;
        if !dequantized.is_empty() {
            flow = flow.with_data_layer(Box::new(Dequantize::new(x.cols(), dequantized).map_err(value_error)?)).map_err(value_error)?;
        }
        let config = FitConfig {
            lr: o.lr,
            batch_size: o.batch_size,
            val_frac: o.val_frac,
            max_epochs: o.epochs,
            max_steps: o.max_steps,
            patience: (o.patience > 0).then_some(o.patience),
            schedule: if o.cosine { LrSchedule::Cosine } else { LrSchedule::Constant },
            seed: o.seed,
            smoothing: Some(0.0),
            ..FitConfig::default()
        };
        py.allow_threads(|| fit_flow(flow, &x, context.as_ref(), &config, &mut |p| reporter.report(p))).map_err(value_error)?.0
    };
    if let Some(e) = reporter.error {
        return Err(e);
    }
    Ok(Model { flow })
}

/// Fits an image flow (`glow`, or `realnvp`: multiscale RealNVP) to 8-bit images, one row of
/// `channels·height·width` pixel values (0–255) per image, as `normflow image train` does with
/// the same options: pixels dequantised with fresh uniform noise each batch, data-initialised
/// layers, validation bits/dim every `eval_every` steps, the best weights kept.
#[pyfunction]
#[pyo3(signature = (kind, x, shape, *, levels=2, steps=4, hidden=64, additive=false, logit=None, residual_blocks=2,
    epochs=1000, max_steps=None, minutes=None, batch_size=64, lr=1e-3, cosine=false, val_frac=0.02, eval_every=200, seed=0,
    progress=None))]
#[allow(clippy::too_many_arguments)]
fn fit_images(
    py: Python<'_>,
    kind: &str,
    x: Array<'_>,
    shape: (usize, usize, usize),
    levels: usize,
    steps: usize,
    hidden: usize,
    additive: bool,
    logit: Option<f32>,
    residual_blocks: usize,
    epochs: usize,
    max_steps: Option<usize>,
    minutes: Option<f64>,
    batch_size: usize,
    lr: f32,
    cosine: bool,
    val_frac: f64,
    eval_every: usize,
    seed: u64,
    progress: Option<PyObject>,
) -> PyResult<Model> {
    let shape = ImageShape { channels: shape.0, height: shape.1, width: shape.2 };
    let x = x.matrix();
    if x.cols() != shape.len() || x.rows() == 0 {
        return Err(PyValueError::new_err(format!(
            "{} images of {} values, but the shape {shape:?} has {} values per image",
            x.rows(),
            x.cols(),
            shape.len()
        )));
    }
    if let Some(v) = x.as_slice().iter().find(|v| !(0.0..=255.0).contains(*v) || v.fract() != 0.0) {
        return Err(PyValueError::new_err(format!("pixel value {v}: images hold integers 0..=255")));
    }
    if minutes.is_some_and(|m| !(m > 0.0 && m.is_finite())) {
        return Err(PyValueError::new_err("minutes must be positive"));
    }
    let rng = &mut Rng::new(seed);
    let flow = match kind {
        "glow" => GlowConfig::new(shape)
            .with_levels(levels)
            .with_steps(steps)
            .with_hidden(hidden)
            .with_additive(additive)
            .with_logit(logit)
            .init(rng),
        "realnvp" => MultiscaleRealNvpConfig::new(shape)
            .with_levels(levels)
            .with_steps(steps)
            .with_hidden(hidden)
            .with_additive(additive)
            .with_logit(logit)
            .with_residual_blocks(residual_blocks)
            .init(rng),
        other => return Err(PyValueError::new_err(format!("unknown image flow '{other}' (glow or realnvp)"))),
    }
    .map_err(value_error)?;
    let name = flow.meta.name.clone();
    let dequantize = Dequantize::new(shape.len(), (0..shape.len()).collect()).map_err(value_error)?;
    let mut flow = flow.with_data_layer(Box::new(dequantize)).map_err(value_error)?;
    flow.meta.name = name;
    flow.meta.extra.insert(IMAGE_SHAPE_KEY.into(), serde_json::to_value(shape).expect("a shape serialises"));
    let config = FitConfig {
        lr,
        batch_size,
        val_frac,
        max_epochs: epochs,
        max_steps,
        eval_every: Some(eval_every.max(1)),
        seed,
        min_gain_z: None,
        init_rows: Some(2048),
        max_seconds: minutes.map(|m| m * 60.0),
        schedule: if cosine { LrSchedule::Cosine } else { LrSchedule::Constant },
        stop_on_divergence: true,
        ..FitConfig::default()
    };
    let mut reporter = ProgressCallback { callback: progress, last: None, error: None };
    let flow = py.allow_threads(|| fit_flow(flow, &x, None, &config, &mut |p| reporter.report(p))).map_err(value_error)?.0;
    if let Some(e) = reporter.error {
        return Err(e);
    }
    Ok(Model { flow })
}

/// Sets how every later matrix product in the process runs: `"bf16x3"` (the default), each
/// operand split into two bfloat16 parts on AMX tiles (Intel CPUs with AMX; elsewhere products
/// stay f32), about 2x faster on wide layers at about 1e-5 relative error per product, or
/// `"f32"` everywhere. Returns whether AMX is there to run the split products.
#[pyfunction]
fn set_product_precision(precision: &str) -> PyResult<bool> {
    use normflow::engine::{split_products_available, ProductPrecision};
    let p = ProductPrecision::from_name(precision)
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("unknown product precision '{precision}' (known: f32, bf16x3)")))?;
    normflow::engine::set_product_precision(p);
    Ok(split_products_available())
}

/// The precision products run at now: `"f32"` or `"bf16x3"`.
#[pyfunction]
fn product_precision() -> &'static str {
    normflow::engine::product_precision().name()
}

/// The compiled core of the `normflow` package.
#[pymodule]
fn _normflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(fit_images, m)?)?;
    m.add_function(wrap_pyfunction!(set_product_precision, m)?)?;
    m.add_function(wrap_pyfunction!(product_precision, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
