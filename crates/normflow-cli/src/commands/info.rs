//! `normflow info`.

use serde_json::json;

use super::anomaly::threshold_of;
use super::{print_json, CliError};
use crate::cli::InfoArgs;
use crate::input::load_model;

pub fn run(a: InfoArgs) -> Result<(), CliError> {
    let flow = load_model(&a.model)?;
    let spec = serde_json::to_value(flow.transform().spec()).unwrap_or_default();
    let layers: Vec<String> =
        spec["layers"].as_array().map(|l| l.iter().map(|x| x["type"].as_str().unwrap_or("?").to_string()).collect()).unwrap_or_default();
    if a.json {
        return print_json(&json!({
            "flow": flow.meta.name,
            "dim": flow.dim(),
            "context_dim": flow.context_dim(),
            "params": flow.num_params(),
            "columns": flow.meta.columns,
            "dequantized_columns": flow.dequantized_columns(),
            "layers": layers,
            "architecture": spec,
            "training": flow.meta.training,
            "format_version": normflow::io::FORMAT_VERSION,
            "anomaly_threshold": threshold_of(&flow, &a.model).ok().map(|t| json!({ "threshold": t.threshold, "quantile": t.quantile })),
        }));
    }
    println!("flow          {}", flow.meta.name);
    println!("dimensions    {}", flow.dim());
    if let Some(c) = &flow.meta.columns {
        println!("columns       {}", c.join(", "));
    }
    println!("parameters    {}", flow.num_params());
    if let Ok(t) = threshold_of(&flow, &a.model) {
        println!(
            "anomaly       threshold {:.4} (NLL; the {:.4} quantile of {} calibration scores)",
            t.threshold,
            t.quantile,
            t.calibration.len()
        );
    }
    println!("layers        {} ({})", layers.len(), layers.join(" → "));
    if let Some(t) = &flow.meta.training {
        println!(
            "training      {} steps, {} epochs on {} rows ({} validation), best validation NLL {:.4} at step {}, stopped by {}, {:.1} s",
            t.steps,
            t.epochs,
            t.train_rows,
            t.val_rows,
            t.best_val_nll,
            t.best_step,
            t.stopped.replace('_', " "),
            t.seconds
        );
    }
    Ok(())
}
