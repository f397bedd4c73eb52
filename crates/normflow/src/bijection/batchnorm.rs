//! Batch normalisation as a bijection (RealNVP, Dinh et al. 2017, arXiv:1605.08803, §3.7):
//! in the density direction `z = (x − μ)/√(σ² + ε) · exp(γ) + β`.
//!
//! In training mode the density-direction training pass uses the statistics of the batch it
//! sees (the whole batch of a step: the trainer does not split a flow that tracks statistics
//! across threads, so results do not depend on the core count) and folds them into running
//! averages; every other pass — evaluation, sampling, and training mode's sampling direction —
//! uses the running averages, so `log_prob` stays a deterministic per-row function.
//! [`crate::train::fit`] switches training mode on for its steps and off afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::actnorm::column_moments;
use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::pool::{self, Buf};
use crate::engine::Matrix;
use crate::io::TensorSource;
use crate::{Bijection, Result};

/// Variance floor `ε`.
const EPS: f32 = 1e-5;
/// Weight of a new batch in the running averages.
const MOMENTUM: f32 = 0.1;

/// Batch normalisation with learned log-scale `γ` and shift `β` (both start at 0).
#[derive(Debug)]
pub struct BatchNorm {
    dim: usize,
    /// `[γ (dim), β (dim)]`.
    params: Vec<f32>,
    running: Mutex<(Vec<f32>, Vec<f32>)>,
    training: AtomicBool,
}

struct BatchCache {
    /// Normalised input `x̂ = (x − μ) r`.
    x_hat: Matrix,
    /// `r = 1/√(σ² + ε)` per column.
    r: Buf,
    /// Whether the statistics came from the batch (so gradients flow through them).
    batch_stats: bool,
}

impl BatchNorm {
    /// Identity-initialised batch norm (running mean 0, variance 1) in evaluation mode.
    pub fn new(dim: usize) -> Self {
        Self { dim, params: vec![0.0; 2 * dim], running: Mutex::new((vec![0.0; dim], vec![1.0; dim])), training: AtomicBool::new(false) }
    }

    /// Running mean and variance.
    pub fn running_stats(&self) -> (Vec<f32>, Vec<f32>) {
        self.running.lock().expect("batch-norm statistics lock").clone()
    }

    /// `(x̂, r)` from the running statistics or, when `batch`, from `x` itself (updating the
    /// running averages).
    fn normalise(&self, x: &Matrix, batch: bool) -> (Matrix, Buf) {
        let (mut mean, mut var) = (Buf::zeroed(self.dim), Buf::zeroed(self.dim));
        {
            let mut run = self.running.lock().expect("batch-norm statistics lock");
            if batch {
                batch_moments(x, &mut mean, &mut var);
                for j in 0..self.dim {
                    run.0[j] += MOMENTUM * (mean[j] - run.0[j]);
                    run.1[j] += MOMENTUM * (var[j] - run.1[j]);
                }
            } else {
                mean.copy_from_slice(&run.0);
                var.copy_from_slice(&run.1);
            }
        }
        let r: Buf = var.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect();
        let mut x_hat = x.clone();
        for i in 0..x.rows() {
            for ((v, m), rj) in x_hat.row_mut(i).iter_mut().zip(mean.iter()).zip(r.iter()) {
                *v = (*v - m) * rj;
            }
        }
        (x_hat, r)
    }

    fn run(&self, input: &Matrix, direction: Direction, batch: bool) -> Result<(Matrix, Vec<f32>, BatchCache)> {
        check_width("batch-norm input", input, self.dim)?;
        let (g, b) = self.params.split_at(self.dim);
        let ld_affine: f32 = g.iter().sum();
        match direction {
            Direction::Inverse => {
                let (x_hat, r) = self.normalise(input, batch);
                let mut z = x_hat.clone();
                for i in 0..z.rows() {
                    for ((v, g), b) in z.row_mut(i).iter_mut().zip(g).zip(b) {
                        *v = *v * g.exp() + b;
                    }
                }
                let ld = ld_affine + r.iter().map(|v| v.ln()).sum::<f32>();
                Ok((z, pool::filled(input.rows(), ld), BatchCache { x_hat, r, batch_stats: batch }))
            }
            Direction::Forward => {
                let (mean, r) = {
                    let run = self.running.lock().expect("batch-norm statistics lock");
                    let mean: Buf = run.0.iter().copied().collect();
                    let r: Buf = run.1.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect();
                    (mean, r)
                };
                let mut x = input.clone();
                let mut x_hat = input.clone();
                for i in 0..x.rows() {
                    for j in 0..self.dim {
                        let h = (input.get(i, j) - b[j]) * (-g[j]).exp();
                        x_hat.set(i, j, h);
                        x.set(i, j, h / r[j] + mean[j]);
                    }
                }
                let ld = -(ld_affine + r.iter().map(|v| v.ln()).sum::<f32>());
                Ok((x, pool::filled(input.rows(), ld), BatchCache { x_hat, r, batch_stats: false }))
            }
        }
    }
}

impl Bijection for BatchNorm {
    fn dim(&self) -> usize {
        self.dim
    }

    fn transform(&self, input: &Matrix, _context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        self.run(input, direction, false).map(|(o, l, _)| (o, l))
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

    fn set_training(&mut self, on: bool) {
        self.training.store(on, Ordering::Relaxed);
    }

    fn train_forward(
        &self,
        input: &Matrix,
        _context: Option<&Matrix>,
        direction: Direction,
        tape: &mut Tape,
    ) -> Result<(Matrix, Vec<f32>)> {
        let batch = direction == Direction::Inverse && self.training.load(Ordering::Relaxed) && input.rows() > 1;
        let (out, ld, cache) = self.run(input, direction, batch)?;
        tape.push(cache);
        Ok((out, ld))
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        let c: BatchCache = tape.pop()?;
        let (d, n) = (self.dim, grad_out.rows());
        let (g_gamma, g_beta) = grads.split_at_mut(d);
        let gamma = &self.params[..d];
        let gl: f32 = grad_log_det.iter().sum();
        let mut g_in = Matrix::zeros(n, d);
        for j in 0..d {
            let e = gamma[j].exp();
            match direction {
                // z = x̂ e^γ + β, ld = Σ(γ + ln r).
                Direction::Inverse => {
                    let (mut sg, mut sgx) = (0.0f32, 0.0f32);
                    for i in 0..n {
                        sg += grad_out.get(i, j);
                        sgx += grad_out.get(i, j) * c.x_hat.get(i, j);
                    }
                    g_gamma[j] = sgx * e + gl;
                    g_beta[j] = sg;
                    for i in 0..n {
                        let dxh = grad_out.get(i, j) * e;
                        let v = if c.batch_stats {
                            // Through μ and σ² of the batch, and ln r = −½ ln(σ² + ε) in the log-det.
                            let nf = n as f32;
                            c.r[j] / nf * (nf * dxh - sg * e - c.x_hat.get(i, j) * sgx * e) - gl * c.x_hat.get(i, j) * c.r[j] / nf
                        } else {
                            dxh * c.r[j]
                        };
                        g_in.set(i, j, v);
                    }
                }
                // x = (z − β) e^−γ / r + μ, ld = −Σ(γ + ln r); x̂ = (z − β) e^−γ.
                Direction::Forward => {
                    let (mut sg, mut sgx) = (0.0f32, 0.0f32);
                    for i in 0..n {
                        let g = grad_out.get(i, j);
                        sg += g;
                        sgx += g * c.x_hat.get(i, j);
                        g_in.set(i, j, g * (-gamma[j]).exp() / c.r[j]);
                    }
                    g_gamma[j] = -sgx / c.r[j] - gl;
                    g_beta[j] = -sg * (-gamma[j]).exp() / c.r[j];
                }
            }
        }
        Ok(g_in)
    }

    fn data_init(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        self.recalibrate(x, context)
    }

    fn tracks_statistics(&self) -> bool {
        true
    }

    fn recalibrate(&mut self, x: &Matrix, _context: Option<&Matrix>) -> Result<Matrix> {
        check_width("batch-norm input", x, self.dim)?;
        if x.rows() > 1 {
            let (m, s) = column_moments(x);
            *self.running.get_mut().expect("batch-norm statistics lock") =
                (m.iter().map(|&v| v as f32).collect(), s.iter().map(|&v| (v * v) as f32).collect());
        }
        Ok(self.inverse_and_log_det(x, None)?.0)
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::BatchNorm { dim: self.dim }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        let (m, v) = self.running_stats();
        out.push((format!("{prefix}params"), self.params.clone()));
        out.push((format!("{prefix}running_mean"), m));
        out.push((format!("{prefix}running_var"), v));
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        self.params = src.take(&format!("{prefix}params"), 2 * self.dim)?;
        let m = src.take(&format!("{prefix}running_mean"), self.dim)?;
        let v = src.take(&format!("{prefix}running_var"), self.dim)?;
        if v.iter().any(|&x| x < 0.0) {
            return Err(src.error("batch-norm running variance is negative"));
        }
        *self.running.get_mut().expect("batch-norm statistics lock") = (m, v);
        Ok(())
    }
}

/// Per-column mean and (biased) variance of `x`, accumulated in `f64`, into `mean` and `var`.
fn batch_moments(x: &Matrix, mean: &mut [f32], var: &mut [f32]) {
    let n = x.rows().max(1) as f64;
    for j in 0..x.cols() {
        let m = (0..x.rows()).map(|i| x.get(i, j) as f64).sum::<f64>() / n;
        let v = (0..x.rows()).map(|i| (x.get(i, j) as f64 - m).powi(2)).sum::<f64>() / n;
        mean[j] = m as f32;
        var[j] = v as f32;
    }
}
