//! Variational fitting of a flow to an unnormalised log-density by maximising the ELBO
//! (reverse KL), with the reparameterisation gradient through the flow's forward pass.

use serde::{Deserialize, Serialize};

use crate::bijection::{Direction, Tape};
use crate::engine::{Adam, Matrix, Rng};
use crate::{Error, Flow, Result};

/// An unnormalised target: for rows `x`, `log p̃(x)` per row and its gradient `∂ log p̃/∂x`.
pub type LogDensity<'a> = dyn Fn(&Matrix) -> (Vec<f64>, Matrix) + Sync + 'a;

/// Settings of [`fit_reverse_kl`]. Defaults: 3000 steps of 256 samples, Adam lr 1e-3 with cosine
/// decay, gradient-norm clip 5, 20,000 samples for the final estimates, seed 0.
#[derive(Clone, Debug, PartialEq)]
pub struct ReverseKlConfig {
    /// Optimisation steps.
    pub steps: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate (cosine-decayed to 0).
    pub lr: f32,
    /// Gradient-norm clip (`None`: off).
    pub grad_clip: Option<f32>,
    /// Samples for the final ELBO and importance-sampling estimates.
    pub eval_samples: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for ReverseKlConfig {
    fn default() -> Self {
        Self { steps: 3000, batch_size: 256, lr: 1e-3, grad_clip: Some(5.0), eval_samples: 20_000, seed: 0 }
    }
}

/// Result of [`fit_reverse_kl`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ElboReport {
    /// ELBO per step (minibatch estimate).
    pub elbo_history: Vec<f64>,
    /// Final ELBO `E_q[log p̃ − log q]`, a lower bound on `log Z`.
    pub elbo: f64,
    /// Standard error of the final ELBO estimate.
    pub elbo_stderr: f64,
    /// Importance-sampling estimate of `log Z`: `log mean exp(log p̃ − log q)`.
    pub log_z_importance: f64,
}

/// ELBO terms for samples from the flow: `log p̃(x) − log q(x)` per sample.
fn log_weights(flow: &Flow, target: &LogDensity, n: usize, rng: &mut Rng) -> Result<Vec<f64>> {
    let (x, log_q) = flow.sample_and_log_prob(n, None, rng)?;
    let (log_p, _) = target(&x);
    Ok(log_p.iter().zip(&log_q).map(|(p, q)| p - *q as f64).collect())
}

/// Fits `flow` to the unnormalised density `target` by maximising the ELBO
/// `E_{z~N}[log p̃(f(z)) + log|det ∂f/∂z| − log N(z)]`; gradients flow through the forward
/// (sampling) pass, so the flow must support them there: coupling flows (RealNVP, NSF) and IAF
/// (`Invert` of a MAF) do; a plain MAF does not and gives [`Error::Unsupported`].
///
/// # Errors
/// [`Error::Unsupported`] as above; [`Error::NonFiniteLoss`] naming the step if the target or
/// the flow produce NaN/inf; [`Error::InvalidConfig`] for zero steps or batch.
pub fn fit_reverse_kl(mut flow: Flow, target: &LogDensity, config: &ReverseKlConfig) -> Result<(Flow, ElboReport)> {
    if config.steps == 0 || config.batch_size == 0 || config.lr.is_nan() || config.lr <= 0.0 {
        return Err(Error::config("reverse-KL fitting needs positive steps, batch size and learning rate"));
    }
    if flow.context_dim() > 0 {
        return Err(Error::Unsupported("reverse-KL fitting of conditional flows".into()));
    }
    let mut rng = Rng::new(config.seed);
    let n = flow.num_params();
    let mut adam = Adam::new(n, config.lr);
    let mut grads = vec![0.0f32; n];
    let mut report = ElboReport::default();
    let b = config.batch_size;
    for step in 1..=config.steps {
        adam.lr = (config.lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * (step - 1) as f64 / config.steps as f64).cos())) as f32;
        let z = flow.base().sample(b, &mut rng);
        let log_n = flow.base().log_prob(&z);
        let mut tape = Tape::new();
        let (x, ld) = flow.transform().train_forward(&z, None, Direction::Forward, &mut tape)?;
        let (log_p, grad_p) = target(&x);
        let elbo = (0..b).map(|i| log_p[i] + ld[i] as f64 - log_n[i] as f64).sum::<f64>() / b as f64;
        // Loss −ELBO: ∂/∂x = −∇log p̃ / B, ∂/∂ld = −1 / B.
        let mut g_x = grad_p;
        g_x.as_mut_slice().iter_mut().for_each(|g| *g *= -1.0 / b as f32);
        flow.transform().backward(Direction::Forward, &mut tape, g_x, &vec![-1.0 / b as f32; b], &mut grads)?;
        let norm = grads.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
        if !elbo.is_finite() || !norm.is_finite() {
            return Err(Error::NonFiniteLoss { step });
        }
        let clip = config.grad_clip.filter(|&c| norm > c as f64).map_or(1.0, |c| (c as f64 / norm) as f32);
        adam.begin_step();
        let mut off = 0;
        flow.transform_mut().params_mut(&mut |p| {
            adam.update(off, p, &grads[off..off + p.len()], clip);
            off += p.len();
        });
        report.elbo_history.push(elbo);
    }
    let w = log_weights(&flow, target, config.eval_samples.max(2), &mut rng)?;
    let m = w.len() as f64;
    report.elbo = w.iter().sum::<f64>() / m;
    report.elbo_stderr = (w.iter().map(|v| (v - report.elbo).powi(2)).sum::<f64>() / (m - 1.0) / m).sqrt();
    let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    report.log_z_importance = max + (w.iter().map(|v| (v - max).exp()).sum::<f64>() / m).ln();
    Ok((flow, report))
}
