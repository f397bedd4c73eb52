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
}
