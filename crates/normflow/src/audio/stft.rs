//! The short-time Fourier transform's magnitudes, framed as librosa frames them: a periodic
//! Hann window of `win_length` centred in `n_fft`, the signal padded with `n_fft / 2` zeros on
//! each side (`center=True, pad_mode="constant"`), one frame every `hop` samples.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// A planned STFT of one frame size.
#[derive(Clone)]
pub(crate) struct Stft {
    n_fft: usize,
    hop: usize,
    win_length: usize,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft").field("n_fft", &self.n_fft).field("hop", &self.hop).field("win_length", &self.win_length).finish()
    }
}

impl Stft {
    /// Frames of `n_fft` samples every `hop`, windowed by a periodic Hann window of
    /// `win_length ≤ n_fft` samples centred in the frame. The caller has checked the sizes.
    pub(crate) fn new(n_fft: usize, hop: usize, win_length: usize) -> Self {
        let mut window = vec![0.0; n_fft];
        let left = (n_fft - win_length) / 2;
        for (i, w) in window[left..left + win_length].iter_mut().enumerate() {
            *w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / win_length as f64).cos();
        }
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Self { n_fft, hop, win_length, window, fft }
    }

    /// Frequency bins per frame: `n_fft / 2 + 1`.
    pub(crate) fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames of a signal of `len` samples (at least one sample).
    pub(crate) fn frames(&self, len: usize) -> usize {
        1 + (len + 2 * (self.n_fft / 2) - self.n_fft) / self.hop
    }

    /// `|STFT|^power` of `signal`: one row of [`Stft::bins`] values per frame, row-major.
    pub(crate) fn magnitudes(&self, signal: &[f32], power: f64) -> Vec<f64> {
        let (pad, bins) = (self.n_fft / 2, self.bins());
        let frames = self.frames(signal.len());
        let mut out = vec![0.0; frames * bins];
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        for (f, row) in out.chunks_exact_mut(bins).enumerate() {
            // Sample i of the frame is sample f·hop + i − pad of the signal (zero outside it).
            let first = (f * self.hop) as isize - pad as isize;
            for (i, (v, w)) in frame.iter_mut().zip(&self.window).enumerate() {
                let at = first + i as isize;
                *v = if at >= 0 && (at as usize) < signal.len() { f64::from(signal[at as usize]) * w } else { 0.0 };
            }
            self.fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch).expect("buffers from the plan");
            for (m, c) in row.iter_mut().zip(&spectrum) {
                let magnitude = c.norm();
                *m = if power == 1.0 { magnitude } else { magnitude.powf(power) };
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_on_a_bin_peaks_there_with_the_windows_gain() {
        let (n_fft, sr) = (512, 8000.0);
        let stft = Stft::new(n_fft, 128, n_fft);
        // Bin 32 is 500 Hz; an amplitude-1 sine there has |X| = Σw / 2 = n_fft / 4.
        let signal: Vec<f32> = (0..4000).map(|i| (2.0 * std::f64::consts::PI * 500.0 * i as f64 / sr).sin() as f32).collect();
        let m = stft.magnitudes(&signal, 1.0);
        assert_eq!(stft.frames(signal.len()), 1 + 4000 / 128);
        assert_eq!(m.len(), stft.frames(signal.len()) * stft.bins());
        let row = &m[10 * stft.bins()..11 * stft.bins()];
        let peak = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(peak, 32);
        assert!((row[32] - n_fft as f64 / 4.0).abs() < 1e-3 * n_fft as f64, "{}", row[32]);
        let power = stft.magnitudes(&signal, 2.0);
        assert!((power[10 * stft.bins() + 32] - row[32] * row[32]).abs() < 1e-9 * power[10 * stft.bins() + 32]);
    }
}
