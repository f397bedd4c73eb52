//! The conditioner of a WaveGlow coupling layer: a [`WaveNet`] over the kept channels of a
//! grouped audio segment, conditioned on the segment's mel frames, repeated up to the group rate.
//!
//! A row holds the kept channels (`kept × length` values, channel-major) followed by the context:
//! `mel_bands × frames` values (band-major), where each frame covers `length / frames`
//! consecutive steps of the grouped signal. The output row holds `out_channels × length` values.

use super::wavenet::{WaveNet, WaveNetCache, WaveNetShape};
use crate::engine::{Matrix, Rng};

/// A [`WaveNet`] conditioner on rows of kept channels and mel frames.
#[derive(Clone, Debug)]
pub struct WaveConditioner {
    net: WaveNet,
    length: usize,
    frames: usize,
}

impl WaveConditioner {
    /// A WaveNet of `channels` hidden channels and `layers` dilated layers of `kernel` taps, from
    /// `kept` channels of `length` steps and `mel_bands × frames` context values (0 bands: no
    /// conditioning) to `out_channels` channels; the caller has checked that `frames` divides
    /// `length`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        kept: usize,
        out_channels: usize,
        length: usize,
        mel_bands: usize,
        frames: usize,
        channels: usize,
        layers: usize,
        kernel: usize,
        rng: &mut Rng,
    ) -> Self {
        let shape = WaveNetShape { in_channels: kept, cond_channels: mel_bands, channels, layers, kernel, out_channels };
        Self { net: WaveNet::new(shape, rng), length, frames: frames.max(1) }
    }

    /// The WaveNet's sizes.
    pub fn shape(&self) -> WaveNetShape {
        self.net.shape()
    }

    /// The signal part and the upsampled conditioning of a batch of rows.
    fn split(&self, x: &Matrix) -> (Vec<f32>, Vec<f32>) {
        let s = self.net.shape();
        let (signal_len, bands, len) = (s.in_channels * self.length, s.cond_channels, self.length);
        let step = len / self.frames;
        let mut signal = Vec::with_capacity(x.rows() * signal_len);
        let mut cond = Vec::with_capacity(x.rows() * bands * len);
        for r in 0..x.rows() {
            let row = x.row(r);
            signal.extend_from_slice(&row[..signal_len]);
            for band in row[signal_len..].chunks_exact(self.frames).take(bands) {
                for &v in band {
                    cond.extend(std::iter::repeat_n(v, step));
                }
            }
        }
        (signal, cond)
    }

    /// Output for a batch.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        let (signal, cond) = self.split(x);
        let out = self.net.forward(&signal, &cond, x.rows(), self.length);
        Matrix::from_vec(x.rows(), self.net.shape().out_channels * self.length, out)
    }

    /// Output and backward cache.
    pub fn forward_cached(&self, x: &Matrix) -> (Matrix, WaveNetCache) {
        let (signal, cond) = self.split(x);
        let (out, cache) = self.net.forward_cached(&signal, &cond, x.rows(), self.length);
        (Matrix::from_vec(x.rows(), self.net.shape().out_channels * self.length, out), cache)
    }

    /// Writes parameter gradients into `grads`; returns the input gradient (zero on the
    /// context, which is data).
    pub fn backward(&self, cache: &WaveNetCache, grad_out: Matrix, grads: &mut [f32]) -> Matrix {
        let s = self.net.shape();
        let g_signal = self.net.backward(cache, grad_out.as_slice(), grads);
        let (signal_len, width) = (s.in_channels * self.length, s.in_channels * self.length + s.cond_channels * self.frames);
        let rows = grad_out.rows();
        let mut g = Matrix::zeros(rows, width);
        for r in 0..rows {
            g.row_mut(r)[..signal_len].copy_from_slice(&g_signal[r * signal_len..(r + 1) * signal_len]);
        }
        g
    }

    /// The flat parameters.
    pub fn params(&self) -> &[f32] {
        self.net.params()
    }

    /// The flat parameters, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.net.params_mut()
    }
}
