//! Seeded 2-D toy densities, defined as in FFJORD and `shared/bench/peers/quality.py`, and the
//! exact log-densities where they have a closed form.

use std::f64::consts::PI;

use crate::engine::{Matrix, Rng};
use crate::{Error, Result};

/// Names accepted by [`generate`].
pub const TOY_NAMES: [&str; 5] = ["moons", "8gaussians", "checkerboard", "2spirals", "rings"];

/// Draws `n` rows of the toy set `name` with `seed`.
///
/// # Errors
/// [`Error::InvalidConfig`] for an unknown name.
pub fn generate(name: &str, n: usize, seed: u64) -> Result<Matrix> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let (a, b) = match name {
            "moons" => two_moons_point(i < n / 2, &mut rng),
            "8gaussians" => {
                let k = rng.below(8) as f64;
                let (c0, c1) = (4.0 * (k * PI / 4.0).cos(), 4.0 * (k * PI / 4.0).sin());
                ((c0 + 0.5 * rng.normal()) / 1.414, (c1 + 0.5 * rng.normal()) / 1.414)
            }
            "checkerboard" => {
                let x1 = rng.uniform() * 4.0 - 2.0;
                let x2 = rng.uniform() - rng.below(2) as f64 * 2.0 + x1.floor().rem_euclid(2.0);
                (2.0 * x1, 2.0 * x2)
            }
            "2spirals" => {
                let t = rng.uniform().sqrt() * 3.0 * PI;
                let (dx, dy) = (-t.cos() * t + 0.5 * rng.uniform(), t.sin() * t + 0.5 * rng.uniform());
                let sign = if i < n / 2 { 1.0 } else { -1.0 };
                (sign * dx / 3.0 + 0.1 * rng.normal(), sign * dy / 3.0 + 0.1 * rng.normal())
            }
            "rings" => {
                let r = [1.0, 2.0, 3.0, 4.0][rng.below(4)] * 0.75;
                let t = rng.uniform() * 2.0 * PI;
                (r * t.cos() + 0.08 * rng.normal(), r * t.sin() + 0.08 * rng.normal())
            }
            _ => return Err(Error::config(format!("unknown toy data set '{name}' (known: {})", TOY_NAMES.join(", ")))),
        };
        out.push(a as f32);
        out.push(b as f32);
    }
    Ok(Matrix::from_vec(n, 2, out))
}

fn two_moons_point(first: bool, rng: &mut Rng) -> (f64, f64) {
    let t = rng.uniform() * PI;
    let (x, y) = if first { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
    (x + 0.05 * rng.normal(), y + 0.05 * rng.normal())
}

/// Exact mean negative log-likelihood of the toy set `name` on `x`, where it is computable
/// (moons by quadrature over the curve parameter, 8gaussians exactly, checkerboard = ln 32).
pub fn true_nll(name: &str, x: &Matrix) -> Option<f64> {
    let rows = (0..x.rows()).map(|i| (x.get(i, 0) as f64, x.get(i, 1) as f64));
    let n = x.rows().max(1) as f64;
    match name {
        "checkerboard" => Some(32f64.ln()),
        "8gaussians" => {
            let s = 0.5 / 1.414;
            let lse = |p: (f64, f64)| {
                let lk: Vec<f64> = (0..8)
                    .map(|k| {
                        let a = k as f64 * PI / 4.0;
                        let (c0, c1) = (4.0 * a.cos() / 1.414, 4.0 * a.sin() / 1.414);
                        -((p.0 - c0).powi(2) + (p.1 - c1).powi(2)) / (2.0 * s * s) - (2.0 * PI * s * s).ln() - 8f64.ln()
                    })
                    .collect();
                log_sum_exp(&lk)
            };
            Some(-rows.map(lse).sum::<f64>() / n)
        }
        "moons" => {
            let (m, sigma) = (2000, 0.05f64);
            let lse = |p: (f64, f64)| {
                let mut lk = Vec::with_capacity(2 * m);
                for k in 0..m {
                    let t = (k as f64 + 0.5) * PI / m as f64;
                    for (cx, cy) in [(t.cos(), t.sin()), (1.0 - t.cos(), 0.5 - t.sin())] {
                        lk.push(-((p.0 - cx).powi(2) + (p.1 - cy).powi(2)) / (2.0 * sigma * sigma) - (2.0 * PI * sigma * sigma).ln());
                    }
                }
                log_sum_exp(&lk) - ((2 * m) as f64).ln()
            };
            Some(-rows.map(lse).sum::<f64>() / n)
        }
        _ => None,
    }
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// `n` rows of a 2-D Gaussian with correlation `rho` and unit variances, and its entropy.
pub fn correlated_gaussian(n: usize, rho: f64, seed: u64) -> (Matrix, f64) {
    let mut rng = Rng::new(seed);
    let c = (1.0 - rho * rho).sqrt();
    let data = (0..n)
        .flat_map(|_| {
            let (a, b) = (rng.normal(), rng.normal());
            [a as f32, (rho * a + c * b) as f32]
        })
        .collect();
    let entropy = 1.0 + (2.0 * PI).ln() + 0.5 * (1.0 - rho * rho).ln();
    (Matrix::from_vec(n, 2, data), entropy)
}
