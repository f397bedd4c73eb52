//! `normflow bench --flows fm`: the continuous flow at the workload sizes, timed as
//! `bench/fm/peers.py` times torchcfm and zuko's CNF: a flow-matching training step (velocity
//! MLP with two hidden layers of H, SiLU, batch B), then after 300 training steps the exact
//! log-density and sampling of 4,096 rows with Dormand–Prince at rtol 1e-5, atol 1e-6.

use std::time::Instant;

use normflow::flows::{FlowMatching, FlowMatchingConfig};
use normflow::ode::Solver;
use normflow::{Matrix, Rng};
use serde_json::json;

use super::bench::median_ms;
use super::{print_json, CliError};

/// Rows scored and sampled per timed run.
pub const FM_ROWS: usize = 4096;

/// Training steps before the density and sampling are timed.
const FM_TRAIN_STEPS: usize = 300;

/// The solver of the timed maps (zuko's CNF defaults).
const FM_SOLVER: Solver = Solver::Dopri5 { rtol: 1e-5, atol: 1e-6, max_steps: 10_000 };

/// Times the continuous flow on `x` with hidden width `h` and batch `b`, printing one JSON line.
#[allow(clippy::too_many_arguments)]
pub fn run(size: &str, x: &Matrix, h: usize, b: usize, steps: usize, reps: usize, warmup: usize, threads: usize) -> Result<(), CliError> {
    let d = x.cols();
    let config =
        FlowMatchingConfig { hidden: vec![h, h], frequencies: 4, batch_size: b, lr: 1e-3, steps: warmup + steps, ..Default::default() };
    let mut fm = FlowMatching::new(d, 0, &config)?;
    let mut times = Vec::with_capacity(steps);
    let mut last = Instant::now();
    fm.fit_observed(x, None, &config, &mut |step, _| {
        if step > warmup {
            times.push(last.elapsed().as_secs_f64() * 1e3);
        }
        last = Instant::now();
    })?;
    fm.fit(x, None, &FlowMatchingConfig { steps: FM_TRAIN_STEPS, ..config.clone() })?;
    let rows = x.slice_rows(0, FM_ROWS.min(x.rows()));
    let (mut lp_ms, mut sample_ms, mut nfe, mut sample_nfe, mut nll) = (Vec::new(), Vec::new(), 0, 0, 0.0);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let (lp, report) = fm.log_prob(&rows, None, FM_SOLVER)?;
        lp_ms.push(t.elapsed().as_secs_f64() * 1e3);
        nfe = report.evaluations;
        nll = -lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len() as f64;
    }
    let mut rng = Rng::new(1);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        sample_nfe = fm.sample_with_report(rows.rows(), None, &mut rng, FM_SOLVER)?.1.evaluations;
        sample_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    print_json(&json!({
        "impl": "normflow",
        "products": super::bench::products_in_use(),
        "flow": "fm",
        "size": size,
        "d": d,
        "hidden": h,
        "batch": b,
        "train_step_ms": median_ms(times),
        "logprob_ms": median_ms(lp_ms),
        "logprob_nfe": nfe,
        "sample_ms": median_ms(sample_ms),
        "sample_nfe": sample_nfe,
        "rows": rows.rows(),
        "nll_after": nll,
        "threads": threads,
        "solver": "dopri5 rtol 1e-5 atol 1e-6",
    }))
}
