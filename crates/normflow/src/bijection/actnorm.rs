//! Activation normalisation (Glow, Kingma & Dhariwal 2018, arXiv:1807.03039): a per-dimension
//! affine map whose parameters are initialised from data so that the first batch comes out with
//! zero mean and unit variance.

use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::{pool, Matrix};
use crate::io::TensorSource;
use crate::{Bijection, Result};

/// `x = z·exp(s) + b` per dimension, with `s` and `b` trainable and data-initialised.
///
/// Data-dependent initialisation sets `b` to the data mean and `exp(s)` to its standard
/// deviation; a zero-variance dimension gets `s = 0` instead of `−∞`.
#[derive(Clone, Debug)]
pub struct ActNorm {
    dim: usize,
    /// `[log_scale (dim), shift (dim)]`.
    params: Vec<f32>,
    initialized: bool,
}

struct ActNormCache {
    output: Matrix,
}

impl ActNorm {
    /// An identity ActNorm layer of `dim` dimensions, to be initialised from data.
    pub fn new(dim: usize) -> Self {
        Self { dim, params: vec![0.0; 2 * dim], initialized: false }
    }

    /// Whether data-dependent initialisation has run.
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }
}

impl Bijection for ActNorm {
    fn dim(&self) -> usize {
        self.dim
    }

    fn transform(&self, input: &Matrix, _context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("actnorm input", input, self.dim)?;
        let (s, b) = self.params.split_at(self.dim);
        let mut out = input.clone();
        for i in 0..input.rows() {
            for ((o, &s), &b) in out.row_mut(i).iter_mut().zip(s).zip(b) {
                *o = match direction {
                    Direction::Forward => *o * s.exp() + b,
                    Direction::Inverse => (*o - b) * (-s).exp(),
                };
            }
        }
        let sum: f32 = s.iter().sum();
        let ld = match direction {
            Direction::Forward => sum,
            Direction::Inverse => -sum,
        };
        Ok((out, pool::filled(input.rows(), ld)))
    }

    fn num_params(&self) -> usize {
        2 * self.dim
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        f(&self.params);
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        f(&mut self.params);
    }

    fn train_forward(
        &self,
        input: &Matrix,
        _context: Option<&Matrix>,
        direction: Direction,
        tape: &mut Tape,
    ) -> Result<(Matrix, Vec<f32>)> {
        let (out, ld) = self.transform(input, None, direction)?;
        tape.push(ActNormCache { output: out.clone() });
        Ok((out, ld))
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        let cache: ActNormCache = tape.pop()?;
        let d = self.dim;
        let s = &self.params[..d];
        let (g_s, g_b) = grads.split_at_mut(d);
        g_s.fill(0.0);
        g_b.fill(0.0);
        let mut g_in = grad_out.clone();
        let g_ld_sum: f32 = grad_log_det.iter().sum();
        for i in 0..grad_out.rows() {
            let (g, y) = (grad_out.row(i), cache.output.row(i));
            let gi = g_in.row_mut(i);
            for j in 0..d {
                match direction {
                    // x = z e^s + b: dx/ds = x − b.
                    Direction::Forward => {
                        gi[j] = g[j] * s[j].exp();
                        g_s[j] += g[j] * (y[j] - self.params[d + j]);
                        g_b[j] += g[j];
                    }
                    // z = (x − b) e^−s: dz/ds = −z, dz/db = −e^−s.
                    Direction::Inverse => {
                        let e = (-s[j]).exp();
                        gi[j] = g[j] * e;
                        g_s[j] -= g[j] * y[j];
                        g_b[j] -= g[j] * e;
                    }
                }
            }
        }
        let sign = if direction == Direction::Forward { 1.0 } else { -1.0 };
        g_s.iter_mut().for_each(|v| *v += sign * g_ld_sum);
        Ok(g_in)
    }

    fn data_init(&mut self, x: &Matrix, _context: Option<&Matrix>) -> Result<Matrix> {
        check_width("actnorm input", x, self.dim)?;
        if !self.initialized && x.rows() > 0 {
            let (mean, std) = column_moments(x);
            for j in 0..self.dim {
                self.params[j] = if std[j] > 1e-6 { std[j].ln() as f32 } else { 0.0 };
                self.params[self.dim + j] = mean[j] as f32;
            }
            self.initialized = true;
        }
        Ok(self.transform(x, None, Direction::Inverse)?.0)
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::ActNorm { dim: self.dim }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        out.push((format!("{prefix}params"), self.params.clone()));
        out.push((format!("{prefix}initialized"), vec![f32::from(u8::from(self.initialized))]));
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        self.params = src.take(&format!("{prefix}params"), 2 * self.dim)?;
        self.initialized = src.take(&format!("{prefix}initialized"), 1)?[0] != 0.0;
        Ok(())
    }
}

/// Per-column mean and population standard deviation, accumulated in f64.
pub(crate) fn column_moments(x: &Matrix) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (x.rows().max(1) as f64, x.cols());
    let mut mean = vec![0.0f64; d];
    for i in 0..x.rows() {
        for (m, &v) in mean.iter_mut().zip(x.row(i)) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; d];
    for i in 0..x.rows() {
        for ((s, &v), m) in var.iter_mut().zip(x.row(i)).zip(&mean) {
            *s += (v as f64 - m).powi(2);
        }
    }
    (mean, var.iter().map(|v| (v / n).sqrt()).collect())
}
