//! Flags of the `anomaly` commands: fit a detector, score rows, evaluate on labels.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{SolverArgs, TrainArgs};

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
