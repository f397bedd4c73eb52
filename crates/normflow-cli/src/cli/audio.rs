//! Flags of the `audio` commands: mel spectrograms and the WaveGlow vocoder.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The `audio` subcommands.
#[derive(Subcommand, Debug)]
pub enum AudioCommand {
    /// A WAV file's log-mel spectrogram, `ln(max(mel, 1e-5))` as librosa computes the mel: one
    /// row of bands per frame, to .npy or .csv (CSV on stdout without -o).
    #[command(after_help = "Example:\n  normflow audio mel speech.wav -o speech-mel.npy")]
    Mel(AudioMelArgs),
    /// Train a WaveGlow vocoder on WAV files (a folder, or files) of one sample rate: segments
    /// of samples conditioned on their log-mel frames.
    #[command(after_help = "Example:\n  normflow audio train recordings/ --minutes 60 -o voc.safetensors")]
    Train(AudioTrainArgs),
    /// Analysis then synthesis: the log-mel of a WAV file, then a waveform drawn from the
    /// vocoder given it.
    #[command(
        after_help = "Example:\n  normflow audio vocode voc.safetensors speech.wav --temperature 0.6 -o resynth.wav --png spectrograms.png"
    )]
    Vocode(AudioVocodeArgs),
    /// Synthesis from a log-mel spectrogram (.npy or .csv, one row of bands per frame, as
    /// `audio mel` writes it): a waveform drawn from the vocoder given the frames.
    #[command(
        after_help = "Example:\n  normflow audio mel speech.wav -o mel.npy\n  normflow audio synth voc.safetensors mel.npy -o speech.wav"
    )]
    Synth(AudioSynthArgs),
    /// Score a vocoder on WAV files: NLL per sample, and the log-mel L1, mel-cepstral
    /// distortion and real-time factor of analysis then synthesis.
    #[command(after_help = "Example:\n  normflow audio eval voc.safetensors held-out/ --json")]
    Eval(AudioEvalArgs),
}

/// What `audio vocode` and `audio synth` share: where the audio goes and how it is drawn.
#[derive(Args, Debug)]
pub struct SynthesisArgs {
    /// Where to write the synthesised WAV (16-bit PCM).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Temperature of the base draws (WaveGlow synthesises at 0.6).
    #[arg(long, default_value_t = 0.6)]
    pub temperature: f32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also draw the input log-mel and the output's side by side into this PNG.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Flags of `audio synth`.
#[derive(Args, Debug)]
pub struct AudioSynthArgs {
    /// The vocoder (from `audio train`).
    pub model: PathBuf,
    /// Log-mel frames (.npy or .csv) with the vocoder's band count.
    pub mel: PathBuf,
    /// Output, temperature, seed, spectrogram picture.
    #[command(flatten)]
    pub synthesis: SynthesisArgs,
}

/// Flags of `audio eval`.
#[derive(Args, Debug)]
pub struct AudioEvalArgs {
    /// The vocoder (from `audio train`).
    pub model: PathBuf,
    /// WAV files, or folders of them (resampled to the vocoder's rate when theirs differs).
    #[arg(required = true)]
    pub data: Vec<PathBuf>,
    /// Temperature of the base draws in synthesis.
    #[arg(long, default_value_t = 0.6)]
    pub temperature: f32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One JSON object (totals and one entry per file) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `audio train`.
#[derive(Args, Debug)]
pub struct AudioTrainArgs {
    /// WAV files, or folders of them (files at another rate than the vocoder's are resampled).
    #[arg(required = true)]
    pub data: Vec<PathBuf>,
    /// The vocoder's sample rate (default: the first file's).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Where to write the model.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Samples per training segment (a multiple of the hop, 256).
    #[arg(long, default_value_t = 4096)]
    pub segment: usize,
    /// Flow steps (1×1 convolution + coupling).
    #[arg(long, default_value_t = 8)]
    pub flows: usize,
    /// Hidden channels of each WaveNet.
    #[arg(long, default_value_t = 32)]
    pub channels: usize,
    /// Dilated layers of each WaveNet.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Flows between early outputs, as in WaveGlow: every this many flows (from the data),
    /// --early-size channels of each group leave as latent values and the later flows work on
    /// the rest (0: no early outputs).
    #[arg(long, default_value_t = 4)]
    pub early_every: usize,
    /// Channels that leave at each early output (even).
    #[arg(long, default_value_t = 2)]
    pub early_size: usize,
    /// Checkpoints and resuming.
    #[command(flatten)]
    pub checkpoint: super::CheckpointArgs,
    /// Training time limit in minutes.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Epoch limit.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Segments per step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Flags of `audio vocode`.
#[derive(Args, Debug)]
pub struct AudioVocodeArgs {
    /// The vocoder (from `audio train`).
    pub model: PathBuf,
    /// A WAV file (resampled to the vocoder's rate and back when theirs differs).
    pub wav: PathBuf,
    /// Output, temperature, seed, spectrogram picture.
    #[command(flatten)]
    pub synthesis: SynthesisArgs,
}

/// Flags of `audio mel`.
#[derive(Args, Debug)]
pub struct AudioMelArgs {
    /// A WAV file (integer PCM of 8 to 32 bits or float; several channels are mixed down).
    pub wav: PathBuf,
    /// Where to write the frames (.npy or .csv); CSV on stdout when absent.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Mel bands.
    #[arg(long, default_value_t = 80)]
    pub n_mels: usize,
    /// Samples per frame (the FFT size).
    #[arg(long, default_value_t = 1024)]
    pub n_fft: usize,
    /// Samples from one frame to the next.
    #[arg(long, default_value_t = 256)]
    pub hop: usize,
    /// Hann window length (default: n_fft).
    #[arg(long)]
    pub win_length: Option<usize>,
    /// Lowest band edge in Hz.
    #[arg(long, default_value_t = 0.0)]
    pub fmin: f64,
    /// Highest band edge in Hz (default: half the sample rate, at most 8000).
    #[arg(long)]
    pub fmax: Option<f64>,
    /// Mel of the power spectrum (|STFT|²) instead of the magnitudes.
    #[arg(long)]
    pub power: bool,
    /// The mel values themselves, without the log compression.
    #[arg(long)]
    pub linear: bool,
}
