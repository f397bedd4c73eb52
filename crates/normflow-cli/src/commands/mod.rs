//! One module per subcommand; `run` dispatches.

mod anomaly;
mod audio;
mod audio_eval;
mod audio_vocoder;
mod bench;
mod bench_fm;
mod checkpoint;
mod demo;
mod eval;
mod image;
mod image_files;
mod image_latent;
mod info;
mod map;
mod sample;
mod train;

pub(crate) use anomaly::threshold_of;

use crate::cli::{Cli, Command};

/// Everything a command can fail with; printed as one `error: …` line, exit status 1.
#[derive(Debug)]
pub enum CliError {
    /// From the library (files, rows and columns are in the message).
    Flow(normflow::Error),
    /// Writing to stdout or another stream.
    Io(std::io::Error),
    /// Flags or inputs that do not fit together.
    Usage(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Flow(e) => write!(f, "{e}"),
            CliError::Io(e) => write!(f, "{e}"),
            CliError::Usage(m) => write!(f, "{m}"),
        }
    }
}

impl From<normflow::Error> for CliError {
    fn from(e: normflow::Error) -> Self {
        CliError::Flow(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Io(e)
    }
}

/// Sets the product precision from `--products`, else from `NORMFLOW_PRODUCTS` (whose unknown
/// values are refused here rather than ignored by the library), else leaves the default.
fn set_products(flag: Option<crate::cli::Products>, env: Option<&str>) -> Result<(), CliError> {
    use normflow::engine::{set_product_precision, ProductPrecision};
    let chosen = match (flag, env) {
        (Some(crate::cli::Products::F32), _) => ProductPrecision::F32,
        (Some(crate::cli::Products::Bf16x3), _) => ProductPrecision::Bf16x3,
        (None, Some(v)) => ProductPrecision::from_name(v)
            .ok_or_else(|| CliError::Usage(format!("NORMFLOW_PRODUCTS={v:?} is not a product precision (known: f32, bf16x3)")))?,
        (None, None) => return Ok(()),
    };
    set_product_precision(chosen);
    Ok(())
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    set_products(cli.products, std::env::var("NORMFLOW_PRODUCTS").ok().as_deref())?;
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Sample(a) => sample::run(a),
        Command::LogProb(a) => map::run(a, map::Mapping::LogProb),
        Command::Encode(a) => map::run(a, map::Mapping::Encode),
        Command::Decode(a) => map::run(a, map::Mapping::Decode),
        Command::Eval(a) => eval::run(a),
        Command::Info(a) => info::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Anomaly(c) => anomaly::run(c),
        Command::Image(c) => image::run(c),
        Command::Audio(c) => audio::run(c),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => crate::serve::serve(a),
        Command::Loadtest(a) => crate::serve::loadtest(a),
    }
}

/// Prints a JSON value as one line on stdout.
pub(crate) fn print_json(v: &serde_json::Value) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    Ok(())
}
