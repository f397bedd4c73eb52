//! Mel spectrograms as librosa computes them (`librosa.feature.melspectrogram` with its
//! defaults: Slaney's mel scale and area normalisation, a periodic Hann window, centred zero-
//! padded frames), and the log compression vocoders train on, `ln(max(mel, 1e-5))`.

use serde::{Deserialize, Serialize};

use super::stft::Stft;
use crate::engine::Matrix;
use crate::{Error, Result};

/// The floor of the log compression: `ln(max(mel, LOG_FLOOR))`.
pub const LOG_FLOOR: f64 = 1e-5;

/// How a mel spectrogram is computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MelConfig {
    /// Samples per second of the signals it takes.
    pub sample_rate: u32,
    /// Samples per frame (the FFT size).
    pub n_fft: usize,
    /// Samples from one frame to the next.
    pub hop: usize,
    /// Length of the Hann window, at most `n_fft` (centred in the frame).
    pub win_length: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Lowest frequency of the filterbank, in Hz.
    pub fmin: f64,
    /// Highest frequency, in Hz (at most half the sample rate).
    pub fmax: f64,
    /// Exponent of the STFT magnitude: 1 (magnitude, as vocoders use) or 2 (power).
    pub power: f64,
}

impl MelConfig {
    /// The settings of WaveGlow-style vocoders at `sample_rate`: 80 bands up to half the rate
    /// (8 kHz at most), frames of 1024 samples every 256, magnitudes.
    pub fn vocoder(sample_rate: u32) -> Self {
        Self {
            sample_rate,
            n_fft: 1024,
            hop: 256,
            win_length: 1024,
            n_mels: 80,
            fmin: 0.0,
            fmax: (f64::from(sample_rate) / 2.0).min(8000.0),
            power: 1.0,
        }
    }

    /// Checks the sizes and frequencies.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        let nyquist = f64::from(self.sample_rate) / 2.0;
        let checks = [
            (self.sample_rate > 0, "the sample rate must be positive".to_string()),
            (self.n_fft >= 2, format!("n_fft must be at least 2, got {}", self.n_fft)),
            (self.hop >= 1, "the hop must be at least one sample".into()),
            (
                self.win_length >= 1 && self.win_length <= self.n_fft,
                format!("the window ({}) must be 1..=n_fft ({})", self.win_length, self.n_fft),
            ),
            (self.n_mels >= 1, "at least one mel band".into()),
            (
                self.fmin >= 0.0 && self.fmin < self.fmax && self.fmax <= nyquist,
                format!("need 0 <= fmin < fmax <= {nyquist} Hz (half the sample rate), got {} and {}", self.fmin, self.fmax),
            ),
            (self.power == 1.0 || self.power == 2.0, format!("the power must be 1 or 2, got {}", self.power)),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(Error::config(why)),
            None => Ok(()),
        }
    }
}

/// A planned mel spectrogram: the STFT and the filterbank.
#[derive(Clone, Debug)]
pub struct MelSpectrogram {
    config: MelConfig,
    stft: Stft,
    /// `[n_mels × bins]`, row-major: each band's weight on each frequency bin.
    filters: Vec<f64>,
}

impl MelSpectrogram {
    /// Plans the transform.
    ///
    /// # Errors
    /// As [`MelConfig::validate`].
    pub fn new(config: MelConfig) -> Result<Self> {
        config.validate()?;
        let stft = Stft::new(config.n_fft, config.hop, config.win_length);
        let filters = mel_filters(f64::from(config.sample_rate), config.n_fft, config.n_mels, config.fmin, config.fmax);
        Ok(Self { config, stft, filters })
    }

    /// The settings.
    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    /// Frames of a signal of `len` samples.
    pub fn frames(&self, len: usize) -> usize {
        self.stft.frames(len)
    }

    /// The mel spectrogram: one row of `n_mels` bands per frame.
    ///
    /// # Errors
    /// [`Error::NotEnoughData`] for an empty signal; [`Error::NonFiniteInput`] naming the first
    /// NaN or infinite sample (as its 1-based row).
    pub fn mel(&self, signal: &[f32]) -> Result<Matrix> {
        if signal.is_empty() {
            return Err(Error::NotEnoughData("an empty signal has no spectrogram".into()));
        }
        if let Some(i) = signal.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteInput { what: "signal".into(), row: i + 1, column: 1 });
        }
        let bins = self.stft.bins();
        let spectra = self.stft.magnitudes(signal, self.config.power);
        let frames = spectra.len() / bins;
        let mut out = Vec::with_capacity(frames * self.config.n_mels);
        for spectrum in spectra.chunks_exact(bins) {
            for band in self.filters.chunks_exact(bins) {
                out.push(band.iter().zip(spectrum).map(|(w, s)| w * s).sum::<f64>() as f32);
            }
        }
        Ok(Matrix::from_vec(frames, self.config.n_mels, out))
    }

    /// `ln(max(mel, 1e-5))` of [`MelSpectrogram::mel`].
    ///
    /// # Errors
    /// As [`MelSpectrogram::mel`].
    pub fn log_mel(&self, signal: &[f32]) -> Result<Matrix> {
        let mut m = self.mel(signal)?;
        m.as_mut_slice().iter_mut().for_each(|v| *v = f64::from(*v).max(LOG_FLOOR).ln() as f32);
        Ok(m)
    }
}

/// Hz to mels on Slaney's scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
pub fn hz_to_mel(hz: f64) -> f64 {
    let (linear_step, knee_hz, knee_mel, log_step) = slaney();
    if hz >= knee_hz {
        knee_mel + (hz / knee_hz).ln() / log_step
    } else {
        hz / linear_step
    }
}

/// Mels to Hz on Slaney's scale (the inverse of [`hz_to_mel`]).
pub fn mel_to_hz(mel: f64) -> f64 {
    let (linear_step, knee_hz, knee_mel, log_step) = slaney();
    if mel >= knee_mel {
        knee_hz * (log_step * (mel - knee_mel)).exp()
    } else {
        mel * linear_step
    }
}

/// Slaney's constants: Hz per mel below the knee, the knee in Hz and in mels, and the log step.
fn slaney() -> (f64, f64, f64, f64) {
    let linear_step = 200.0 / 3.0;
    (linear_step, 1000.0, 1000.0 / linear_step, 6.4f64.ln() / 27.0)
}

/// The filterbank `[n_mels × (n_fft/2 + 1)]`: triangles between mel-spaced edges, each scaled to
/// unit area (`2 / (upper edge − lower edge)` in Hz), as `librosa.filters.mel` builds it.
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<f64> {
    let bins = n_fft / 2 + 1;
    let freqs: Vec<f64> = (0..bins).map(|k| k as f64 * sample_rate / n_fft as f64).collect();
    let (lo, hi) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let edges: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut filters = vec![0.0; n_mels * bins];
    for (m, band) in filters.chunks_exact_mut(bins).enumerate() {
        let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
        let area = 2.0 / (right - left);
        for (w, &f) in band.iter_mut().zip(&freqs) {
            let rising = (f - left) / (centre - left);
            let falling = (right - f) / (right - centre);
            *w = rising.min(falling).max(0.0) * area;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_scale_inverts_and_has_its_knee_at_1_khz() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        for hz in [0.0, 60.0, 999.0, 1000.0, 4000.0, 11025.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9 * (1.0 + hz));
        }
    }

    #[test]
    fn bad_settings_and_signals_are_refused() {
        let good = MelConfig::vocoder(16000);
        assert!(good.validate().is_ok());
        for bad in [
            MelConfig { fmax: 9000.0, ..good.clone() },
            MelConfig { win_length: 2048, ..good.clone() },
            MelConfig { hop: 0, ..good.clone() },
            MelConfig { power: 3.0, ..good.clone() },
            MelConfig { n_mels: 0, ..good.clone() },
        ] {
            assert!(MelSpectrogram::new(bad).is_err());
        }
        let mel = MelSpectrogram::new(good).unwrap();
        assert!(mel.mel(&[]).is_err());
        assert!(matches!(mel.mel(&[0.0, f32::NAN]), Err(Error::NonFiniteInput { row: 2, .. })));
        // Silence is a valid signal: every band at the log floor.
        let quiet = mel.log_mel(&[0.0; 3000]).unwrap();
        assert!(quiet.as_slice().iter().all(|&v| (f64::from(v) - LOG_FLOOR.ln()).abs() < 1e-6));
    }
}
