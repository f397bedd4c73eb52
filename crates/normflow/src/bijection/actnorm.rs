//! Activation normalisation (Glow, Kingma & Dhariwal 2018, arXiv:1807.03039): a per-dimension
//! (or, on images, per-channel) affine map whose parameters are initialised from data so that
//! the first batch comes out with zero mean and unit variance.

use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::{fastmath, pool, Matrix};
use crate::io::TensorSource;
use crate::{Bijection, Result};

/// `x = z·exp(s) + b` per channel, with `s` and `b` trainable and data-initialised. A channel
/// is one column of tabular rows, or `pixels` consecutive values of image rows (C×H×W: the
/// log-det is then `pixels · Σ s`, as in Glow).
///
/// Data-dependent initialisation sets `b` to the channel's mean and `exp(s)` to its standard
/// deviation; a zero-variance channel gets `s = 0` instead of `−∞`.
#[derive(Clone, Debug)]
pub struct ActNorm {
    channels: usize,
    pixels: usize,
    /// `[log_scale (channels), shift (channels)]`.
    params: Vec<f32>,
    initialized: bool,
}

struct ActNormCache {
    output: Matrix,
}

impl ActNorm {
    /// An identity ActNorm layer of `dim` dimensions, to be initialised from data.
    pub fn new(dim: usize) -> Self {
        Self::per_channel(dim, 1)
    }

    /// An identity ActNorm layer over image rows of `channels` channels of `pixels` values
    /// each (one scale and shift per channel), to be initialised from data.
    pub fn per_channel(channels: usize, pixels: usize) -> Self {
        Self { channels, pixels: pixels.max(1), params: vec![0.0; 2 * channels], initialized: false }
    }

    fn width(&self) -> usize {
        self.channels * self.pixels
    }

    /// Whether data-dependent initialisation has run.
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }
}

impl Bijection for ActNorm {
    fn dim(&self) -> usize {
        self.width()
    }

    fn transform(&self, input: &Matrix, _context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("actnorm input", input, self.width())?;
        let (s, b) = self.params.split_at(self.channels);
        let mut out = input.clone();
        for i in 0..input.rows() {
            for ((plane, &s), &b) in out.row_mut(i).chunks_mut(self.pixels).zip(s).zip(b) {
                let e = match direction {
                    Direction::Forward => s.exp(),
                    Direction::Inverse => (-s).exp(),
                };
                for o in plane {
                    *o = match direction {
                        Direction::Forward => *o * e + b,
                        Direction::Inverse => (*o - b) * e,
                    };
                }
            }
        }
        let sum: f32 = s.iter().sum::<f32>() * self.pixels as f32;
        let ld = match direction {
            Direction::Forward => sum,
            Direction::Inverse => -sum,
        };
        Ok((out, pool::filled(input.rows(), ld)))
    }

    fn num_params(&self) -> usize {
        2 * self.channels
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
        let (d, p) = (self.channels, self.pixels);
        let s = &self.params[..d];
        let (g_s, g_b) = grads.split_at_mut(d);
        g_s.fill(0.0);
        g_b.fill(0.0);
        let mut g_in = grad_out.clone();
        let g_ld_sum: f32 = grad_log_det.iter().sum();
        for i in 0..grad_out.rows() {
            let planes = g_in.row_mut(i).chunks_mut(p).zip(cache.output.row(i).chunks(p));
            for (j, (g, y)) in planes.enumerate() {
                let (sum_g, sum_gy) = (fastmath::sum(g), fastmath::dot(g, y));
                match direction {
                    // x = z e^s + b: dx/dz = e^s, dx/ds = x − b, dx/db = 1.
                    Direction::Forward => {
                        let e = s[j].exp();
                        g.iter_mut().for_each(|v| *v *= e);
                        g_s[j] += sum_gy - self.params[d + j] * sum_g;
                        g_b[j] += sum_g;
                    }
                    // z = (x − b) e^−s: dz/dx = e^−s, dz/ds = −z, dz/db = −e^−s.
                    Direction::Inverse => {
                        let e = (-s[j]).exp();
                        g.iter_mut().for_each(|v| *v *= e);
                        g_s[j] -= sum_gy;
                        g_b[j] -= sum_g * e;
                    }
                }
            }
        }
        let sign = if direction == Direction::Forward { 1.0 } else { -1.0 };
        g_s.iter_mut().for_each(|v| *v += sign * p as f32 * g_ld_sum);
        Ok(g_in)
    }

    fn data_init(&mut self, x: &Matrix, _context: Option<&Matrix>) -> Result<Matrix> {
        check_width("actnorm input", x, self.width())?;
        if !self.initialized && x.rows() > 0 {
            // A channel's pixels are more samples of it: its moments over rows and pixels.
            let (mean, std) = channel_moments(x, self.channels, self.pixels);
            for j in 0..self.channels {
                self.params[j] = if std[j] > 1e-6 { std[j].ln() as f32 } else { 0.0 };
                self.params[self.channels + j] = mean[j] as f32;
            }
            self.initialized = true;
        }
        Ok(self.transform(x, None, Direction::Inverse)?.0)
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::ActNorm { channels: self.channels, pixels: self.pixels }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        out.push((format!("{prefix}params"), self.params.clone()));
        out.push((format!("{prefix}initialized"), vec![f32::from(u8::from(self.initialized))]));
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        self.params = src.take(&format!("{prefix}params"), 2 * self.channels)?;
        self.initialized = src.take(&format!("{prefix}initialized"), 1)?[0] != 0.0;
        Ok(())
    }
}

/// Per-channel mean and population standard deviation over rows and each channel's `pixels`
/// consecutive values, accumulated in f64.
fn channel_moments(x: &Matrix, channels: usize, pixels: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.rows() * pixels).max(1) as f64;
    let mut mean = vec![0.0f64; channels];
    for i in 0..x.rows() {
        for (m, plane) in mean.iter_mut().zip(x.row(i).chunks(pixels)) {
            *m += plane.iter().map(|&v| v as f64).sum::<f64>();
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; channels];
    for i in 0..x.rows() {
        for ((s, plane), m) in var.iter_mut().zip(x.row(i).chunks(pixels)).zip(&mean) {
            *s += plane.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>();
        }
    }
    (mean, var.iter().map(|v| (v / n).sqrt()).collect())
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
