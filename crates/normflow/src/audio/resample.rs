//! Sample-rate conversion of mono signals (rubato's synchronous FFT resampler: band-limited,
//! for a fixed pair of integer rates), so that recordings at other rates can train or drive a
//! vocoder.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::{Error, Result};

/// Input frames per FFT block (rubato rounds it to a size valid for the rate pair).
const CHUNK: usize = 1024;

/// `samples` at `from` Hz resampled to `to` Hz: `⌈len · to / from⌉` samples (rubato trims its
/// filter delay, so the output lines up with the input).
///
/// # Errors
/// [`Error::InvalidConfig`] for a zero rate or a rate pair rubato cannot build.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == 0 || to == 0 {
        return Err(Error::config(format!("sample rates must be positive, got {from} Hz to {to} Hz")));
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let bad = |e: &dyn std::fmt::Display| Error::config(format!("resampling {from} Hz to {to} Hz: {e}"));
    let input: Vec<f64> = samples.iter().map(|&v| f64::from(v)).collect();
    let mut resampler = Fft::<f64>::new(from as usize, to as usize, CHUNK, 1, FixedSync::Both).map_err(|e| bad(&e))?;
    let adapter = InterleavedSlice::new(&input, 1, input.len()).map_err(|e| bad(&e))?;
    let out = resampler.process_all(&adapter, input.len(), None).map_err(|e| bad(&e))?;
    Ok(out.take_data().into_iter().map(|v| v as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The amplitude of a `hz` sine in `x` at `rate` (least squares against sine and cosine).
    fn amplitude(x: &[f32], hz: f64, rate: f64) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * hz * i as f64 / rate;
            s += v as f64 * phase.sin();
            c += v as f64 * phase.cos();
        }
        2.0 * (s * s + c * c).sqrt() / x.len() as f64
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_level_across_rates() {
        let tone: Vec<f32> = (0..22_050).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 22_050.0).sin()).collect();
        let down = resample(&tone, 22_050, 16_000).unwrap();
        assert!((down.len() as i64 - 16_000).abs() <= 1, "{} samples", down.len());
        // The middle (away from the edges' filter ramps): still a 440 Hz tone of amplitude 0.5,
        // and nothing at a wrong pitch.
        let mid = &down[2000..14_000];
        assert!((amplitude(mid, 440.0, 16_000.0) - 0.5).abs() < 0.01, "{}", amplitude(mid, 440.0, 16_000.0));
        assert!(amplitude(mid, 440.0 * 22_050.0 / 16_000.0, 16_000.0) < 0.01);
        // And back up: the tone again (to a fraction of a sample's delay: 0.03 of 0.5 is 0.06 rad,
        // a fifth of a sample at 440 Hz).
        let up = resample(&down, 16_000, 22_050).unwrap();
        assert!((up.len() as i64 - 22_050).abs() <= 2);
        let err = up[3000..19_000].iter().zip(&tone[3000..19_000]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err < 0.05, "round trip error {err}");
        assert_eq!(resample(&tone, 16_000, 16_000).unwrap(), tone);
        assert!(resample(&tone, 0, 16_000).is_err());
    }
}
