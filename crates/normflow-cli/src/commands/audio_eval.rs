//! `normflow audio eval`: a vocoder scored on WAV files, by likelihood and by analysis then
//! synthesis.

use std::time::Instant;

use normflow::audio::{log_mel_l1, mel_cepstral_distortion, training_segments};
use serde_json::json;

use super::audio_vocoder::{wav_files, Vocoder};
use super::CliError;
use crate::cli::AudioEvalArgs;

/// One file's scores.
struct FileScores {
    file: String,
    seconds: f64,
    /// Mean negative log-likelihood per sample over the file's whole segments (nats), and
    /// how many segments; `None` for a file shorter than one segment.
    nll: Option<(f64, usize)>,
    log_mel_l1: f64,
    mcd_db: f64,
    synthesis_seconds: f64,
}

/// `audio eval`: per file (resampled to the vocoder's rate when needed), the NLL of its whole
/// segments, then its log-mel resynthesised and
/// analysed again: log-mel L1 and mel-cepstral distortion against the input (on the float
/// samples, before any 16-bit rounding) and the real-time factor of the synthesis.
pub fn eval(a: AudioEvalArgs) -> Result<(), CliError> {
    let vocoder = Vocoder::load(&a.model)?;
    let segment = vocoder.flow().dim();
    let mut scores = Vec::new();
    for path in wav_files(&a.data)? {
        let (wav, _) = vocoder.read_wav(&path)?;
        let nll = if wav.samples.len() >= segment {
            let (x, context) = training_segments(&wav.samples, vocoder.mel(), segment)?;
            let lp = vocoder.flow().log_prob(&x, Some(&context)).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
            let mean = -lp.iter().map(|&v| v as f64).sum::<f64>() / (lp.len() * segment) as f64;
            Some((mean, lp.len()))
        } else {
            None
        };
        let log_mel = vocoder.log_mel(&wav.samples, &path)?;
        let start = Instant::now();
        let samples = vocoder.synthesize(&log_mel, wav.samples.len(), a.temperature, a.seed)?;
        let synthesis_seconds = start.elapsed().as_secs_f64();
        let out_mel = vocoder.log_mel(&samples, &path)?;
        scores.push(FileScores {
            file: path.display().to_string(),
            seconds: wav.seconds(),
            nll,
            log_mel_l1: log_mel_l1(&log_mel, &out_mel),
            mcd_db: mel_cepstral_distortion(&log_mel, &out_mel),
            synthesis_seconds,
        });
    }
    let n = scores.len() as f64;
    let segments: usize = scores.iter().filter_map(|s| s.nll.map(|(_, k)| k)).sum();
    let nll = (segments > 0).then(|| scores.iter().filter_map(|s| s.nll.map(|(v, k)| v * k as f64)).sum::<f64>() / segments as f64);
    let audio_seconds: f64 = scores.iter().map(|s| s.seconds).sum();
    let synthesis_seconds: f64 = scores.iter().map(|s| s.synthesis_seconds).sum();
    let l1 = scores.iter().map(|s| s.log_mel_l1).sum::<f64>() / n;
    let mcd = scores.iter().map(|s| s.mcd_db).sum::<f64>() / n;
    let rtf = synthesis_seconds / audio_seconds.max(f64::MIN_POSITIVE);
    if a.json {
        let files: Vec<_> = scores
            .iter()
            .map(|s| {
                json!({"file": s.file, "seconds": s.seconds, "nll_per_sample": s.nll.map(|v| v.0), "log_mel_l1": s.log_mel_l1,
                       "mcd_db": s.mcd_db, "real_time_factor": s.synthesis_seconds / s.seconds.max(f64::MIN_POSITIVE)})
            })
            .collect();
        println!(
            "{}",
            json!({"files": scores.len(), "audio_seconds": audio_seconds, "segments": segments, "nll_per_sample": nll,
                   "log_mel_l1": l1, "mcd_db": mcd, "real_time_factor": rtf, "synthesis_seconds": synthesis_seconds,
                   "temperature": a.temperature, "per_file": files})
        );
        return Ok(());
    }
    println!("{:<40} {:>8} {:>12} {:>10} {:>9} {:>7}", "file", "seconds", "NLL/sample", "log-mel L1", "MCD (dB)", "RTF");
    for s in &scores {
        let nll = s.nll.map_or("-".to_string(), |v| format!("{:.4}", v.0));
        let rtf = s.synthesis_seconds / s.seconds.max(f64::MIN_POSITIVE);
        println!("{:<40} {:>8.2} {:>12} {:>10.3} {:>9.2} {:>7.3}", s.file, s.seconds, nll, s.log_mel_l1, s.mcd_db, rtf);
    }
    let nll = nll.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!("{:<40} {:>8.2} {:>12} {:>10.3} {:>9.2} {:>7.3}", format!("all {} files", scores.len()), audio_seconds, nll, l1, mcd, rtf);
    Ok(())
}
