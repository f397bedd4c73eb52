//! Command-line flags (clap derive): the top level and the tabular commands here, the `anomaly`,
//! `audio` and `image` families in their own files. Validation into a plan happens in each command.

mod anomaly;
mod audio;
mod image;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use normflow::flows::TimeSampling;

pub use anomaly::*;
pub use audio::*;
pub use image::*;

/// Normalizing flows: exact log-likelihoods, sampling and latent codes for tabular data.
#[derive(Parser, Debug)]
#[command(name = "normflow", version, about, propagate_version = true)]
pub struct Cli {
    /// How matrix products run: bf16x3 (the default) — each operand split into two bfloat16
    /// parts on AMX tiles (Intel CPUs with AMX; f32 elsewhere), about 2x faster on wide layers
    /// at about 1e-5 relative error per product — or f32 everywhere. Also NORMFLOW_PRODUCTS.
    #[arg(long, global = true, value_enum)]
    pub products: Option<Products>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Checkpoint flags of the long training commands (`image train`, `audio train`).
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// Minutes of training between checkpoints, written atomically beside the output as
    /// `NAME.checkpoint.safetensors` (a model file of the best weights so far, plus the state
    /// `--resume` needs); 0 turns them off.
    #[arg(long, default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
    /// Go on from the checkpoint beside the output (same data and flags; `--minutes` and the
    /// other limits count the whole run).
    #[arg(long)]
    pub resume: bool,
}

/// The product precisions `--products` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Products {
    /// f32 multiplies and sums.
    F32,
    /// Split-bfloat16 products on AMX tiles (f32 where the CPU lacks AMX): the default.
    Bf16x3,
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
    /// Distribution of the training times for --flow fm: `uniform`, or `logit-normal[:MEAN,STD]`
    /// (t = sigmoid(MEAN + STD·ε); bare `logit-normal` is 1.2,1, which puts more steps near the
    /// data and lowered the checkerboard's test NLL by ~0.1 nats at the same steps).
    #[arg(long, value_parser = parse_time_sampling, default_value = "uniform")]
    pub time_sampling: TimeSampling,
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

fn parse_time_sampling(s: &str) -> Result<TimeSampling, String> {
    let bad = || format!("'{s}' is not 'uniform', 'logit-normal' or 'logit-normal:MEAN,STD' (STD > 0)");
    match s.split_once(':') {
        None if s == "uniform" => Ok(TimeSampling::Uniform),
        None if s == "logit-normal" => Ok(TimeSampling::LogitNormal { mean: 1.2, std: 1.0 }),
        Some(("logit-normal", params)) => {
            let (mean, std) = params.split_once(',').ok_or_else(bad)?;
            let (mean, std) = (mean.trim().parse::<f32>().map_err(|_| bad())?, std.trim().parse::<f32>().map_err(|_| bad())?);
            TimeSampling::logit_normal(mean, std).map_err(|_| bad())
        }
        _ => Err(bad()),
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
