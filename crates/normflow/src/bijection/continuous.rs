//! A continuous flow ([`FlowMatching`]) as a layer, so that a [`crate::Flow`] built on it has
//! every workflow of the family: log-density, sampling, encode and decode, model files. The
//! forward map (base to data) integrates `dx/dt = v(x, t)` from `t = 0` to 1 and its log-det is
//! `∫ tr(∂v/∂x) dt`, integrated beside the state; the inverse runs from 1 to 0.
//!
//! The layer trains by flow matching ([`FlowMatching::fit`]), not by gradients through its
//! ODE: its [`Bijection::backward`] is unsupported, and [`crate::flows::fit_flow_matching`]
//! builds and trains a whole flow.

use serde::{Deserialize, Serialize};

use super::{check_width, BijectionSpec, Direction, Tape};
use crate::flows::{FlowMatching, FlowMatchingConfig};
use crate::nn::TimeFeatures;
use crate::ode::Solver;
use crate::{Bijection, Error, Matrix, Result};

/// The architecture of a [`ContinuousFlow`], as its spec records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContinuousSpec {
    /// Row width.
    pub dim: usize,
    /// Context width.
    pub context_dim: usize,
    /// Hidden widths of the velocity field.
    pub hidden: Vec<usize>,
    /// Time frequencies of the field's features.
    pub frequencies: usize,
    /// Which multiples of `π·t` the time features take (files from before this entry:
    /// octaves).
    #[serde(default = "TimeFeatures::before_harmonics")]
    pub time_features: TimeFeatures,
    /// Width of the probability path at the data end.
    pub sigma_min: f32,
    /// How the ODE is solved.
    pub solver: Solver,
}

/// A flow-matching model with the solver its maps use.
#[derive(Clone, Debug)]
pub struct ContinuousFlow {
    model: FlowMatching,
    solver: Solver,
}

impl ContinuousFlow {
    /// Wraps a model; its maps integrate with `solver`.
    pub fn new(model: FlowMatching, solver: Solver) -> Self {
        Self { model, solver }
    }

    /// An untrained layer of the given architecture.
    ///
    /// # Errors
    /// As [`FlowMatching::new`].
    pub fn from_spec(spec: &ContinuousSpec) -> Result<Self> {
        let config = FlowMatchingConfig {
            hidden: spec.hidden.clone(),
            frequencies: spec.frequencies,
            time_features: spec.time_features,
            sigma_min: spec.sigma_min,
            ..Default::default()
        };
        Ok(Self::new(FlowMatching::new(spec.dim, spec.context_dim, &config)?, spec.solver))
    }

    /// The model.
    pub fn model(&self) -> &FlowMatching {
        &self.model
    }

    /// The model, to train it.
    pub fn model_mut(&mut self) -> &mut FlowMatching {
        &mut self.model
    }

    /// The solver the maps use.
    pub fn solver(&self) -> Solver {
        self.solver
    }

    /// Sets the solver the maps use.
    pub fn set_solver(&mut self, solver: Solver) {
        self.solver = solver;
    }
}

impl Bijection for ContinuousFlow {
    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn context_dim(&self) -> usize {
        self.model.field().context_dim()
    }

    fn transform(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("continuous flow input", input, self.dim())?;
        let (t0, t1) = match direction {
            Direction::Forward => (0.0, 1.0),
            Direction::Inverse => (1.0, 0.0),
        };
        self.model.integrate(input, context, t0, t1, self.solver)
    }

    fn apply(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<Matrix> {
        check_width("continuous flow input", input, self.dim())?;
        match direction {
            Direction::Forward => self.model.decode(input, context, self.solver),
            Direction::Inverse => self.model.encode(input, context, self.solver),
        }
    }

    fn set_solver(&mut self, solver: Solver) -> bool {
        self.solver = solver;
        true
    }

    fn num_params(&self) -> usize {
        self.model.field().params().len()
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        f(self.model.field().params());
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        f(self.model.field_mut().params_mut());
    }

    fn backward(
        &self,
        _direction: Direction,
        _tape: &mut Tape,
        _grad_out: Matrix,
        _grad_log_det: &[f32],
        _grads: &mut [f32],
    ) -> Result<Matrix> {
        Err(Error::Unsupported(
            "a continuous flow trains by flow matching (flows::fit_flow_matching), not by gradients through its ODE".into(),
        ))
    }

    fn spec(&self) -> BijectionSpec {
        let field = self.model.field();
        BijectionSpec::Continuous(ContinuousSpec {
            dim: field.dim(),
            context_dim: field.context_dim(),
            hidden: field.hidden().to_vec(),
            frequencies: field.frequencies(),
            time_features: field.time_features(),
            sigma_min: self.model.sigma_min(),
            solver: self.solver,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_their_time_features_and_older_files_read_as_octaves() {
        let layer = ContinuousFlow::from_spec(&ContinuousSpec {
            dim: 2,
            context_dim: 0,
            hidden: vec![8],
            frequencies: 3,
            time_features: TimeFeatures::Harmonics,
            sigma_min: 1e-4,
            solver: Solver::adaptive(1e-5),
        })
        .unwrap();
        let spec = layer.spec();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["time_features"], "harmonics");
        assert_eq!(serde_json::from_value::<BijectionSpec>(json.clone()).unwrap(), spec);
        // A file written before the entry existed was trained with octaves.
        let mut old = json;
        old.as_object_mut().unwrap().remove("time_features");
        let BijectionSpec::Continuous(read) = serde_json::from_value::<BijectionSpec>(old).unwrap() else { panic!("not continuous") };
        assert_eq!(read.time_features, TimeFeatures::Octaves);
        assert_eq!(ContinuousFlow::from_spec(&read).unwrap().model().field().time_features(), TimeFeatures::Octaves);
    }
}
