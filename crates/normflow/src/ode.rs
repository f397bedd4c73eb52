//! Solvers for the ordinary differential equations of continuous flows, `dy/dt = f(t, y)` over
//! a state of `f32` values (a batch of rows, integrated together): Euler, midpoint and
//! classical Runge–Kutta with fixed steps, and Dormand–Prince 5(4) with adaptive steps
//! (Dormand & Prince 1980; the error control of Hairer, Nørsett & Wanner, *Solving Ordinary
//! Differential Equations I*, §II.4). The right-hand side does the
//! computing; the solvers' own passes over a large state (stage sums, error norm, copies) use
//! the worker pool.
//!
//! A solver that meets a non-finite state, or an adaptive one that needs more steps than its
//! cap, stops with an error instead of returning NaN.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::engine::threads::{for_each_chunk_mut, for_each_part, part_range, worker_count};
use crate::{Error, Result};

/// How to integrate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    /// Forward Euler: one evaluation per step, first order.
    Euler {
        /// Steps over the interval.
        steps: usize,
    },
    /// Explicit midpoint: two evaluations per step, second order.
    Midpoint {
        /// Steps over the interval.
        steps: usize,
    },
    /// Classical Runge–Kutta: four evaluations per step, fourth order.
    Rk4 {
        /// Steps over the interval.
        steps: usize,
    },
    /// Dormand–Prince 5(4) with adaptive steps: a step is kept when every value of the state
    /// has `|error| ≤ atol + rtol·|y|` (the largest ratio, not the RMS of Hairer et al.: the
    /// state is a batch of independent rows, and an RMS over thousands of rows would let one
    /// row's error grow with the batch's size).
    Dopri5 {
        /// Relative tolerance.
        rtol: f64,
        /// Absolute tolerance.
        atol: f64,
        /// Most steps (kept and rejected) before giving up.
        max_steps: usize,
    },
}

impl Solver {
    /// Dormand–Prince with the given tolerances (`atol = rtol`) and a cap of 10,000 steps.
    pub fn adaptive(rtol: f64) -> Self {
        Solver::Dopri5 { rtol, atol: rtol, max_steps: 10_000 }
    }
}

/// What an integration cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Evaluations of the right-hand side.
    pub evaluations: usize,
    /// Steps kept.
    pub steps: usize,
    /// Steps rejected (adaptive solver only).
    pub rejected: usize,
}

/// The right-hand side: writes `f(t, y)` into its last argument.
pub type RightHandSide<'a> = dyn FnMut(f64, &[f32], &mut [f32]) -> Result<()> + 'a;

/// Integrates `y` in place from `t0` to `t1` (either direction) with `solver`.
///
/// # Errors
/// [`Error::InvalidConfig`] for zero fixed steps or non-positive tolerances;
/// [`Error::Integration`] when the state becomes non-finite or the step cap is reached; any
/// error of `f`.
pub fn integrate(f: &mut RightHandSide<'_>, y: &mut [f32], t0: f64, t1: f64, solver: Solver) -> Result<Report> {
    match solver {
        Solver::Euler { steps } => fixed(f, y, t0, t1, steps, &EULER),
        Solver::Midpoint { steps } => fixed(f, y, t0, t1, steps, &MIDPOINT),
        Solver::Rk4 { steps } => fixed(f, y, t0, t1, steps, &RK4),
        Solver::Dopri5 { rtol, atol, max_steps } => dopri5(f, y, t0, t1, rtol, atol, max_steps),
    }
}

/// An explicit Runge–Kutta tableau: stage times `c`, stage coefficients `a` (row `i` has `i`
/// entries) and weights `b`.
struct Tableau {
    c: &'static [f64],
    a: &'static [&'static [f64]],
    b: &'static [f64],
}

const EULER: Tableau = Tableau { c: &[0.0], a: &[&[]], b: &[1.0] };
const MIDPOINT: Tableau = Tableau { c: &[0.0, 0.5], a: &[&[], &[0.5]], b: &[0.0, 1.0] };
const RK4: Tableau = Tableau {
    c: &[0.0, 0.5, 0.5, 1.0],
    a: &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
    b: &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
};

/// Dormand–Prince 5(4): stage times, coefficients (the last row is the fifth-order weights:
/// the last stage is evaluated at the new state, and serves as the next step's first) and the
/// fourth-order weights of the error estimate.
const DP_C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const DP_A: [&[f64]; 7] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
    &[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
    &[35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
];
const DP_B4: [f64; 7] = [5179.0 / 57600.0, 0.0, 7571.0 / 16695.0, 393.0 / 640.0, -92097.0 / 339200.0, 187.0 / 2100.0, 1.0 / 40.0];

/// Values per thread below which the solver's own passes over the state stay on one thread.
const MIN_VALUES_PER_THREAD: usize = 16_384;

/// `out = y + h · Σ coef[j] · k[j]` (stages with a zero coefficient skipped), large states
/// split over the workers (between the right-hand side's parallel passes, a serial pass over a
/// batch's state left the other cores waiting for a fifth of an evaluation's time).
fn combine(out: &mut [f32], y: &[f32], h: f64, coef: &[f64], k: &[Vec<f32>]) {
    let parts = worker_count(out.len(), MIN_VALUES_PER_THREAD);
    for_each_chunk_mut(out, parts, &|p, out| {
        let range = part_range(y.len(), parts, p);
        out.copy_from_slice(&y[range.clone()]);
        for (c, kj) in coef.iter().zip(k) {
            if *c != 0.0 {
                let w = (h * c) as f32;
                out.iter_mut().zip(&kj[range.clone()]).for_each(|(o, v)| *o += w * v);
            }
        }
    });
}

/// `dst = src`, large states split over the workers like [`combine`].
fn copy(dst: &mut [f32], src: &[f32]) {
    let parts = worker_count(dst.len(), MIN_VALUES_PER_THREAD);
    for_each_chunk_mut(dst, parts, &|p, dst| dst.copy_from_slice(&src[part_range(src.len(), parts, p)]));
}

/// The largest `|y5 − y4| / (atol + rtol·max(|y0|, |y5|))` over the state (NaN when any is),
/// split over the workers like [`combine`].
fn error_ratio(y5: &[f32], y4: &[f32], y0: &[f32], rtol: f64, atol: f64) -> f64 {
    let parts = worker_count(y0.len(), MIN_VALUES_PER_THREAD);
    let worst: Vec<AtomicU64> = (0..parts).map(|_| AtomicU64::new(0)).collect();
    for_each_part(parts, &|p| {
        let range = part_range(y0.len(), parts, p);
        let mut err = 0.0f64;
        for ((&a, &b), &y) in y5[range.clone()].iter().zip(&y4[range.clone()]).zip(&y0[range]) {
            let scale = atol + rtol * (y as f64).abs().max((a as f64).abs());
            // NaN is kept (f64::max would drop it), to be reported by the caller.
            let ratio = ((a as f64 - b as f64) / scale).abs();
            err = if ratio.is_nan() || ratio > err { ratio } else { err };
        }
        worst[p].store(err.to_bits(), Ordering::Relaxed);
    });
    worst.iter().map(|w| f64::from_bits(w.load(Ordering::Relaxed))).fold(0.0, |acc, e| if e.is_nan() || e > acc { e } else { acc })
}

/// The error when the state stops being finite at time `t`.
fn check_finite(y: &[f32], t: f64) -> Result<()> {
    match y.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::Integration(format!("the state became non-finite at t = {t:.4} (value {i} of the state)"))),
    }
}

fn fixed(f: &mut RightHandSide<'_>, y: &mut [f32], t0: f64, t1: f64, steps: usize, tab: &Tableau) -> Result<Report> {
    if steps == 0 {
        return Err(Error::InvalidConfig("a fixed-step solver needs at least one step".into()));
    }
    let n = y.len();
    let h = (t1 - t0) / steps as f64;
    let mut k: Vec<Vec<f32>> = (0..tab.c.len()).map(|_| vec![0.0; n]).collect();
    let mut stage = vec![0.0f32; n];
    let mut report = Report::default();
    for s in 0..steps {
        let t = t0 + s as f64 * h;
        for i in 0..tab.c.len() {
            combine(&mut stage, y, h, tab.a[i], &k[..i]);
            f(t + tab.c[i] * h, &stage, &mut k[i])?;
            report.evaluations += 1;
        }
        combine(&mut stage, y, h, tab.b, &k);
        y.copy_from_slice(&stage);
        check_finite(y, t + h)?;
        report.steps += 1;
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn dopri5(f: &mut RightHandSide<'_>, y: &mut [f32], t0: f64, t1: f64, rtol: f64, atol: f64, max_steps: usize) -> Result<Report> {
    if !(rtol > 0.0 && atol > 0.0) {
        return Err(Error::InvalidConfig(format!("tolerances must be positive (rtol {rtol}, atol {atol})")));
    }
    let n = y.len();
    let mut report = Report::default();
    if t1 == t0 || n == 0 {
        return Ok(report);
    }
    let span = t1 - t0;
    let dir = span.signum();
    let mut k: Vec<Vec<f32>> = (0..7).map(|_| vec![0.0; n]).collect();
    let (mut stage, mut y5) = (vec![0.0f32; n], vec![0.0f32; n]);
    f(t0, y, &mut k[0])?;
    report.evaluations += 1;
    // First step: from the sizes of y and f (Hairer et al., §II.4, simplified).
    let rms = |v: &[f32], y: &[f32]| -> f64 {
        let s: f64 = v.iter().zip(y).map(|(&a, &b)| (a as f64 / (atol + rtol * (b as f64).abs())).powi(2)).sum();
        (s / n as f64).sqrt()
    };
    let (d0, d1) = (rms(y, y), rms(&k[0], y));
    let mut h = if d0 < 1e-5 || d1 < 1e-5 { 1e-3 } else { 0.01 * d0 / d1 };
    h = h.min(span.abs()) * dir;
    let mut t = t0;
    while (t1 - t) * dir > 0.0 {
        if report.steps + report.rejected >= max_steps {
            return Err(Error::Integration(format!(
                "the adaptive solver reached its cap of {max_steps} steps at t = {t:.4} of [{t0}, {t1}] (loosen the tolerances or raise the cap)"
            )));
        }
        if (t + h - t1) * dir > 0.0 {
            h = t1 - t;
        }
        for i in 1..7 {
            combine(&mut stage, y, h, DP_A[i], &k[..i]);
            f(t + DP_C[i] * h, &stage, &mut k[i])?;
            report.evaluations += 1;
        }
        // The last stage was evaluated at the fifth-order solution: `stage` holds it.
        std::mem::swap(&mut y5, &mut stage);
        combine(&mut stage, y, h, &DP_B4, &k);
        let err = error_ratio(&y5, &stage, y, rtol, atol);
        if !err.is_finite() {
            check_finite(&y5, t + h)?;
            return Err(Error::Integration(format!("the error estimate became non-finite at t = {t:.4}")));
        }
        if err <= 1.0 {
            t += h;
            copy(y, &y5);
            k.swap(0, 6);
            report.steps += 1;
        } else {
            report.rejected += 1;
        }
        let factor = if err == 0.0 { 5.0 } else { (0.9 * err.powf(-0.2)).clamp(0.2, 5.0) };
        h *= if err <= 1.0 { factor } else { factor.min(1.0) };
        if h.abs() < 1e-12 * span.abs() {
            return Err(Error::Integration(format!("the adaptive step shrank to nothing at t = {t:.4}")));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dy/dt = −y·(1 + t) from y(0) = (1, −2): y(t) = y(0)·exp(−t − t²/2).
    fn decay(t: f64, y: &[f32], out: &mut [f32]) -> Result<()> {
        out.iter_mut().zip(y).for_each(|(o, &v)| *o = -(v as f64 * (1.0 + t)) as f32);
        Ok(())
    }

    fn error_with(solver: Solver) -> (f64, Report) {
        let mut y = vec![1.0f32, -2.0];
        let report = integrate(&mut decay, &mut y, 0.0, 1.0, solver).unwrap();
        let want = (-1.5f64).exp();
        ((y[0] as f64 - want).abs().max((y[1] as f64 + 2.0 * want).abs()), report)
    }

    #[test]
    fn fixed_step_solvers_converge_at_their_orders() {
        type Make = fn(usize) -> Solver;
        let solvers: [(i32, Make); 3] =
            [(1, |steps| Solver::Euler { steps }), (2, |steps| Solver::Midpoint { steps }), (4, |steps| Solver::Rk4 { steps })];
        for (order, make) in solvers {
            let (coarse, r) = error_with(make(8));
            let (fine, _) = error_with(make(16));
            let ratio = coarse / fine;
            let want = 2f64.powi(order);
            assert!(ratio > 0.7 * want && ratio < 1.4 * want, "order {order}: errors {coarse:e} -> {fine:e}");
            assert_eq!(r.steps, 8);
        }
        assert_eq!(error_with(Solver::Rk4 { steps: 8 }).1.evaluations, 32);
    }

    #[test]
    fn dormand_prince_meets_its_tolerance_and_reports_its_cost() {
        let (loose, r_loose) = error_with(Solver::adaptive(1e-3));
        let (tight, r_tight) = error_with(Solver::adaptive(1e-7));
        assert!(loose < 1e-3, "{loose:e}");
        assert!(tight < 1e-6, "{tight:e}");
        assert!(r_tight.evaluations > r_loose.evaluations, "{r_loose:?} {r_tight:?}");
        assert_eq!(r_tight.evaluations, 1 + 6 * (r_tight.steps + r_tight.rejected));
        // Backward in time, back to the start.
        let mut y = vec![1.0f32, -2.0];
        integrate(&mut decay, &mut y, 0.0, 1.0, Solver::adaptive(1e-8)).unwrap();
        integrate(&mut decay, &mut y, 1.0, 0.0, Solver::adaptive(1e-8)).unwrap();
        assert!((y[0] - 1.0).abs() < 1e-5 && (y[1] + 2.0).abs() < 1e-5, "{y:?}");
    }

    #[test]
    fn blow_up_and_step_caps_are_errors_not_nan() {
        // dy/dt = y² from y(0) = 1 blows up at t = 1.
        let mut square = |_: f64, y: &[f32], out: &mut [f32]| -> Result<()> {
            out.iter_mut().zip(y).for_each(|(o, &v)| *o = v * v);
            Ok(())
        };
        let mut y = vec![1.0f32];
        let e = integrate(&mut square, &mut y, 0.0, 2.0, Solver::Euler { steps: 200 }).unwrap_err();
        assert!(matches!(e, Error::Integration(_)), "{e}");
        let mut y = vec![1.0f32];
        let e = integrate(&mut square, &mut y, 0.0, 2.0, Solver::Dopri5 { rtol: 1e-6, atol: 1e-6, max_steps: 50 }).unwrap_err();
        assert!(e.to_string().contains("cap of 50 steps") || e.to_string().contains("non-finite"), "{e}");
        let e = integrate(&mut square, &mut [1.0f32], 0.0, 1.0, Solver::Rk4 { steps: 0 }).unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)));
    }
}
