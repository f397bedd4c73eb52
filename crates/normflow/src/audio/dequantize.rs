//! Dequantisation of integer PCM samples for training a density on them.
//!
//! A file of `b`-bit integers holds samples on a grid of step `2 / 2^b` (after scaling to
//! `[-1, 1]`); a continuous density can put unbounded likelihood on a grid value that repeats
//! (digital silence is the usual one), so its training chases those instead of the speech.
//! Adding noise uniform over one step turns the grid into a density whose likelihood is a
//! lower bound on the discrete one (Theis et al. 2016), as `Dequantize` does for pixels.

use super::WavFormat;
use crate::engine::Rng;

/// The grid step of integer samples of this format scaled to `[-1, 1]`, or `None` for floats
/// and for formats mixed down from several channels (whose averages lie between grid values).
pub fn quantum(format: WavFormat) -> Option<f32> {
    (!format.float && format.channels == 1 && (8..=32).contains(&format.bits)).then(|| 2.0 / 2f32.powi(i32::from(format.bits)))
}

/// Adds noise uniform on `[-step/2, step/2)` to every sample.
pub fn dequantize(samples: &mut [f32], step: f32, rng: &mut Rng) {
    for v in samples {
        *v += step * (rng.uniform() as f32 - 0.5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_grids_get_noise_within_half_a_step_and_floats_none() {
        let pcm16 = WavFormat { channels: 1, bits: 16, float: false };
        let step = quantum(pcm16).unwrap();
        assert_eq!(step, 1.0 / 32768.0);
        assert_eq!(quantum(WavFormat { channels: 1, bits: 8, float: false }), Some(1.0 / 128.0));
        assert_eq!(quantum(WavFormat { channels: 1, bits: 32, float: true }), None);
        assert_eq!(quantum(WavFormat { channels: 2, bits: 16, float: false }), None);
        // Digital silence and a few grid values: every sample moves, by under half a step, and
        // the noise is centred.
        let grid: Vec<f32> = (0..20_000).map(|i| ((i % 7) as f32 - 3.0) * step * 100.0 * ((i % 3 == 0) as u8 as f32)).collect();
        let mut noisy = grid.clone();
        dequantize(&mut noisy, step, &mut Rng::new(1));
        let offsets: Vec<f64> = noisy.iter().zip(&grid).map(|(a, b)| f64::from((a - b) / step)).collect();
        assert!(offsets.iter().all(|o| o.abs() <= 0.5 + 1e-3), "noise beyond half a step");
        assert!(offsets.iter().filter(|o| **o == 0.0).count() < 10, "samples left on the grid");
        let mean = offsets.iter().sum::<f64>() / offsets.len() as f64;
        assert!(mean.abs() < 0.01, "noise not centred: {mean}");
    }
}
