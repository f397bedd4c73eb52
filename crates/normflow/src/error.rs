//! The crate's error type: every fallible public function returns [`Result`].

use std::path::PathBuf;

/// Result with normflow's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in normflow, with the file, row and column where they apply.
///
/// Rows and columns in messages are 1-based, as a user counts them in a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Data has the wrong number of columns for the model or layer.
    #[error("dimension mismatch: {what} has {got} columns, expected {expected}")]
    DimensionMismatch {
        /// What was checked ("data", "latents", …).
        what: String,
        /// The width the model needs.
        expected: usize,
        /// The width that was given.
        got: usize,
    },
    /// The context given does not fit the flow (missing, unexpected, wrong width or row count).
    #[error("context mismatch: {0}")]
    ContextMismatch(String),
    /// A value in the input is NaN or infinite.
    #[error("{what}: non-finite value (NaN or inf) at row {row}, column {column}")]
    NonFiniteInput {
        /// What was checked.
        what: String,
        /// 1-based row.
        row: usize,
        /// 1-based column.
        column: usize,
    },
    /// A value is finite but too large in magnitude for the flow's f32 arithmetic
    /// (above [`crate::MAX_ABS_VALUE`]).
    #[error("{what}: value {value:e} at row {row}, column {column} is too large in magnitude for f32 arithmetic (limit ±{limit:e}); rescale the column")]
    ValueTooLarge {
        /// What was checked.
        what: String,
        /// 1-based row.
        row: usize,
        /// 1-based column.
        column: usize,
        /// The value.
        value: f32,
        /// The largest magnitude accepted.
        limit: f32,
    },
    /// Training met a NaN or infinite loss or gradient; the weights were restored to the last good ones.
    #[error("training stopped: non-finite loss or gradient at step {step} (weights restored to the best finite ones; try a lower learning rate)")]
    NonFiniteLoss {
        /// 1-based optimisation step.
        step: usize,
    },
    /// A column has zero variance, so it cannot be standardised (its density is degenerate).
    #[error("column {column} is constant (zero variance) in the training data; drop it or add noise")]
    ConstantColumn {
        /// 1-based column.
        column: usize,
    },
    /// A value lies outside the bounds declared for its column.
    #[error("value {value} at row {row}, column {column} is outside the column's bounds [{lo}, {hi}]")]
    OutOfBounds {
        /// 1-based row.
        row: usize,
        /// 1-based column.
        column: usize,
        /// The value.
        value: f32,
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// A column declared integer-valued holds a fraction.
    #[error("value {value} at row {row}, column {column} is not an integer, but the column is dequantised as integer-valued")]
    NotInteger {
        /// 1-based row.
        row: usize,
        /// 1-based column.
        column: usize,
        /// The value.
        value: f32,
    },
    /// Not enough rows for what was asked.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// An ODE solver stopped: the state became non-finite or the step cap was reached.
    #[error("integration failed: {0}")]
    Integration(String),
    /// An operation this bijection cannot do (e.g. a gradient through a sequential inverse).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data file could not be parsed.
    #[error("{}: row {row}, column {column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based row in the file (counting a header line).
        row: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A data file is malformed as a whole (empty, bad header, unsupported type).
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A model file is truncated, foreign or does not match its own configuration.
    #[error("{}: not a valid normflow model: {message}", path.display())]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
