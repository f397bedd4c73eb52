//! The shared test harness every bijection passes (DESIGN.md §5): round trips, log-dets against
//! an f64 finite-difference Jacobian, fused vs training paths, batch vs row-by-row, parameter and
//! input gradients against finite differences, extreme inputs, and save → load.
//!
//! Each check returns `Err(description)` on failure, so tests can `unwrap()` with a readable
//! message.

use crate::bijection::{Direction, Tape};
use crate::engine::{Matrix, Rng};
use crate::io::TensorSource;
use crate::Bijection;

/// Tolerances and inputs of [`check_bijection`].
#[derive(Clone, Debug)]
pub struct HarnessOptions {
    /// Standard deviation of the random parameters put into the layer (non-identity).
    pub param_scale: f32,
    /// Rows of random test inputs.
    pub rows: usize,
    /// Scale of the random test inputs.
    pub input_scale: f32,
    /// Absolute tolerance of round trips.
    pub roundtrip_tol: f32,
    /// Tolerance of log-dets against the finite-difference Jacobian (absolute + relative).
    pub logdet_tol: f64,
    /// Tolerance of gradients against finite differences (absolute + relative).
    pub grad_tol: f64,
    /// Whether gradients in the forward direction exist (false for MAF's sequential pass).
    pub forward_gradients: bool,
    /// Whether gradients in the inverse direction exist.
    pub inverse_gradients: bool,
    /// Context rows to pass (for conditional layers): width.
    pub context_dim: usize,
    /// Extreme values that must give finite outputs and gradients.
    pub extremes: Vec<f32>,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        Self {
            param_scale: 0.3,
            rows: 5,
            input_scale: 1.0,
            roundtrip_tol: 1e-4,
            logdet_tol: 5e-3,
            grad_tol: 2e-2,
            forward_gradients: true,
            inverse_gradients: true,
            context_dim: 0,
            extremes: vec![1e6, -1e6, 50.0, -50.0, 0.0],
        }
    }
}

type Check = Result<(), String>;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn random_matrix(rows: usize, cols: usize, scale: f32, rng: &mut Rng) -> Matrix {
    Matrix::from_vec(rows, cols, (0..rows * cols).map(|_| rng.normal() as f32 * scale).collect())
}

/// Sets every trainable parameter to `N(0, scale²)` (so the layer is far from the identity).
pub fn randomize_params(b: &mut dyn Bijection, scale: f32, rng: &mut Rng) {
    b.params_mut(&mut |p| p.iter_mut().for_each(|v| *v = rng.normal() as f32 * scale));
}

/// `log|det|` of a square matrix (f64, LU with partial pivoting).
pub fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut ld = 0.0;
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs())).unwrap_or(c);
        if p != c {
            for k in 0..n {
                a.swap(c * n + k, p * n + k);
            }
        }
        let d = a[c * n + c];
        if d == 0.0 {
            return f64::NEG_INFINITY;
        }
        ld += d.abs().ln();
        for r in c + 1..n {
            let f = a[r * n + c] / d;
            for k in c..n {
                a[r * n + k] -= f * a[c * n + k];
            }
        }
    }
    ld
}

/// Central finite-difference Jacobian (f64) of one row's map in `direction`.
fn fd_jacobian(b: &dyn Bijection, x: &[f32], ctx: Option<&Matrix>, direction: Direction, h: f32) -> Result<Vec<f64>, String> {
    let n = x.len();
    let mut jac = vec![0.0; n * n];
    for j in 0..n {
        let mut xp = x.to_vec();
        let mut xm = x.to_vec();
        let hj = h * x[j].abs().max(1.0);
        xp[j] += hj;
        xm[j] -= hj;
        let yp = b.transform(&Matrix::from_vec(1, n, xp), ctx, direction).map_err(|e| e.to_string())?.0;
        let ym = b.transform(&Matrix::from_vec(1, n, xm), ctx, direction).map_err(|e| e.to_string())?.0;
        for i in 0..n {
            jac[i * n + j] = (yp.get(0, i) as f64 - ym.get(0, i) as f64) / (2.0 * hj as f64);
        }
    }
    Ok(jac)
}

/// Whether `analytic` matches the central difference of `(lm, l0, lp)` at step `h`, or one of
/// the one-sided differences: ReLU conditioners are piecewise linear, and a step that straddles
/// a kink spoils the central difference while one side stays exact. `Err` holds the central one.
fn fd_matches(analytic: f64, lm: f64, l0: f64, lp: f64, h: f64, tol: f64) -> Result<(), f64> {
    let central = (lp - lm) / (2.0 * h);
    let sides = [central, (lp - l0) / h, (l0 - lm) / h];
    if sides.iter().any(|&fd| close(analytic, fd, tol)) {
        Ok(())
    } else {
        Err(central)
    }
}

/// Loss `Σ w⊙out + Σ v⊙logdet` used to check gradients, in f64.
fn weighted_loss(out: &Matrix, ld: &[f32], w: &Matrix, v: &[f32]) -> f64 {
    let a: f64 = out.as_slice().iter().zip(w.as_slice()).map(|(a, b)| *a as f64 * *b as f64).sum();
    a + ld.iter().zip(v).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
}

/// Runs every check of the harness on `b` after randomising its parameters.
///
/// # Errors
/// A description of the first failed check.
pub fn check_bijection(b: &mut dyn Bijection, opts: &HarnessOptions, rng: &mut Rng) -> Check {
    randomize_params(b, opts.param_scale, rng);
    let d = b.dim();
    let ctx = (opts.context_dim > 0).then(|| random_matrix(opts.rows, opts.context_dim, 1.0, rng));
    let x = random_matrix(opts.rows, d, opts.input_scale, rng);
    check_round_trips(b, &x, ctx.as_ref(), opts)?;
    check_log_dets(b, &x, ctx.as_ref(), opts)?;
    check_batch_vs_rows(b, &x, ctx.as_ref())?;
    for (dir, on) in [(Direction::Forward, opts.forward_gradients), (Direction::Inverse, opts.inverse_gradients)] {
        if on {
            check_fused_vs_train(b, &x, ctx.as_ref(), dir)?;
            check_gradients(b, &x, ctx.as_ref(), dir, opts, rng)?;
        }
    }
    check_extremes(b, ctx.as_ref(), opts, rng)?;
    check_save_load(b, &x, ctx.as_ref())
}

/// `inverse(forward(x)) ≈ x` and `forward(inverse(x)) ≈ x`; inverse log-det = −forward log-det.
pub fn check_round_trips(b: &dyn Bijection, x: &Matrix, ctx: Option<&Matrix>, opts: &HarnessOptions) -> Check {
    let e = |e: crate::Error| e.to_string();
    let (y, ld_f) = b.forward_and_log_det(x, ctx).map_err(e)?;
    let (back, ld_i) = b.inverse_and_log_det(&y, ctx).map_err(e)?;
    for (k, (a, c)) in back.as_slice().iter().zip(x.as_slice()).enumerate() {
        if (a - c).abs() > opts.roundtrip_tol * (1.0 + c.abs()) {
            return Err(format!("inverse(forward(x)) differs at element {k}: {a} vs {c}"));
        }
    }
    for (i, (f, v)) in ld_f.iter().zip(&ld_i).enumerate() {
        if !close(*f as f64, -(*v as f64), 1e-4) {
            return Err(format!("row {i}: inverse log-det {v} is not minus forward log-det {f}"));
        }
    }
    let (z, _) = b.inverse_and_log_det(x, ctx).map_err(e)?;
    let (fwd, _) = b.forward_and_log_det(&z, ctx).map_err(e)?;
    for (k, (a, c)) in fwd.as_slice().iter().zip(x.as_slice()).enumerate() {
        if (a - c).abs() > opts.roundtrip_tol * (1.0 + c.abs()) {
            return Err(format!("forward(inverse(x)) differs at element {k}: {a} vs {c}"));
        }
    }
    // The map without its log-det gives the same rows as the fused pass.
    for (dir, fused) in [(Direction::Forward, &y), (Direction::Inverse, &z)] {
        let alone = b.apply(x, ctx, dir).map_err(e)?;
        if let Some(k) = alone.as_slice().iter().zip(fused.as_slice()).position(|(a, c)| (a - c).abs() > 1e-5 * (1.0 + c.abs())) {
            return Err(format!("{dir:?} map without log-det differs from the fused pass at element {k}"));
        }
    }
    Ok(())
}

/// Both directions' log-dets equal `log|det|` of the f64 finite-difference Jacobian.
pub fn check_log_dets(b: &dyn Bijection, x: &Matrix, ctx: Option<&Matrix>, opts: &HarnessOptions) -> Check {
    for dir in [Direction::Forward, Direction::Inverse] {
        let (_, ld) = b.transform(x, ctx, dir).map_err(|e| e.to_string())?;
        for i in 0..x.rows() {
            let c = ctx.map(|c| c.slice_rows(i, i + 1));
            let jac = fd_jacobian(b, x.row(i), c.as_ref(), dir, 1e-3)?;
            let want = log_abs_det(jac, x.cols());
            if !close(ld[i] as f64, want, opts.logdet_tol) {
                return Err(format!("{dir:?} log-det of row {i} is {}, finite differences give {want}", ld[i]));
            }
        }
    }
    Ok(())
}

/// A batch gives the same results as its rows one at a time.
pub fn check_batch_vs_rows(b: &dyn Bijection, x: &Matrix, ctx: Option<&Matrix>) -> Check {
    for dir in [Direction::Forward, Direction::Inverse] {
        let (y, ld) = b.transform(x, ctx, dir).map_err(|e| e.to_string())?;
        for i in 0..x.rows() {
            let c = ctx.map(|c| c.slice_rows(i, i + 1));
            let (yi, ldi) = b.transform(&x.slice_rows(i, i + 1), c.as_ref(), dir).map_err(|e| e.to_string())?;
            let same = yi.row(0).iter().zip(y.row(i)).all(|(a, c)| (a - c).abs() <= 1e-5 * (1.0 + c.abs()))
                && close(ldi[0] as f64, ld[i] as f64, 1e-5);
            if !same {
                return Err(format!("{dir:?}: row {i} alone differs from the batch"));
            }
        }
    }
    Ok(())
}

/// The training pass computes the same outputs and log-dets as the plain pass.
pub fn check_fused_vs_train(b: &dyn Bijection, x: &Matrix, ctx: Option<&Matrix>, dir: Direction) -> Check {
    let (y, ld) = b.transform(x, ctx, dir).map_err(|e| e.to_string())?;
    let (y2, ld2) = b.train_forward(x, ctx, dir, &mut Tape::new()).map_err(|e| e.to_string())?;
    if y != y2 || ld.iter().zip(&ld2).any(|(a, c)| !close(*a as f64, *c as f64, 1e-6)) {
        return Err(format!("{dir:?}: training pass differs from the plain pass"));
    }
    Ok(())
}

fn analytic_grads(
    b: &dyn Bijection,
    x: &Matrix,
    ctx: Option<&Matrix>,
    dir: Direction,
    w: &Matrix,
    v: &[f32],
) -> Result<(Vec<f32>, Matrix), String> {
    let mut tape = Tape::new();
    b.train_forward(x, ctx, dir, &mut tape).map_err(|e| e.to_string())?;
    let mut grads = vec![0.0; b.num_params()];
    let gx = b.backward(dir, &mut tape, w.clone(), v, &mut grads).map_err(|e| e.to_string())?;
    Ok((grads, gx))
}

/// Parameter and input gradients of a random weighted loss match central finite differences.
pub fn check_gradients(
    b: &mut dyn Bijection,
    x: &Matrix,
    ctx: Option<&Matrix>,
    dir: Direction,
    opts: &HarnessOptions,
    rng: &mut Rng,
) -> Check {
    let w = random_matrix(x.rows(), x.cols(), 1.0, rng);
    let v: Vec<f32> = (0..x.rows()).map(|_| rng.normal() as f32).collect();
    let (grads, gx) = analytic_grads(b, x, ctx, dir, &w, &v)?;
    let loss = |b: &dyn Bijection, x: &Matrix| -> Result<f64, String> {
        let (y, ld) = b.transform(x, ctx, dir).map_err(|e| e.to_string())?;
        Ok(weighted_loss(&y, &ld, &w, &v))
    };
    // Input gradients.
    for k in 0..x.as_slice().len() {
        let h = 1e-3 * x.as_slice()[k].abs().max(1.0);
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.as_mut_slice()[k] += h;
        xm.as_mut_slice()[k] -= h;
        let fd = fd_matches(gx.as_slice()[k] as f64, loss(b, &xm)?, loss(b, x)?, loss(b, &xp)?, h as f64, opts.grad_tol);
        if let Err(fd) = fd {
            return Err(format!("{dir:?}: input gradient {k} is {}, finite differences give {fd}", gx.as_slice()[k]));
        }
    }
    // Parameter gradients, on up to 60 random parameters.
    let n = b.num_params();
    let picks: Vec<usize> = if n <= 60 { (0..n).collect() } else { (0..60).map(|_| rng.below(n)).collect() };
    let mut all = Vec::with_capacity(n);
    b.params(&mut |p| all.extend_from_slice(p));
    let set = |b: &mut dyn Bijection, vals: &[f32]| {
        let mut off = 0;
        b.params_mut(&mut |p| {
            p.copy_from_slice(&vals[off..off + p.len()]);
            off += p.len();
        });
    };
    for &k in &picks {
        let h = 2e-3f32;
        let mut p = all.clone();
        p[k] += h;
        set(b, &p);
        // A masked parameter snaps back to zero; its gradient must be zero.
        let mut now = Vec::with_capacity(n);
        b.params(&mut |q| now.extend_from_slice(q));
        let moved = now[k] != all[k];
        let lp = loss(b, x)?;
        p[k] = all[k] - h;
        set(b, &p);
        let lm = loss(b, x)?;
        set(b, &all);
        let l0 = loss(b, x)?;
        let fd = if moved {
            fd_matches(grads[k] as f64, lm, l0, lp, h as f64, opts.grad_tol)
        } else {
            close(grads[k] as f64, 0.0, 1e-12).then_some(()).ok_or(0.0)
        };
        if let Err(fd) = fd {
            return Err(format!("{dir:?}: gradient of parameter {k} is {}, finite differences give {fd}", grads[k]));
        }
    }
    Ok(())
}

/// Extreme inputs give finite outputs, log-dets and gradients in both directions.
pub fn check_extremes(b: &dyn Bijection, ctx: Option<&Matrix>, opts: &HarnessOptions, rng: &mut Rng) -> Check {
    let d = b.dim();
    let rows = opts.rows;
    let vals: Vec<f32> = (0..rows * d).map(|k| opts.extremes[k % opts.extremes.len()]).collect();
    let x = Matrix::from_vec(rows, d, vals);
    for (dir, grads_on) in [(Direction::Forward, opts.forward_gradients), (Direction::Inverse, opts.inverse_gradients)] {
        let (y, ld) = b.transform(&x, ctx, dir).map_err(|e| e.to_string())?;
        if y.first_non_finite().is_some() || ld.iter().any(|v| !v.is_finite()) {
            return Err(format!("{dir:?}: non-finite output for extreme inputs"));
        }
        if grads_on {
            let w = random_matrix(rows, d, 1.0, rng);
            let v: Vec<f32> = (0..rows).map(|_| 1.0).collect();
            let (g, gx) = analytic_grads(b, &x, ctx, dir, &w, &v)?;
            if g.iter().any(|v| !v.is_finite()) || gx.first_non_finite().is_some() {
                return Err(format!("{dir:?}: non-finite gradient for extreme inputs"));
            }
        }
    }
    Ok(())
}

/// Rebuilding from the spec and loading the saved tensors gives identical outputs.
pub fn check_save_load(b: &dyn Bijection, x: &Matrix, ctx: Option<&Matrix>) -> Check {
    let mut tensors = Vec::new();
    b.tensors("t.", &mut tensors);
    let mut rebuilt = b.spec().build().map_err(|e| e.to_string())?;
    let mut src = TensorSource::new("memory", tensors.into_iter().collect());
    rebuilt.load_tensors("t.", &mut src).map_err(|e| e.to_string())?;
    if !src.leftover().is_empty() {
        return Err(format!("tensors not loaded: {:?}", src.leftover()));
    }
    for dir in [Direction::Forward, Direction::Inverse] {
        if b.transform(x, ctx, dir).map_err(|e| e.to_string())? != rebuilt.transform(x, ctx, dir).map_err(|e| e.to_string())? {
            return Err(format!("{dir:?}: reloaded bijection differs"));
        }
    }
    Ok(())
}

/// One bijection of the [`registry`]: how to build it and the harness options it needs.
pub struct Case {
    /// What it is.
    pub name: &'static str,
    /// Builds it (the same layer for the same generator state).
    pub build: fn(&mut Rng) -> Box<dyn Bijection>,
    /// Harness options (context width, tolerances, extreme inputs).
    pub options: HarnessOptions,
}

/// Spline edge cases: exact knot values (±B, 0 is a knot of the zero-parameter spline), beyond
/// the bound, and far out.
pub fn spline_options() -> HarnessOptions {
    HarnessOptions { input_scale: 2.5, extremes: vec![5.0, -5.0, 0.0, 1.25, 5.000_001, -4.999_999, 1e6, -1e6, 7.0], ..Default::default() }
}

/// Every kind of bijection the crate has, one line each, for tests that sweep them all (the
/// harness, hooks through wrappers). A new layer joins every such test with one line here.
pub fn registry() -> Vec<Case> {
    use crate::bijection::{
        ActNorm, AffineCoupling, BatchNorm, Bounds, Chain, Conv1x1, Dequantize, ImageShape, Interval, LuLinear, MaskedAutoregressive,
        OnPrefix, Permutation, SplineShape, Squeeze, Standardize, Transformer, WaveSpec,
    };
    let sequential = HarnessOptions { forward_gradients: false, ..Default::default() };
    vec![
        Case {
            name: "affine coupling",
            build: |r| Box::new(AffineCoupling::new(5, 2, &[8, 8], 0, Transformer::Affine, r).unwrap()),
            options: HarnessOptions::default(),
        },
        Case {
            name: "conditional additive coupling",
            build: |r| Box::new(AffineCoupling::new(4, 1, &[8], 3, Transformer::Additive, r).unwrap()),
            options: HarnessOptions { context_dim: 3, ..Default::default() },
        },
        Case {
            name: "spline coupling",
            build: |r| Box::new(AffineCoupling::new(4, 2, &[8, 8], 0, Transformer::Spline(SplineShape::default()), r).unwrap()),
            options: spline_options(),
        },
        Case {
            name: "residual spline coupling",
            build: |r| Box::new(AffineCoupling::with_residual(4, 2, 8, 2, 0, Transformer::Spline(SplineShape::default()), r).unwrap()),
            options: HarnessOptions { param_scale: 0.15, ..spline_options() },
        },
        Case {
            name: "masked autoregressive",
            build: |r| Box::new(MaskedAutoregressive::new(4, &[12, 12], vec![2, 0, 3, 1], 0, Transformer::Affine, r).unwrap()),
            options: sequential.clone(),
        },
        Case {
            name: "conditional spline autoregressive",
            build: |r| {
                Box::new(MaskedAutoregressive::new(3, &[9], vec![0, 1, 2], 2, Transformer::Spline(SplineShape::default()), r).unwrap())
            },
            options: HarnessOptions { context_dim: 2, forward_gradients: false, ..spline_options() },
        },
        Case { name: "permutation", build: |r| Box::new(Permutation::random(6, r)), options: HarnessOptions::default() },
        Case { name: "actnorm", build: |_| Box::new(ActNorm::new(4)), options: HarnessOptions::default() },
        Case {
            name: "standardize",
            build: |_| Box::new(Standardize::from_stats(vec![1.0, -2.0, 0.5], vec![0.5, 3.0, 1.5]).unwrap()),
            options: HarnessOptions::default(),
        },
        Case {
            name: "lu-linear",
            build: |_| Box::new(LuLinear::new(vec![2, 0, 3, 1]).unwrap()),
            options: HarnessOptions { extremes: vec![1e4, -1e4, 0.0, 50.0], ..Default::default() },
        },
        Case {
            name: "whitening lu-linear",
            build: |_| Box::new(LuLinear::whitening(3).unwrap()),
            options: HarnessOptions { extremes: vec![1e4, -1e4, 0.0, 50.0], ..Default::default() },
        },
        Case { name: "batch norm", build: |_| Box::new(BatchNorm::new(3)), options: HarnessOptions::default() },
        Case {
            name: "bounds",
            build: |_| {
                Box::new(Bounds::new(vec![Some(Interval { lo: -5.0, hi: 5.0 }), None, Some(Interval { lo: -3.0, hi: 4.0 })]).unwrap())
            },
            options: HarnessOptions { extremes: vec![-3.0, 0.0, 4.0, 3.999, -2.999], ..Default::default() },
        },
        Case { name: "dequantize", build: |_| Box::new(Dequantize::new(3, vec![2, 0]).unwrap()), options: HarnessOptions::default() },
        Case { name: "per-channel actnorm", build: |_| Box::new(ActNorm::per_channel(2, 6)), options: HarnessOptions::default() },
        Case {
            name: "squeeze",
            build: |_| Box::new(Squeeze::new(ImageShape { channels: 2, height: 4, width: 2 }).unwrap()),
            options: HarnessOptions::default(),
        },
        Case {
            name: "convolutional affine coupling",
            build: |r| {
                Box::new(AffineCoupling::with_conv(ImageShape { channels: 3, height: 4, width: 4 }, 4, Transformer::Affine, r).unwrap())
            },
            options: HarnessOptions { param_scale: 0.2, ..Default::default() },
        },
        Case {
            name: "convolutional contractive coupling",
            build: |r| {
                Box::new(
                    AffineCoupling::with_conv(ImageShape { channels: 2, height: 4, width: 4 }, 4, Transformer::Contractive, r).unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.2, ..Default::default() },
        },
        Case {
            name: "checkerboard contractive coupling",
            build: |r| {
                Box::new(
                    AffineCoupling::with_checkerboard(ImageShape { channels: 2, height: 3, width: 3 }, 0, 4, Transformer::Contractive, r)
                        .unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.2, ..Default::default() },
        },
        Case {
            name: "convolutional spline coupling",
            build: |r| {
                Box::new(
                    AffineCoupling::with_conv(
                        ImageShape { channels: 2, height: 2, width: 4 },
                        3,
                        Transformer::Spline(SplineShape::default()),
                        r,
                    )
                    .unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.15, ..spline_options() },
        },
        Case {
            name: "checkerboard affine coupling (odd pixel count)",
            build: |r| {
                Box::new(
                    AffineCoupling::with_checkerboard(ImageShape { channels: 2, height: 3, width: 3 }, 1, 4, Transformer::Affine, r)
                        .unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.2, ..Default::default() },
        },
        Case {
            name: "checkerboard coupling between its permutations",
            build: |r| {
                let image = ImageShape { channels: 2, height: 4, width: 4 };
                let (to_coupling, to_image) = Permutation::checkerboard(image, 0);
                let coupling = AffineCoupling::with_checkerboard(image, 0, 4, Transformer::Affine, r).unwrap();
                let layers: Vec<Box<dyn Bijection>> = vec![Box::new(to_coupling), Box::new(coupling), Box::new(to_image)];
                Box::new(Chain::new(layers).unwrap())
            },
            options: HarnessOptions { param_scale: 0.2, ..Default::default() },
        },
        Case {
            name: "two-level multiscale RealNVP",
            build: |r| {
                crate::flows::MultiscaleRealNvpConfig::new(ImageShape { channels: 1, height: 4, width: 4 })
                    .with_levels(2)
                    .with_steps(1)
                    .with_hidden(4)
                    .levels(r)
                    .unwrap()
            },
            options: HarnessOptions { param_scale: 0.1, ..Default::default() },
        },
        Case {
            name: "class-conditional convolutional coupling",
            build: |r| {
                Box::new(
                    AffineCoupling::with_conv_context(ImageShape { channels: 2, height: 3, width: 4 }, 3, 4, Transformer::Affine, r)
                        .unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.2, context_dim: 3, ..Default::default() },
        },
        Case {
            name: "class-conditional checkerboard coupling",
            build: |r| {
                Box::new(
                    AffineCoupling::with_checkerboard_context(
                        ImageShape { channels: 1, height: 4, width: 3 },
                        0,
                        2,
                        4,
                        Transformer::Affine,
                        r,
                    )
                    .unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.2, context_dim: 2, ..Default::default() },
        },
        Case {
            name: "WaveGlow coupling (WaveNet conditioned on mel frames)",
            build: |r| {
                // 4 channels of 6 steps; 2 mel bands × 3 frames, each frame over 2 steps.
                let wave = WaveSpec { mel_bands: 2, frames: 3, layers: 2, kernel: 3 };
                Box::new(
                    AffineCoupling::with_wavenet(ImageShape { channels: 4, height: 1, width: 6 }, wave, 3, Transformer::Affine, r).unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.2, context_dim: 6, ..Default::default() },
        },
        Case {
            name: "residual convolutional coupling",
            build: |r| {
                Box::new(
                    AffineCoupling::with_conv_blocks(ImageShape { channels: 2, height: 3, width: 3 }, 1, 4, 2, Transformer::Affine, r)
                        .unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.2, context_dim: 1, ..Default::default() },
        },
        Case {
            name: "residual checkerboard coupling",
            build: |r| {
                Box::new(
                    AffineCoupling::with_checkerboard_blocks(
                        ImageShape { channels: 2, height: 2, width: 3 },
                        1,
                        0,
                        4,
                        1,
                        Transformer::Affine,
                        r,
                    )
                    .unwrap(),
                )
            },
            options: HarnessOptions { param_scale: 0.2, ..Default::default() },
        },
        Case {
            name: "coupling on a prefix",
            build: |r| Box::new(OnPrefix::new(5, Box::new(AffineCoupling::new(3, 1, &[8], 0, Transformer::Affine, r).unwrap())).unwrap()),
            options: HarnessOptions::default(),
        },
        Case {
            name: "actnorm on a prefix",
            build: |_| Box::new(OnPrefix::new(4, Box::new(ActNorm::new(2))).unwrap()),
            options: HarnessOptions::default(),
        },
        Case {
            name: "two-level Glow (levels, split prior, prefix)",
            build: |r| {
                crate::flows::GlowConfig::new(ImageShape { channels: 1, height: 4, width: 4 })
                    .with_levels(2)
                    .with_steps(1)
                    .with_hidden(4)
                    .levels(r)
                    .unwrap()
            },
            options: HarnessOptions { param_scale: 0.1, ..Default::default() },
        },
        Case {
            name: "1x1 convolution",
            build: |_| Box::new(Conv1x1::new(ImageShape { channels: 3, height: 2, width: 2 }).unwrap()),
            options: HarnessOptions { extremes: vec![1e4, -1e4, 0.0, 50.0], ..Default::default() },
        },
        Case {
            name: "1x1 convolution started as a random rotation",
            build: |r| Box::new(Conv1x1::rotation(ImageShape { channels: 4, height: 2, width: 2 }, r).unwrap()),
            options: HarnessOptions { extremes: vec![1e4, -1e4, 0.0, 50.0], ..Default::default() },
        },
    ]
}
