//! How close a resynthesised signal's spectrogram is to the original's: the log-mel L1 and the
//! mel-cepstral distortion, on log-mel frames (one row per frame, natural log) as
//! [`super::MelSpectrogram::log_mel`] gives them.

use crate::engine::Matrix;

/// Cepstral coefficients `c_1 … c_13` enter the mel-cepstral distortion (`c_0`, the loudness, is
/// left out as is usual).
pub const CEPSTRA: usize = 13;

/// Mean `|a − b|` over the frames both have and every band.
///
/// # Panics
/// If the band counts differ (the caller compares spectrograms of one analysis).
pub fn log_mel_l1(a: &Matrix, b: &Matrix) -> f64 {
    assert_eq!(a.cols(), b.cols(), "log-mel frames of different band counts");
    let frames = a.rows().min(b.rows());
    if frames == 0 {
        return 0.0;
    }
    let sum: f64 =
        a.as_slice()[..frames * a.cols()].iter().zip(&b.as_slice()[..frames * b.cols()]).map(|(x, y)| (x - y).abs() as f64).sum();
    sum / (frames * a.cols()) as f64
}

/// Mel-cepstral distortion in dB, averaged over the frames both have: per frame
/// `(10 / ln 10) · sqrt(2 · Σ_{k=1}^{13} (c_k − c'_k)²)`, the cepstra `c` being the orthonormal
/// DCT-II of the frame's log-mel bands.
///
/// # Panics
/// As [`log_mel_l1`].
pub fn mel_cepstral_distortion(a: &Matrix, b: &Matrix) -> f64 {
    assert_eq!(a.cols(), b.cols(), "log-mel frames of different band counts");
    let (frames, bands) = (a.rows().min(b.rows()), a.cols());
    if frames == 0 {
        return 0.0;
    }
    let cepstra = CEPSTRA.min(bands.saturating_sub(1));
    let scale = (2.0 / bands as f64).sqrt();
    // Basis row k of the orthonormal DCT-II, for k = 1 ..= cepstra.
    let basis: Vec<f64> = (1..=cepstra)
        .flat_map(|k| (0..bands).map(move |n| scale * (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * bands) as f64).cos()))
        .collect();
    let total: f64 = (0..frames)
        .map(|f| {
            let diff: Vec<f64> = a.row(f).iter().zip(b.row(f)).map(|(x, y)| (x - y) as f64).collect();
            let squares: f64 = basis.chunks_exact(bands).map(|row| row.iter().zip(&diff).map(|(w, d)| w * d).sum::<f64>().powi(2)).sum();
            10.0 / std::f64::consts::LN_10 * (2.0 * squares).sqrt()
        })
        .sum();
    total / frames as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(rows: usize, f: impl Fn(usize, usize) -> f32) -> Matrix {
        Matrix::from_vec(rows, 80, (0..rows * 80).map(|i| f(i / 80, i % 80)).collect())
    }

    #[test]
    fn identical_spectrograms_score_zero() {
        let a = frames(5, |f, b| (f * 7 + b) as f32 * 0.01 - 3.0);
        assert_eq!(log_mel_l1(&a, &a), 0.0);
        assert_eq!(mel_cepstral_distortion(&a, &a), 0.0);
    }

    #[test]
    fn a_louder_copy_moves_only_the_first_cepstrum() {
        // A constant offset in every band is a pure c_0 change: L1 sees it, the MCD does not.
        let a = frames(4, |f, b| ((f + b) as f32 * 0.3).sin());
        let b = frames(4, |f, b| ((f + b) as f32 * 0.3).sin() + 0.5);
        assert!((log_mel_l1(&a, &b) - 0.5).abs() < 1e-6);
        assert!(mel_cepstral_distortion(&a, &b) < 1e-4);
    }

    #[test]
    fn one_cepstral_direction_gives_its_closed_form() {
        // b − a along DCT basis row 3 with amplitude 0.2: c_3 differs by 0.2, every other by 0.
        let bands = 80.0f64;
        let direction = |n: usize| ((2.0 / bands).sqrt() * (std::f64::consts::PI * 3.0 * (2 * n + 1) as f64 / (2.0 * bands)).cos()) as f32;
        let a = frames(3, |_, b| -(b as f32) * 0.05);
        let b = frames(3, |_, b| -(b as f32) * 0.05 + 0.2 * direction(b));
        let want = 10.0 / std::f64::consts::LN_10 * (2.0 * 0.04f64).sqrt();
        assert!((mel_cepstral_distortion(&a, &b) - want).abs() < 1e-4, "{} vs {want}", mel_cepstral_distortion(&a, &b));
        // Frames past the shorter spectrogram are not compared.
        let longer = frames(7, |f, b| if f < 3 { -(b as f32) * 0.05 } else { 99.0 });
        assert_eq!(log_mel_l1(&a, &longer), 0.0);
    }
}
