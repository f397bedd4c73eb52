//! The training progress bar (stderr; hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};
use normflow::train::FitProgress;

/// A progress bar over training steps showing the running train and validation NLL.
pub struct TrainingBar {
    bar: ProgressBar,
}

impl TrainingBar {
    /// A bar, or a hidden one when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { bar }
    }

    /// Updates from a training report.
    pub fn update(&self, p: &FitProgress) {
        self.bar.set_length(p.total_steps as u64);
        self.bar.set_position(p.step as u64);
        if p.step.is_multiple_of(10) || p.val_nll.is_some() {
            let val = p.val_nll.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
            self.bar.set_message(format!("epoch {}  train NLL {:.4}  val NLL {val}", p.epoch, p.train_nll));
        }
    }

    /// Completes the bar: an early stop ends the run, so the bar reads 100% at the step it
    /// stopped on.
    pub fn finish(&self) {
        self.bar.set_length(self.bar.position());
        self.bar.finish();
    }
}
