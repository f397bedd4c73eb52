//! `normflow audio train` and `audio vocode`: a WaveGlow vocoder on WAV files.

use std::path::{Path, PathBuf};

use normflow::audio::{
    dequantize, frames_per_segment, overlap_add, quantum, resample, segment_context, training_segments, MelConfig, MelSpectrogram, Wav,
    WavEncoding,
};
use normflow::data::{read_table, CsvOptions};
use normflow::flows::WaveGlowConfig;
use normflow::train::{fit, resume_fit, FitConfig};
use normflow::{Flow, Matrix, Rng};
use serde_json::json;

use super::{checkpoint, CliError};
use crate::cli::{AudioSynthArgs, AudioTrainArgs, AudioVocodeArgs};
use crate::plot::spectrograms;
use crate::progress::TrainingBar;

/// Where a vocoder keeps its mel settings in the model file.
const MEL_KEY: &str = "mel";

/// The WAV files named: files as given, folders' `.wav` files in name order.
pub(crate) fn wav_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| normflow::Error::Io { path: p.clone(), source: e })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
                .collect();
            if found.is_empty() {
                return Err(CliError::Usage(format!("{}: no .wav files in this folder", p.display())));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// `audio train`: segments of the WAV files with their log-mel frames, a WaveGlow fitted to them.
pub fn train(a: AudioTrainArgs) -> Result<(), CliError> {
    let max_seconds = checkpoint::time_limit(a.minutes)?;
    let checkpoint_path = checkpoint::prepare(&a.checkpoint, &a.output)?;
    let files = wav_files(&a.data)?;
    let rate = match a.sample_rate {
        Some(0) => return Err(CliError::Usage("--sample-rate must be positive".into())),
        Some(r) => r,
        None => Wav::read(&files[0])?.sample_rate,
    };
    let config = MelConfig::vocoder(rate);
    let mel = MelSpectrogram::new(config.clone())?;
    let frames = frames_per_segment(&mel, a.segment)?;
    let (mut rows, mut contexts) = (Vec::new(), Vec::new());
    let (mut seconds, mut resampled) = (0.0, 0);
    let mut noise = Rng::new(a.seed.wrapping_add(1));
    for path in &files {
        let wav = Wav::read(path)?;
        seconds += wav.seconds();
        let samples = if wav.sample_rate == rate {
            // Integer samples as read lie on a grid: spread over one step of it (see
            // `audio::dequantize`). Resampled ones are off the grid already.
            let mut samples = wav.samples;
            if let Some(step) = quantum(wav.source) {
                dequantize(&mut samples, step, &mut noise);
            }
            samples
        } else {
            resampled += 1;
            resample(&wav.samples, wav.sample_rate, rate).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        };
        if samples.len() < a.segment {
            continue;
        }
        let (x, c) = training_segments(&samples, &mel, a.segment).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        rows.extend_from_slice(x.as_slice());
        contexts.extend_from_slice(c.as_slice());
    }
    let count = rows.len() / a.segment;
    if count < 2 {
        return Err(CliError::Usage(format!(
            "{} file(s) hold {count} whole segment(s) of {} samples; need at least 2 (more audio, or a shorter --segment)",
            files.len(),
            a.segment
        )));
    }
    let x = Matrix::from_vec(count, a.segment, rows);
    let context = Matrix::from_vec(count, contexts.len() / count, contexts);
    let glow = WaveGlowConfig {
        flows: a.flows,
        channels: a.channels,
        layers: a.layers,
        early_every: a.early_every,
        early_size: a.early_size,
        ..WaveGlowConfig::new(a.segment, config.n_mels, frames)
    };
    let mut flow = glow.init(&mut Rng::new(a.seed))?;
    flow.meta.extra.insert(MEL_KEY.into(), json!(config));
    if a.checkpoint.resume {
        checkpoint::check_same_architecture(&checkpoint_path, &flow, "vocoder architecture")?;
    }
    let fit_config = FitConfig {
        lr: a.lr,
        batch_size: a.batch_size,
        max_epochs: a.epochs,
        seed: a.seed,
        max_seconds,
        min_gain_z: None,
        checkpoint: checkpoint::config(&a.checkpoint, &checkpoint_path),
        ..FitConfig::default()
    };
    let bar = TrainingBar::new(a.quiet);
    let result = if a.checkpoint.resume {
        resume_fit(&checkpoint_path, &x, Some(&context), &fit_config, &mut |p| bar.update(p))
    } else {
        fit(flow, &x, Some(&context), &fit_config, &mut |p| bar.update(p))
    };
    bar.finish();
    let (flow, history) = result?;
    flow.save(&a.output)?;
    let s = &history.summary;
    if !a.quiet {
        eprintln!(
            "trained a WaveGlow ({} params) on {count} segments of {} samples ({seconds:.1} s of audio at {rate} Hz, {resampled} file(s) resampled to it) for {} steps ({}): best validation NLL {:.4} nats per sample; saved {}",
            flow.num_params(),
            a.segment,
            s.steps,
            s.stopped.replace('_', " "),
            s.best_val_nll / a.segment as f64,
            a.output.display()
        );
    }
    Ok(())
}

/// A vocoder loaded from its model file, with the mel analysis it was trained on.
pub(crate) struct Vocoder {
    flow: Flow,
    mel: MelSpectrogram,
    path: PathBuf,
}

impl Vocoder {
    /// Loads a model written by `audio train`.
    pub(crate) fn load(path: &Path) -> Result<Self, CliError> {
        let flow = Flow::load(path)?;
        let config: MelConfig = flow.meta.extra.get(MEL_KEY).and_then(|v| serde_json::from_value(v.clone()).ok()).ok_or_else(|| {
            CliError::Usage(format!("{}: not a vocoder (no mel settings; train one with `normflow audio train`)", path.display()))
        })?;
        Ok(Self { flow, mel: MelSpectrogram::new(config)?, path: path.to_path_buf() })
    }

    /// The model.
    pub(crate) fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The mel analysis of the training data.
    pub(crate) fn mel(&self) -> &MelSpectrogram {
        &self.mel
    }

    /// The vocoder's sample rate.
    pub(crate) fn rate(&self) -> u32 {
        self.mel.config().sample_rate
    }

    /// A WAV file, resampled to the vocoder's rate when it has another, and its own rate.
    pub(crate) fn read_wav(&self, path: &Path) -> Result<(Wav, u32), CliError> {
        let mut wav = Wav::read(path)?;
        let (own, rate) = (wav.sample_rate, self.rate());
        if own != rate {
            wav.samples = resample(&wav.samples, own, rate).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
            wav.sample_rate = rate;
        }
        Ok((wav, own))
    }

    /// The log-mel of a signal read from `path`.
    pub(crate) fn log_mel(&self, samples: &[f32], path: &Path) -> Result<Matrix, CliError> {
        self.mel.log_mel(samples).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
    }

    /// `len` samples drawn given `log_mel` (one row of bands per frame): segments at half-segment
    /// hops, each drawn at `temperature` given its own frames, cross-faded into one signal
    /// ([`overlap_add`]: independent draws meet without clicks at the seams), within full scale.
    pub(crate) fn synthesize(&self, log_mel: &Matrix, len: usize, temperature: f32, seed: u64) -> Result<Vec<f32>, CliError> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(CliError::Usage(format!("--temperature must be positive and finite, got {temperature}")));
        }
        let segment = self.flow.dim();
        let frames = frames_per_segment(&self.mel, segment)?;
        let mel_hop = self.mel.config().hop;
        // Half a segment when that is whole frames (it is for every segment of an even number of them).
        let hop = if frames % 2 == 0 { segment / 2 } else { segment };
        let count = len.saturating_sub(segment).div_ceil(hop) + 1;
        let mut context = Vec::with_capacity(count * frames * log_mel.cols());
        for k in 0..count {
            context.extend(segment_context(log_mel, k * hop / mel_hop, frames));
        }
        let context = Matrix::from_vec(count, frames * log_mel.cols(), context);
        let audio = self.flow.sample_at_temperature(count, temperature, Some(&context), &mut Rng::new(seed))?;
        let mut samples = overlap_add(&audio, hop, len);
        // A flow can place rare samples far out; a waveform stays within full scale.
        samples.iter_mut().for_each(|v| *v = if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 });
        Ok(samples)
    }
}

/// `audio vocode`: the log-mel of a WAV file, then one draw of the vocoder per segment given it.
pub fn vocode(a: AudioVocodeArgs) -> Result<(), CliError> {
    let vocoder = Vocoder::load(&a.model)?;
    let (wav, own_rate) = vocoder.read_wav(&a.wav)?;
    let log_mel = vocoder.log_mel(&wav.samples, &a.wav)?;
    let samples = vocoder.synthesize(&log_mel, wav.samples.len(), a.synthesis.temperature, a.synthesis.seed)?;
    if let Some(png) = &a.synthesis.png {
        let out_mel = vocoder.log_mel(&samples, &a.synthesis.output)?;
        let hop_seconds = vocoder.mel.config().hop as f64 / wav.sample_rate as f64;
        spectrograms(png, &[("input", &log_mel), ("vocoded", &out_mel)], hop_seconds)?;
    }
    // The output at the input file's own rate (resampled back when the vocoder's differs).
    let out = if own_rate == wav.sample_rate {
        samples
    } else {
        let mut back = resample(&samples, wav.sample_rate, own_rate)?;
        back.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        back
    };
    Wav::write(&a.synthesis.output, own_rate, &out, WavEncoding::Pcm16)?;
    eprintln!(
        "vocoded {} ({:.2} s{}) at temperature {} into {}",
        a.wav.display(),
        wav.seconds(),
        if own_rate == wav.sample_rate { String::new() } else { format!(", resampled {own_rate} -> {} -> {own_rate} Hz", wav.sample_rate) },
        a.synthesis.temperature,
        a.synthesis.output.display()
    );
    Ok(())
}

/// `audio synth`: a waveform from log-mel frames read from a file.
pub fn synth(a: AudioSynthArgs) -> Result<(), CliError> {
    let vocoder = Vocoder::load(&a.model)?;
    let log_mel = read_table(&a.mel, &CsvOptions::default())?.data;
    let bands = vocoder.mel.config().n_mels;
    if log_mel.cols() != bands {
        return Err(CliError::Usage(format!(
            "{}: {} bands per frame, but {} takes {bands} (its mel settings: `normflow info`)",
            a.mel.display(),
            log_mel.cols(),
            vocoder.path.display()
        )));
    }
    if log_mel.rows() < 2 {
        return Err(CliError::Usage(format!("{}: {} frame(s); synthesis needs at least 2", a.mel.display(), log_mel.rows())));
    }
    // `audio mel` centres its frames: a signal of n samples has 1 + n / hop of them.
    let rate = vocoder.mel.config().sample_rate;
    let len = (log_mel.rows() - 1) * vocoder.mel.config().hop;
    let samples = vocoder.synthesize(&log_mel, len, a.synthesis.temperature, a.synthesis.seed)?;
    Wav::write(&a.synthesis.output, rate, &samples, WavEncoding::Pcm16)?;
    if let Some(png) = &a.synthesis.png {
        let out_mel = vocoder.log_mel(&samples, &a.synthesis.output)?;
        spectrograms(png, &[("given", &log_mel), ("synthesised", &out_mel)], vocoder.mel.config().hop as f64 / rate as f64)?;
    }
    eprintln!(
        "synthesised {:.2} s at {rate} Hz from {} frames of {} at temperature {} into {}",
        len as f64 / rate as f64,
        log_mel.rows(),
        a.mel.display(),
        a.synthesis.temperature,
        a.synthesis.output.display()
    );
    Ok(())
}
