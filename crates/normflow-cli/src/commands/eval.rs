//! `normflow eval`.

use serde_json::json;

use super::{print_json, CliError};
use crate::cli::EvalArgs;
use crate::input::{read_for_model, Selection};
use crate::ode_flags::load_model_with;

pub fn run(a: EvalArgs) -> Result<(), CliError> {
    let flow = load_model_with(&a.model, &a.ode)?;
    let select = Selection { columns: a.columns.as_deref(), context_columns: a.context_columns.as_deref(), by_position: a.by_position };
    let (t, c) = read_for_model(&a.data, &flow, select)?;
    let lp = flow.log_prob(&t.data, c.as_ref())?;
    let n = lp.len() as f64;
    let nll = -lp.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = lp.iter().map(|&v| (-(v as f64) - nll).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let stderr = (var / n).sqrt();
    let bpd = nll / (flow.dim() as f64 * std::f64::consts::LN_2);
    if a.json {
        print_json(&json!({ "nll": nll, "nll_stderr": stderr, "bits_per_dim": bpd, "rows": lp.len(), "dim": flow.dim() }))
    } else {
        println!("rows          {}", lp.len());
        println!("NLL           {nll:.4} ± {stderr:.4} nats (mean ± standard error)");
        println!("bits/dim      {bpd:.4}");
        Ok(())
    }
}
