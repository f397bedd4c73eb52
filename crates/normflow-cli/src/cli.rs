//! Command-line flags (clap derive). Validation into a plan happens in each command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Normalizing flows: exact log-likelihoods, sampling and latent codes for tabular data.
#[derive(Parser, Debug)]
#[command(name = "normflow", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flow architectures the CLI can train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlowKind {
    /// Affine coupling layers (fast sampling and density).
    Realnvp,
    /// Masked autoregressive flow (fast density, sequential sampling).
    Maf,
    /// Neural spline flow with coupling layers (rational-quadratic splines).
    Nsf,
    /// Neural spline flow with autoregressive (MADE) layers.
    NsfAr,
    /// Continuous flow trained by flow matching: a velocity field (--hidden) integrated by an
    /// ODE solver (--solver), exact log-densities through the trace of its Jacobian.
    Fm,
}

/// ODE solvers of continuous flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SolverKind {
    /// Forward Euler, fixed steps (first order).
    Euler,
    /// Explicit midpoint, fixed steps (second order).
    Midpoint,
    /// Classical Runge–Kutta, fixed steps (fourth order).
    Rk4,
    /// Dormand–Prince 5(4), adaptive steps under --rtol.
    Dopri5,
}

/// How a continuous flow (--flow fm) integrates its ODE. Training records the choice in the
/// model (default: dopri5 at rtol 1e-5); later commands can override it.
#[derive(Args, Debug, Clone, Default)]
pub struct SolverArgs {
    /// ODE solver of a continuous flow (with --steps alone: rk4).
    #[arg(long, value_enum)]
    pub solver: Option<SolverKind>,
    /// Steps of a fixed-step solver (default 32).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Relative (and absolute) tolerance of dopri5.
    #[arg(long)]
    pub rtol: Option<f64>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a flow on a CSV or NPY file and save the model.
    #[command(after_help = "Example:\n  normflow train data.csv --flow maf --layers 5 --hidden 128,128 --epochs 100 -o model.safetensors")]
    Train(TrainArgs),
    /// Draw samples from a model.
    #[command(
        after_help = "Example:\n  normflow sample model.safetensors -n 1000 -o samples.csv --seed 7\n  normflow sample conditional.safetensors --context ctx.csv --per-context 10 -o samples.csv"
    )]
    Sample(SampleArgs),
    /// Log-density (nats) of every row of a data file.
    #[command(name = "log-prob", after_help = "Example:\n  normflow log-prob model.safetensors data.csv -o logp.csv")]
    LogProb(MapArgs),
    /// Map data rows to their latent codes z = f⁻¹(x).
    #[command(after_help = "Example:\n  normflow encode model.safetensors data.csv -o latents.npy")]
    Encode(MapArgs),
    /// Map latent codes back to data rows x = f(z).
    #[command(after_help = "Example:\n  normflow decode model.safetensors latents.npy -o rows.csv")]
    Decode(MapArgs),
    /// Mean negative log-likelihood of a data file, with its standard error and bits/dim.
    #[command(after_help = "Example:\n  normflow eval model.safetensors test.csv --json")]
    Eval(EvalArgs),
    /// Architecture, parameter count and training summary of a model.
    #[command(after_help = "Example:\n  normflow info model.safetensors --json")]
    Info(InfoArgs),
    /// Train a RealNVP on two moons (built in, no downloads) and write samples and a plot.
    #[command(after_help = "Example:\n  normflow demo --out demo-output")]
    Demo(DemoArgs),
    /// Anomaly detection: fit a flow on normal rows with a calibrated threshold, score rows,
    /// and evaluate the detector against labels.
    #[command(subcommand)]
    Anomaly(AnomalyCommand),
    /// Image flows (Glow) on IDX image files (the MNIST format): train, evaluate in bits per
    /// dimension, sample a grid.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Audio: WAV files to the log-mel spectrograms a vocoder is conditioned on.
    #[command(subcommand)]
    Audio(AudioCommand),
    /// Time the common workloads (training step, log-prob, sampling) and print JSON lines.
    #[command(after_help = "Example:\n  normflow bench --flows coupling,maf --sizes S,M,L")]
    Bench(BenchArgs),
    /// Serve models over HTTP: log-densities, anomaly scores, samples, latent codes.
    #[command(
        after_help = "Example:\n  normflow serve normflow-demo/model.safetensors --port 8080\n  curl -s localhost:8080/v1/models/model/log-prob -d '{\"rows\": [[0.5, 0.25]]}'"
    )]
    Serve(crate::serve::ServeArgs),
    /// Load a loopback server with concurrent clients and report throughput and latency.
    #[command(
        after_help = "Example:\n  normflow loadtest http://127.0.0.1:8080/v1/models/model/log-prob --concurrency 64 --duration 20s --rows 1"
    )]
    Loadtest(crate::serve::LoadtestArgs),
}

/// The `anomaly` subcommands.
#[derive(Subcommand, Debug)]
pub enum AnomalyCommand {
    /// Fit a flow on normal rows and calibrate a score threshold on held-out normal rows.
    #[command(
        after_help = "Example:\n  normflow anomaly fit sensors.csv --label-column outlier --normal-label 0 --contamination 0.01 -o detector.safetensors"
    )]
    Fit(Box<AnomalyFitArgs>),
    /// Score rows: negative log-likelihood, percentile among the calibration scores, flag.
    #[command(after_help = "Example:\n  normflow anomaly score detector.safetensors new.csv --id-column id -o scores.csv")]
    Score(AnomalyScoreArgs),
    /// Evaluate the detector on labelled rows: AUROC, average precision, precision/recall/F1.
    #[command(after_help = "Example:\n  normflow anomaly eval detector.safetensors test.csv --label-column outlier --json")]
    Eval(AnomalyEvalArgs),
}

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

/// Flags of `audio synth`.
#[derive(Args, Debug)]
pub struct AudioSynthArgs {
    /// The vocoder (from `audio train`).
    pub model: PathBuf,
    /// Log-mel frames (.npy or .csv) with the vocoder's band count.
    pub mel: PathBuf,
    /// Where to write the synthesised WAV (16-bit PCM).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Temperature of the base draws (WaveGlow synthesises at 0.6).
    #[arg(long, default_value_t = 0.6)]
    pub temperature: f32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also draw the given and the synthesised log-mel side by side into this PNG.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Flags of `audio eval`.
#[derive(Args, Debug)]
pub struct AudioEvalArgs {
    /// The vocoder (from `audio train`).
    pub model: PathBuf,
    /// WAV files, or folders of them, at the vocoder's sample rate.
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
    /// WAV files, or folders of them (every file of one sample rate).
    #[arg(required = true)]
    pub data: Vec<PathBuf>,
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
    /// A WAV file at the vocoder's sample rate.
    pub wav: PathBuf,
    /// Where to write the synthesised WAV (16-bit PCM).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Temperature of the base draws (WaveGlow synthesises at 0.6).
    #[arg(long, default_value_t = 0.6)]
    pub temperature: f32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also draw the input's and the output's log-mel side by side into this PNG.
    #[arg(long)]
    pub png: Option<PathBuf>,
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

/// The `image` subcommands.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Train a Glow on 8-bit images (an IDX file, plain or gzip) and save the model.
    #[command(
        after_help = "Example:\n  normflow image train train-images-idx3-ubyte.gz --levels 2 --steps 4 --hidden 64 --minutes 10 -o glow.safetensors"
    )]
    Train(ImageTrainArgs),
    /// Test bits per dimension of a model on images (an IDX file).
    #[command(after_help = "Example:\n  normflow image eval glow.safetensors t10k-images-idx3-ubyte.gz --json")]
    Eval(ImageEvalArgs),
    /// Sample images into a PNG grid (or an .npy array of rows).
    #[command(after_help = "Example:\n  normflow image sample glow.safetensors -n 64 --temperature 0.7 -o grid.png")]
    Sample(ImageSampleArgs),
    /// Map images to their latent codes (one row per image, .npy or .csv).
    #[command(after_help = "Example:\n  normflow image encode glow.safetensors t10k-images-idx3-ubyte.gz -o latents.npy")]
    Encode(ImageEncodeArgs),
    /// Map latent codes back to images (a PNG grid, or .npy rows of pixel values).
    #[command(after_help = "Example:\n  normflow image decode glow.safetensors latents.npy -o decoded.png")]
    Decode(ImageDecodeArgs),
    /// A grid of images interpolated through the latent space between pairs of images.
    #[command(
        after_help = "Example:\n  normflow image interpolate glow.safetensors t10k-images-idx3-ubyte.gz --pairs 0:1,2:3 --steps 8 -o interp.png"
    )]
    Interpolate(ImageInterpolateArgs),
}

/// Flags of `image encode`.
#[derive(Args, Debug)]
pub struct ImageEncodeArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Images: an IDX file, an .npy array or a folder of PNG files.
    pub data: PathBuf,
    /// Output: .npy or .csv, one latent row per image.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Flags of `image decode`.
#[derive(Args, Debug)]
pub struct ImageDecodeArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Latent rows (.npy or .csv), as `image encode` writes them.
    pub latents: PathBuf,
    /// Output: a .png grid, or .npy/.csv rows of pixel values.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Flags of `image interpolate`.
#[derive(Args, Debug)]
pub struct ImageInterpolateArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Images: an IDX file, an .npy array or a folder of PNG files.
    pub data: PathBuf,
    /// Pairs of image indices (0-based) to interpolate between, one grid row each.
    #[arg(long, value_delimiter = ',', default_value = "0:1,2:3,4:5,6:7")]
    pub pairs: Vec<String>,
    /// Images per row, both ends included.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Output: a .png grid.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Flags of `image train`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ImageTrainArgs {
    /// Training images: an IDX file (plain or gzip), an .npy array or a folder of PNG files.
    pub data: PathBuf,
    /// Where to save the model.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Image flow architecture.
    #[arg(long, value_enum, default_value_t = ImageFlowKind::Glow)]
    pub flow: ImageFlowKind,
    /// Levels. Glow squeezes at every level (height and width must divide by 2^levels);
    /// RealNVP at every level but the last (2^(levels-1)).
    #[arg(long, default_value_t = 2)]
    pub levels: usize,
    /// Steps per level: Glow's ActNorm, 1×1 convolution and coupling; RealNVP's checkerboard
    /// couplings (and as many channel couplings after each squeeze).
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Hidden channels of the coupling networks.
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    /// Residual blocks of each RealNVP coupling network (default 2; 0: Glow's 3×3 → 1×1 → 3×3).
    #[arg(long)]
    pub residual_blocks: Option<usize>,
    /// Logit preprocessing with this squeeze α (RealNVP's: pixels to logit(α + (1 − 2α)·v/256))
    /// instead of Glow's scaling to v/256 − 0.5.
    #[arg(long)]
    pub logit: Option<f32>,
    /// Additive instead of affine couplings.
    #[arg(long)]
    pub additive: bool,
    /// Minutes of training between checkpoints, written atomically beside the output as
    /// `NAME.checkpoint.safetensors` (a model file of the best weights so far, plus the state
    /// `--resume` needs); 0 turns them off.
    #[arg(long, default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
    /// Go on from the checkpoint beside the output (same data and flags; `--minutes` and the
    /// other limits count the whole run).
    #[arg(long)]
    pub resume: bool,
    /// Class labels of the training images (an IDX label file or a 1-D .npy of integers
    /// 0..=999, one per image): the flow learns p(image | class), and `image sample --class`
    /// draws from one class.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Cosine learning-rate decay to zero over the run (over --minutes when the time limit
    /// comes before the step and epoch limits).
    #[arg(long)]
    pub cosine: bool,
    /// Training time limit in minutes (the best validation weights are kept).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 1000)]
    pub epochs: usize,
    /// Maximum number of optimisation steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Evaluate the validation images every this many steps.
    #[arg(long, default_value_t = 200)]
    pub eval_every: usize,
    /// Fraction of images held out for validation.
    #[arg(long, default_value_t = 0.02)]
    pub val_frac: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object with the training summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Flags of `image eval`.
#[derive(Args, Debug)]
pub struct ImageEvalArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Images: an IDX file, an .npy array or a folder of PNG files, of the model's image size.
    pub data: PathBuf,
    /// Class labels of the images, for a class-conditional model (as for `image train`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `image sample`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ImageSampleArgs {
    /// The model (from `image train`).
    pub model: PathBuf,
    /// Number of images.
    #[arg(short = 'n', long, default_value_t = 64)]
    pub num: usize,
    /// Temperature: the base draws are scaled by it (below 1: smoother, more typical images).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Output: a .png grid, or .npy rows of pixel values.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The class to draw from, for a class-conditional model (default: image i of class
    /// i mod classes, so a grid shows every class).
    #[arg(long)]
    pub class: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Flags of `anomaly fit`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct AnomalyFitArgs {
    /// Model and training flags, as for `train`.
    #[command(flatten)]
    pub train: TrainArgs,
    /// Column holding the labels; the flow is fitted on the rows with the normal label only.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Label value of normal rows.
    #[arg(long, default_value_t = 0.0)]
    pub normal_label: f64,
    /// Expected fraction of anomalies: the threshold is the (1 − contamination) quantile of the
    /// calibration scores. Without --label-column this share of the training rows is trimmed
    /// away before the final fit (see --trim), so unlabelled outliers do not shape the density.
    #[arg(long, conflicts_with = "threshold_quantile")]
    pub contamination: Option<f64>,
    /// Without --label-column, how the suspected outliers among the training rows are found
    /// and dropped before the final fit.
    #[arg(long, value_enum, default_value_t = Trim::Gross)]
    pub trim: Trim,
    /// Quantile of the calibration scores used as the threshold (default 0.99).
    #[arg(long)]
    pub threshold_quantile: Option<f64>,
    /// Fraction of the normal rows held out to calibrate the threshold.
    #[arg(long, default_value_t = 0.2)]
    pub calibration_frac: f64,
}

/// How an unlabelled anomaly fit trims its training rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Trim {
    /// Drop the gross outliers of a robust Gaussian (squared distance past 3× the χ² 0.999
    /// quantile), at most the contamination share, then fit once.
    Gross,
    /// Drop the contamination share of rows farthest from a robust Gaussian, then fit once.
    Central,
    /// Fit the flow on every row, drop the contamination share it scores worst, fit again.
    Flow,
    /// Fit on every row.
    None,
}

/// Image flow architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImageFlowKind {
    /// Glow: ActNorm, invertible 1×1 convolutions and channel couplings, split priors.
    Glow,
    /// Multiscale RealNVP: checkerboard and channel couplings, half the channels factored out
    /// per level.
    Realnvp,
}

/// Flags of `anomaly score`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct AnomalyScoreArgs {
    /// The detector model (from `anomaly fit`).
    pub model: PathBuf,
    /// Rows to score (.csv or .npy).
    pub data: PathBuf,
    /// Output file (.csv or .npy); CSV on stdout without it.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// A numeric id column to copy to the output.
    #[arg(long)]
    pub id_column: Option<String>,
    /// Columns to use (default the model's columns by name, else all).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Take the file's columns in order, ignoring the names the model was trained with (by
    /// default a model with named columns finds them by name in the file's header).
    #[arg(long, conflicts_with = "columns")]
    pub by_position: bool,
    /// ODE solver of a continuous flow.
    #[command(flatten)]
    pub ode: SolverArgs,
}

/// Flags of `anomaly eval`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct AnomalyEvalArgs {
    /// The detector model (from `anomaly fit`).
    pub model: PathBuf,
    /// Labelled rows (.csv).
    pub data: PathBuf,
    /// Column holding the labels (anomaly = any value but the normal label).
    #[arg(long)]
    pub label_column: String,
    /// Label value of normal rows.
    #[arg(long, default_value_t = 0.0)]
    pub normal_label: f64,
    /// Columns to use (default the model's columns by name, else all but the label).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Take the file's columns in order, ignoring the names the model was trained with (by
    /// default a model with named columns finds them by name in the file's header).
    #[arg(long, conflicts_with = "columns")]
    pub by_position: bool,
    /// Draw the score histograms of both classes with the threshold into this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// ODE solver of a continuous flow.
    #[command(flatten)]
    pub ode: SolverArgs,
}

/// Flags of `train`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// Training data (.csv with optional header, or .npy).
    pub data: PathBuf,
    /// Where to save the model.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Flow architecture.
    #[arg(long, value_enum, default_value_t = FlowKind::Nsf)]
    pub flow: FlowKind,
    /// Number of coupling or autoregressive layers.
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    /// Hidden layer sizes of each conditioner, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,128")]
    pub hidden: Vec<usize>,
    /// Spline bins (nsf, nsf-ar).
    #[arg(long, default_value_t = 8)]
    pub bins: usize,
    /// Spline tail bound B: splines act on [-B, B] of the standardised data, identity outside (nsf, nsf-ar).
    #[arg(long, default_value_t = 5.0)]
    pub tail_bound: f32,
    /// Residual blocks in each coupling conditioner of an NSF (0: plain MLP; else a residual MLP
    /// as wide as the first --hidden size).
    #[arg(long, default_value_t = 0)]
    pub residual_blocks: usize,
    /// Learned LU-linear mixing between layers instead of fixed reversals.
    #[arg(long)]
    pub lu_linear: bool,
    /// Leave the data unstandardised (by default the model standardises every column with
    /// training-split statistics).
    #[arg(long)]
    pub no_standardize: bool,
    /// No whitening layer: by default the model starts as the full-covariance Gaussian of the
    /// training rows (a learned linear layer initialised as their whitening map), so training,
    /// which keeps the best validation weights, never ends worse than that Gaussian.
    #[arg(long)]
    pub no_whiten: bool,
    /// Batch normalisation after every layer (batch statistics while training, running
    /// averages afterwards).
    #[arg(long)]
    pub batch_norm: bool,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Maximum number of optimisation steps (default: no limit besides epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Rows per optimisation step.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f32,
    /// Cosine learning-rate decay to zero over the run.
    #[arg(long)]
    pub cosine: bool,
    /// Stop after this many epochs without validation improvement (0: never).
    #[arg(long, default_value_t = 20)]
    pub patience: usize,
    /// Fraction of rows held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_frac: f64,
    /// Seed for initialisation, the split and batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Columns to use (header names or 1-based positions), comma-separated; default all but the
    /// context columns.
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Bounds of the data columns, one entry per column: `lo:hi`, or `-` for an unbounded
    /// column (e.g. `0:1,-,0:255`). Bounded columns get a logit inside the model, so no
    /// probability mass leaks outside.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub bounds: Option<Vec<String>>,
    /// Integer-valued data columns (names or 1-based positions): trained with uniform
    /// dequantisation noise; scored with one fixed noise draw; sampled as integers. By default
    /// every column whose training values are all integers is dequantised: a continuous density
    /// on integers can pile up on them without bound.
    #[arg(long, value_delimiter = ',', conflicts_with = "no_dequantize")]
    pub dequantize: Option<Vec<String>>,
    /// Treat integer-valued columns as continuous (no dequantisation).
    #[arg(long)]
    pub no_dequantize: bool,
    /// Columns to condition on: the model learns p(data columns | context columns).
    #[arg(long, value_delimiter = ',')]
    pub context_columns: Option<Vec<String>>,
    /// Gaussian noise regularisation: train on rows plus fresh noise whose standard deviation
    /// is this factor times each column's, so the flow fits a smoothed density. `auto` picks
    /// Scott's rule, rows^(-1/(columns+4)); 0 turns it off. Default: off for `train`, `auto`
    /// for `anomaly fit` (a smooth density ranks unseen rows more steadily than one with
    /// sharp peaks at single training rows).
    #[arg(long, value_parser = parse_smoothing, conflicts_with = "bounds")]
    pub smoothing: Option<Smoothing>,
    /// Print one JSON object with the training summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Minibatch optimal-transport couplings for --flow fm (Tong et al. 2023): straighter
    /// paths, fewer solver steps for the same samples.
    #[arg(long)]
    pub ot: bool,
    /// ODE solver of a continuous flow.
    #[command(flatten)]
    pub ode: SolverArgs,
}

/// The `--smoothing` factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// Scott's rule for the training rows.
    Auto,
    /// This factor of each column's standard deviation (0: off).
    Factor(f64),
}

fn parse_smoothing(s: &str) -> Result<Smoothing, String> {
    if s == "auto" {
        return Ok(Smoothing::Auto);
    }
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(Smoothing::Factor(v)),
        _ => Err(format!("'{s}' is not 'auto' or a finite number at least 0")),
    }
}

/// Flags of `sample`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SampleArgs {
    /// The model file.
    pub model: PathBuf,
    /// Number of samples.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub num: usize,
    /// Output file (.csv or .npy); CSV on stdout without it.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Context rows for a conditional model (.csv or .npy; the model's context columns by name,
    /// else all columns); samples come in context-row order.
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Samples per context row (with --context).
    #[arg(long, default_value_t = 1)]
    pub per_context: usize,
    /// ODE solver of a continuous flow.
    #[command(flatten)]
    pub ode: SolverArgs,
}

/// Flags of `log-prob`, `encode` and `decode`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct MapArgs {
    /// The model file.
    pub model: PathBuf,
    /// Input rows (.csv or .npy).
    pub data: PathBuf,
    /// Output file (.csv or .npy); CSV on stdout without it.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Columns to use (header names or 1-based positions); default the model's columns, else all.
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Take the file's columns in order, ignoring the names the model was trained with (by
    /// default a model with named columns finds them by name in the file's header).
    #[arg(long, conflicts_with = "columns")]
    pub by_position: bool,
    /// Context columns of a conditional model (default: the names it was trained with).
    #[arg(long, value_delimiter = ',')]
    pub context_columns: Option<Vec<String>>,
    /// ODE solver of a continuous flow.
    #[command(flatten)]
    pub ode: SolverArgs,
}

/// Flags of `eval`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct EvalArgs {
    /// The model file.
    pub model: PathBuf,
    /// Data to evaluate (.csv or .npy).
    pub data: PathBuf,
    /// Columns to use (header names or 1-based positions); default the model's columns, else all.
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Take the file's columns in order, ignoring the names the model was trained with (by
    /// default a model with named columns finds them by name in the file's header).
    #[arg(long, conflicts_with = "columns")]
    pub by_position: bool,
    /// Context columns of a conditional model (default: the names it was trained with).
    #[arg(long, value_delimiter = ',')]
    pub context_columns: Option<Vec<String>>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// ODE solver of a continuous flow.
    #[command(flatten)]
    pub ode: SolverArgs,
}

/// Flags of `info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The model file.
    pub model: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `demo`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct DemoArgs {
    /// Directory for the model, samples and plot (created if missing).
    #[arg(long, default_value = "normflow-demo")]
    pub out: PathBuf,
    /// Optimisation steps.
    #[arg(long, default_value_t = 10000)]
    pub steps: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Flags of `bench`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct BenchArgs {
    /// Workloads: coupling, maf, nsf, and fm (the continuous flow; `bench/fm/peers.py` times
    /// its peers).
    #[arg(long, value_delimiter = ',', default_value = "coupling,maf,nsf")]
    pub flows: Vec<String>,
    /// Sizes: S, M, L.
    #[arg(long, value_delimiter = ',', default_value = "S,M,L")]
    pub sizes: Vec<String>,
    /// Timed training steps (after 10 warm-up steps).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Timed repetitions of log-prob and sampling.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Also print the throughput of one large matrix product (1 and all threads) with the
    /// engine's settings, the machine's practical limit to compare train_gflops with, and the
    /// multiply-add peak on registers only, the limit of any implementation.
    #[arg(long)]
    pub gemm_probe: bool,
    /// Also print the rate of the 2-D convolution kernel (forward, and input + weight gradients)
    /// at the shapes of a Glow step on MNIST, batch 64.
    #[arg(long)]
    pub conv_probe: bool,
}
