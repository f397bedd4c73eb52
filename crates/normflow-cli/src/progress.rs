//! Training progress on stderr: a bar on a terminal; elsewhere (a log file, CI) one plain line
//! per validation, so that a background run can be followed.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use normflow::train::FitProgress;

/// Least seconds between two plain progress lines.
const PLAIN_LINE_SECONDS: f64 = 10.0;

/// How losses are shown: nats per row, or bits per dimension with images per second.
#[derive(Clone, Copy, Debug)]
enum Units {
    Nats,
    BitsPerDim { dims: usize, batch: usize },
}

/// A progress bar over training steps showing the running train and validation loss.
pub struct TrainingBar {
    bar: ProgressBar,
    units: Units,
    /// Training time limit, for the time left.
    limit_seconds: Option<f64>,
    started: Instant,
    /// Plain lines instead of a bar (stderr is not a terminal).
    plain: bool,
    last_logged: Cell<Option<f64>>,
    /// When the last plain line was printed.
    last_line: Cell<Option<Instant>>,
    /// The step of the first report (a resumed run starts past 0), for the rate.
    first_step: Cell<Option<usize>>,
}

impl TrainingBar {
    /// A bar in nats per row, or a hidden one when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self::with_units(quiet, Units::Nats, None)
    }

    /// A bar in bits per dimension for images of `dims` values, with images per second and the
    /// time left under `limit_seconds`.
    pub fn for_images(quiet: bool, dims: usize, batch: usize, limit_seconds: Option<f64>) -> Self {
        Self::with_units(quiet, Units::BitsPerDim { dims, batch }, limit_seconds)
    }

    fn with_units(quiet: bool, units: Units, limit_seconds: Option<f64>) -> Self {
        let plain = !quiet && !std::io::stderr().is_terminal();
        let bar = if quiet || plain { ProgressBar::hidden() } else { ProgressBar::new(0) };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self {
            bar,
            units,
            limit_seconds,
            started: Instant::now(),
            plain,
            last_logged: Cell::new(None),
            last_line: Cell::new(None),
            first_step: Cell::new(None),
        }
    }

    /// Updates from a training report.
    pub fn update(&self, p: &FitProgress) {
        if self.first_step.get().is_none() {
            self.first_step.set(Some(p.step.saturating_sub(1)));
        }
        self.bar.set_length(p.total_steps as u64);
        self.bar.set_position(p.step as u64);
        let fresh_val = p.val_nll.is_some() && p.val_nll != self.last_logged.get();
        if !(p.step.is_multiple_of(10) || fresh_val) {
            return;
        }
        let message = self.message(p);
        // Plain lines at most every PLAIN_LINE_SECONDS, so a log of a long tabular run stays short.
        if self.plain && fresh_val && self.last_line.get().is_none_or(|t| t.elapsed().as_secs_f64() >= PLAIN_LINE_SECONDS) {
            self.last_logged.set(p.val_nll);
            self.last_line.set(Some(Instant::now()));
            eprintln!("step {}/{}  {message}", p.step, p.total_steps);
        }
        self.bar.set_message(message);
    }

    fn message(&self, p: &FitProgress) -> String {
        match self.units {
            Units::Nats => {
                let val = p.val_nll.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
                format!("epoch {}  train NLL {:.4}  val NLL {val}", p.epoch, p.train_nll)
            }
            Units::BitsPerDim { dims, batch } => {
                let bpd = |nll: f64| nll / (dims as f64 * std::f64::consts::LN_2);
                let val = p.val_nll.map_or_else(|| "-".to_string(), |v| format!("{:.4}", bpd(v)));
                let steps_here = p.step - self.first_step.get().unwrap_or(0);
                let rate = steps_here as f64 * batch as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                let by_steps = (p.total_steps.saturating_sub(p.step)) as f64 * batch as f64 / rate.max(1e-9);
                // The time limit counts the whole run, resumed parts included.
                let left = self.limit_seconds.map_or(by_steps, |l| (l - p.seconds).max(0.0).min(by_steps));
                format!(
                    "epoch {}  train {:.4}  val {val} bits/dim  {rate:.0} images/s  {}:{:02} left",
                    p.epoch,
                    bpd(p.train_nll),
                    (left / 60.0) as u64,
                    (left % 60.0) as u64
                )
            }
        }
    }

    /// Completes the bar: an early stop ends the run, so the bar reads 100% at the step it
    /// stopped on.
    pub fn finish(&self) {
        self.bar.set_length(self.bar.position());
        self.bar.finish();
    }
}
