//! The solver flags of continuous flows (`--solver`, `--steps`, `--rtol`) and loading a model
//! with them.

use std::path::Path;

use normflow::ode::Solver;
use normflow::Flow;

use crate::cli::{SolverArgs, SolverKind};
use crate::commands::CliError;

/// Steps of a fixed-step solver when `--steps` is not given.
const DEFAULT_STEPS: usize = 32;

/// Tolerance of the adaptive solver when `--rtol` is not given.
pub const DEFAULT_RTOL: f64 = 1e-5;

/// Most steps of the adaptive solver.
const MAX_ADAPTIVE_STEPS: usize = 10_000;

impl SolverArgs {
    /// The solver the flags choose, or `None` when none was given.
    pub fn chosen(&self) -> Result<Option<Solver>, CliError> {
        let kind = match (self.solver, self.steps, self.rtol) {
            (None, None, None) => return Ok(None),
            (Some(kind), _, _) => kind,
            (None, Some(_), _) => SolverKind::Rk4,
            (None, None, Some(_)) => SolverKind::Dopri5,
        };
        if let Some(steps) = self.steps {
            if kind == SolverKind::Dopri5 {
                return Err(CliError::Usage("--steps is for the fixed-step solvers (euler, midpoint, rk4); dopri5 takes --rtol".into()));
            }
            if steps == 0 {
                return Err(CliError::Usage("--steps must be at least 1".into()));
            }
        }
        if let Some(rtol) = self.rtol {
            if kind != SolverKind::Dopri5 {
                return Err(CliError::Usage("--rtol is for the adaptive solver (dopri5)".into()));
            }
            if !(rtol > 0.0 && rtol < 1.0) {
                return Err(CliError::Usage(format!("--rtol must be in (0, 1), got {rtol}")));
            }
        }
        let steps = self.steps.unwrap_or(DEFAULT_STEPS);
        Ok(Some(match kind {
            SolverKind::Euler => Solver::Euler { steps },
            SolverKind::Midpoint => Solver::Midpoint { steps },
            SolverKind::Rk4 => Solver::Rk4 { steps },
            SolverKind::Dopri5 => {
                let rtol = self.rtol.unwrap_or(DEFAULT_RTOL);
                Solver::Dopri5 { rtol, atol: rtol, max_steps: MAX_ADAPTIVE_STEPS }
            }
        }))
    }
}

/// Loads a model and gives its continuous layers the solver the flags choose; solver flags on
/// a model without a continuous flow are a usage error.
pub fn load_model_with(path: &Path, ode: &SolverArgs) -> Result<Flow, CliError> {
    let mut flow = Flow::load(path)?;
    if let Some(solver) = ode.chosen()? {
        if !flow.set_solver(solver) {
            return Err(CliError::Usage(format!(
                "{}: --solver, --steps and --rtol apply to continuous flows (train --flow fm); this model has none",
                path.display()
            )));
        }
    }
    Ok(flow)
}
