//! `normflow audio`: WAV files to log-mel spectrograms.

use normflow::audio::{MelConfig, MelSpectrogram, Wav};

use super::CliError;
use crate::cli::{AudioCommand, AudioMelArgs};
use crate::output::{check_output, numbered, write_rows};

/// Runs an `audio` subcommand.
pub fn run(command: AudioCommand) -> Result<(), CliError> {
    match command {
        AudioCommand::Mel(a) => mel(a),
        AudioCommand::Train(a) => super::audio_vocoder::train(a),
        AudioCommand::Vocode(a) => super::audio_vocoder::vocode(a),
        AudioCommand::Synth(a) => super::audio_vocoder::synth(a),
        AudioCommand::Eval(a) => super::audio_eval::eval(a),
    }
}

fn mel(a: AudioMelArgs) -> Result<(), CliError> {
    check_output(a.output.as_deref())?;
    let wav = Wav::read(&a.wav)?;
    let mut config = MelConfig::vocoder(wav.sample_rate);
    config.n_mels = a.n_mels;
    config.n_fft = a.n_fft;
    config.hop = a.hop;
    config.win_length = a.win_length.unwrap_or(a.n_fft);
    config.fmin = a.fmin;
    config.fmax = a.fmax.unwrap_or(config.fmax);
    config.power = if a.power { 2.0 } else { 1.0 };
    let mel = MelSpectrogram::new(config)?;
    let frames = if a.linear { mel.mel(&wav.samples) } else { mel.log_mel(&wav.samples) }
        .map_err(|e| CliError::Usage(format!("{}: {e}", a.wav.display())))?;
    write_rows(a.output.as_deref(), &frames, &numbered("mel", frames.cols()))?;
    if let Some(path) = &a.output {
        eprintln!(
            "{}: {:.2} s at {} Hz ({} channel(s), {}-bit {}) -> {} frames x {} bands in {}",
            a.wav.display(),
            wav.seconds(),
            wav.sample_rate,
            wav.source.channels,
            wav.source.bits,
            if wav.source.float { "float" } else { "integer" },
            frames.rows(),
            frames.cols(),
            path.display()
        );
    }
    Ok(())
}
