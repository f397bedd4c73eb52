//! Maximum-likelihood training: a single-step [`Trainer`] for custom loops and [`fit`], the
//! complete loop with validation split, early stopping and restore-best.

mod checkpoint;
mod fit;
mod reverse_kl;
mod smoothing;
mod trainer;

pub use checkpoint::CheckpointConfig;
pub use fit::{fit, resume_fit, FitConfig, FitProgress, History, LrSchedule, TrainingSummary};
pub use reverse_kl::{fit_reverse_kl, ElboReport, LogDensity, ReverseKlConfig};
pub use smoothing::scott_factor;
pub use trainer::Trainer;
