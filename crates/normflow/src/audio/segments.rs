//! Cutting signals into the rows a WaveGlow trains on and synthesises: segments of samples,
//! each with its mel frames as context.

use super::mel::{MelSpectrogram, LOG_FLOOR};
use crate::engine::Matrix;
use crate::{Error, Result};

/// Mel frames per segment of `segment` samples (the segment must be whole hops).
///
/// # Errors
/// [`Error::InvalidConfig`] unless `segment` is a positive multiple of the hop.
pub fn frames_per_segment(mel: &MelSpectrogram, segment: usize) -> Result<usize> {
    let hop = mel.config().hop;
    if segment == 0 || !segment.is_multiple_of(hop) {
        return Err(Error::config(format!("a segment must be a positive multiple of the hop ({hop} samples), got {segment}")));
    }
    Ok(segment / hop)
}

/// One context row: frames `first .. first + frames` of `log_mel` (one row per frame), band-major
/// (`band · frames + frame`); frames past the end read as silence (the log floor).
pub fn segment_context(log_mel: &Matrix, first: usize, frames: usize) -> Vec<f32> {
    let bands = log_mel.cols();
    let mut out = vec![LOG_FLOOR.ln() as f32; bands * frames];
    for f in 0..frames.min(log_mel.rows().saturating_sub(first)) {
        for (b, &v) in log_mel.row(first + f).iter().enumerate() {
            out[b * frames + f] = v;
        }
    }
    out
}

/// The whole segments of `samples` and their contexts (log-mel frames of the whole signal, the
/// frames of samples `k·segment ..` for segment `k`): `(segments, contexts)`, one row each.
///
/// # Errors
/// As [`frames_per_segment`] and [`MelSpectrogram::log_mel`]; [`Error::NotEnoughData`] for a
/// signal shorter than one segment.
pub fn training_segments(samples: &[f32], mel: &MelSpectrogram, segment: usize) -> Result<(Matrix, Matrix)> {
    let frames = frames_per_segment(mel, segment)?;
    let count = samples.len() / segment;
    if count == 0 {
        return Err(Error::NotEnoughData(format!("{} samples are shorter than one segment of {segment}", samples.len())));
    }
    let log_mel = mel.log_mel(samples)?;
    let mut context = Vec::with_capacity(count * frames * log_mel.cols());
    for k in 0..count {
        context.extend(segment_context(&log_mel, k * frames, frames));
    }
    let rows = Matrix::from_vec(count, segment, samples[..count * segment].to_vec());
    Ok((rows, Matrix::from_vec(count, frames * log_mel.cols(), context)))
}

/// A signal of `len` samples from overlapping segments (one row each, segment `k` starting at
/// sample `k · hop`), cross-faded: each sample is the average of the segments covering it,
/// weighted by a sin² window over each segment (`sin²(π (t + ½) / segment)`, positive at every
/// sample), so that independently drawn segments meet without a click at their seams.
///
/// # Panics
/// If the segments do not cover `len` samples (`(rows − 1) · hop + cols < len`) or `hop` is 0.
pub fn overlap_add(segments: &Matrix, hop: usize, len: usize) -> Vec<f32> {
    let (count, width) = (segments.rows(), segments.cols());
    assert!(hop > 0 && count > 0 && (count - 1) * hop + width >= len, "segments must cover the signal");
    let window: Vec<f64> = (0..width).map(|t| (std::f64::consts::PI * (t as f64 + 0.5) / width as f64).sin().powi(2)).collect();
    let (mut sum, mut weight) = (vec![0.0f64; len], vec![0.0f64; len]);
    for k in 0..count {
        let start = k * hop;
        for (t, (&v, &w)) in segments.row(k).iter().zip(&window).enumerate().take(len.saturating_sub(start)) {
            sum[start + t] += w * v as f64;
            weight[start + t] += w;
        }
    }
    sum.iter().zip(&weight).map(|(s, w)| (s / w) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::MelConfig;

    #[test]
    fn segments_carry_their_own_frames() {
        let mel = MelSpectrogram::new(MelConfig { n_mels: 4, ..MelConfig::vocoder(16000) }).unwrap();
        // Silence, then a loud tone: the second segment's context must be the louder one.
        let mut signal = vec![0.0f32; 2048];
        signal.extend((0..2048).map(|i| (i as f32 * 0.3).sin()));
        signal.extend([0.0; 100]);
        let (rows, context) = training_segments(&signal, &mel, 2048).unwrap();
        assert_eq!((rows.rows(), rows.cols()), (2, 2048));
        assert_eq!((context.rows(), context.cols()), (2, 4 * 8));
        let mean = |r: usize| context.row(r).iter().sum::<f32>() / 32.0;
        assert!(mean(1) > mean(0) + 3.0, "{} vs {}", mean(1), mean(0));
        assert_eq!(rows.row(1), &signal[2048..4096]);
        assert!(frames_per_segment(&mel, 1000).is_err());
        assert!(training_segments(&signal[..100], &mel, 2048).is_err());
        // Past the end: the log floor.
        let tail = segment_context(&mel.log_mel(&signal).unwrap(), 16, 8);
        assert!(tail.iter().skip(1).step_by(8).all(|&v| v == LOG_FLOOR.ln() as f32));
    }

    #[test]
    fn overlapping_segments_cross_fade_back_into_one_signal() {
        // Segments cut from one signal at half-segment hops: the signal comes back exactly.
        let signal: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.05).sin() + 0.1 * (i as f32 * 0.7).cos()).collect();
        let (width, hop) = (256, 128);
        let count = (signal.len() - width).div_ceil(hop) + 1;
        let rows: Vec<f32> =
            (0..count).flat_map(|k| (0..width).map(move |t| k * hop + t)).map(|i| signal.get(i).copied().unwrap_or(0.0)).collect();
        let back = overlap_add(&Matrix::from_vec(count, width, rows), hop, signal.len());
        assert!(back.iter().zip(&signal).all(|(a, b)| (a - b).abs() < 1e-5));
        // Two constant segments: the seam is a smooth blend, no step.
        let two = Matrix::from_vec(2, 4, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        let blend = overlap_add(&two, 2, 6);
        assert_eq!((blend[0], blend[1], blend[4], blend[5]), (0.0, 0.0, 1.0, 1.0));
        assert!(blend[2] > 0.0 && blend[2] < blend[3] && blend[3] < 1.0, "{blend:?}");
    }
}
