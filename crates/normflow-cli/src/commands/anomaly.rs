//! `normflow anomaly fit | score | eval`: anomaly detection with a flow's exact likelihood.

use normflow::anomaly::{auroc, average_precision, Confusion, Threshold};
use normflow::data::{read_table, CsvOptions, Table};
use normflow::{Flow, Matrix, Rng};
use serde_json::json;

use super::train::{fit_rows, read_training_rows, TrainingRows};
use super::{print_json, CliError};
use crate::cli::{AnomalyCommand, AnomalyEvalArgs, AnomalyFitArgs, AnomalyScoreArgs};
use crate::input::{load_model, read_for_model};
use crate::output::write_rows;

/// Key of the threshold in a detector model's metadata.
const THRESHOLD_KEY: &str = "anomaly_threshold";

pub fn run(c: AnomalyCommand) -> Result<(), CliError> {
    match c {
        AnomalyCommand::Fit(a) => fit(*a),
        AnomalyCommand::Score(a) => score(a),
        AnomalyCommand::Eval(a) => eval(a),
    }
}

/// One numeric column of `path` by name or 1-based position.
fn read_column(path: &std::path::Path, name: &str) -> Result<Vec<f32>, CliError> {
    Ok(read_table(path, &CsvOptions { columns: Some(vec![name.to_string()]), ..Default::default() })?.data.into_vec())
}

fn threshold_of(flow: &Flow, model: &std::path::Path) -> Result<Threshold, CliError> {
    let v =
        flow.meta.extra.get(THRESHOLD_KEY).ok_or_else(|| {
            CliError::Usage(format!("{}: not an anomaly detector (train it with `normflow anomaly fit`)", model.display()))
        })?;
    serde_json::from_value(v.clone()).map_err(|e| CliError::Usage(format!("{}: damaged anomaly threshold: {e}", model.display())))
}

/// Negative log-likelihood of every row.
fn scores(flow: &Flow, data: &Matrix, context: Option<&Matrix>) -> Result<Vec<f32>, CliError> {
    Ok(flow.log_prob(data, context)?.iter().map(|v| -v).collect())
}

fn fit(a: AnomalyFitArgs) -> Result<(), CliError> {
    let quantile = a.threshold_quantile.unwrap_or(1.0 - a.contamination.unwrap_or(0.01));
    if !(quantile > 0.0 && quantile < 1.0) {
        return Err(CliError::Usage("--contamination must be in (0, 1) (or --threshold-quantile in (0, 1))".into()));
    }
    if !(a.calibration_frac > 0.0 && a.calibration_frac < 1.0) {
        return Err(CliError::Usage("--calibration-frac must be in (0, 1)".into()));
    }
    let label_drop: Vec<String> = a.label_column.iter().cloned().collect();
    let rows = read_training_rows(&a.train, &label_drop)?;
    // Normal rows only when labels are given.
    let mut normal: Vec<usize> = match &a.label_column {
        Some(col) => {
            let labels = read_column(&a.train.data, col)?;
            (0..labels.len()).filter(|&i| labels[i] as f64 == a.normal_label).collect()
        }
        None => (0..rows.data.data.rows()).collect(),
    };
    Rng::new(a.train.seed ^ 0xca1b).shuffle(&mut normal);
    let n_cal = ((normal.len() as f64) * a.calibration_frac).round().max(1.0) as usize;
    if normal.len() < n_cal + 2 {
        return Err(CliError::Usage(format!(
            "{}: only {} normal rows; too few to train and calibrate",
            a.train.data.display(),
            normal.len()
        )));
    }
    let (cal, train) = normal.split_at(n_cal);
    let pick = |t: &Table, idx: &[usize]| Table { data: t.data.select_rows(idx), columns: t.columns.clone() };
    let train_rows = TrainingRows { data: pick(&rows.data, train), context: rows.context.as_ref().map(|c| pick(c, train)) };
    let (mut flow, history) = fit_rows(&a.train, &train_rows)?;
    let cal_ctx = rows.context.as_ref().map(|c| c.data.select_rows(cal));
    let cal_scores = scores(&flow, &rows.data.data.select_rows(cal), cal_ctx.as_ref())?;
    let threshold = Threshold::calibrate(&cal_scores, quantile)?;
    flow.meta.extra.insert(THRESHOLD_KEY.into(), serde_json::to_value(&threshold).expect("threshold serialises"));
    flow.save(&a.train.output)?;
    let summary = json!({
        "model": a.train.output,
        "flow": flow.meta.name,
        "train_rows": history.summary.train_rows + history.summary.val_rows,
        "calibration_rows": cal.len(),
        "trained_on_normal_rows_only": a.label_column.is_some(),
        "threshold": threshold.threshold,
        "quantile": quantile,
        "best_val_nll": history.summary.best_val_nll,
    });
    if a.train.json {
        print_json(&summary)
    } else {
        eprintln!(
            "fitted {} on {} rows; threshold {:.4} (the {:.4} quantile of {} calibration scores); saved {}",
            flow.meta.name,
            history.summary.train_rows + history.summary.val_rows,
            threshold.threshold,
            quantile,
            cal.len(),
            a.train.output.display()
        );
        Ok(())
    }
}

fn score(a: AnomalyScoreArgs) -> Result<(), CliError> {
    let flow = load_model(&a.model)?;
    let threshold = threshold_of(&flow, &a.model)?;
    let (t, c) = read_for_model(&a.data, &flow, a.columns.as_deref(), None)?;
    let s = scores(&flow, &t.data, c.as_ref())?;
    let ids = a.id_column.as_deref().map(|col| read_column(&a.data, col)).transpose()?;
    let mut header = Vec::new();
    if a.id_column.is_some() {
        header.push(a.id_column.clone().unwrap_or_default());
    }
    header.extend(["score", "percentile", "flag"].map(String::from));
    let mut out = Vec::with_capacity(s.len() * header.len());
    for (i, &v) in s.iter().enumerate() {
        if let Some(ids) = &ids {
            out.push(ids[i]);
        }
        out.extend([v, threshold.percentile(v) as f32, f32::from(u8::from(threshold.flags(v)))]);
    }
    write_rows(a.output.as_deref(), &Matrix::from_vec(s.len(), header.len(), out), &header)
}

fn eval(a: AnomalyEvalArgs) -> Result<(), CliError> {
    let flow = load_model(&a.model)?;
    let threshold = threshold_of(&flow, &a.model)?;
    let labels: Vec<bool> = read_column(&a.data, &a.label_column)?.iter().map(|&l| l as f64 != a.normal_label).collect();
    let columns = a.columns.clone().or_else(|| flow.meta.columns.clone());
    let (t, c) = read_for_model(&a.data, &flow, columns.as_deref(), None)?;
    let s = scores(&flow, &t.data, c.as_ref())?;
    let s64: Vec<f64> = s.iter().map(|&v| v as f64).collect();
    let flags: Vec<bool> = s.iter().map(|&v| threshold.flags(v)).collect();
    let conf = Confusion::new(&flags, &labels);
    let (auc, ap) = (auroc(&s64, &labels), average_precision(&s64, &labels));
    if a.json {
        return print_json(&json!({
            "auroc": auc, "average_precision": ap, "precision": conf.precision(), "recall": conf.recall(), "f1": conf.f1(),
            "threshold": threshold.threshold, "rows": s.len(), "anomalies": labels.iter().filter(|&&l| l).count(), "confusion": conf,
        }));
    }
    let show = |v: Option<f64>| v.map_or_else(|| "n/a (one class only)".to_string(), |v| format!("{v:.4}"));
    println!("rows               {} ({} labelled anomalies)", s.len(), labels.iter().filter(|&&l| l).count());
    println!("AUROC              {}", show(auc));
    println!("average precision  {}", show(ap));
    println!("threshold          {:.4} (calibration quantile {:.4})", threshold.threshold, threshold.quantile);
    println!("precision          {:.4}", conf.precision());
    println!("recall             {:.4}", conf.recall());
    println!("F1                 {:.4}", conf.f1());
    println!("                   flagged   not flagged");
    println!("anomaly            {:>7}   {:>11}", conf.true_positives, conf.false_negatives);
    println!("normal             {:>7}   {:>11}", conf.false_positives, conf.true_negatives);
    Ok(())
}
