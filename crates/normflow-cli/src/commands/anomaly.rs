//! `normflow anomaly fit | score | eval`: anomaly detection with a flow's exact likelihood.

use normflow::anomaly::{auroc, average_precision, central_rows, without_gross_outliers, Confusion, Threshold};
use normflow::data::{read_table, CsvChunks, CsvOptions, Format, Table, TableWriter};
use normflow::io::write_atomic;
use normflow::{Flow, Matrix, Rng};
use serde_json::json;

use super::train::{fit_rows, read_training_rows, TrainingRows};
use super::{print_json, CliError};
use crate::cli::{AnomalyCommand, AnomalyEvalArgs, AnomalyFitArgs, AnomalyScoreArgs, Smoothing, Trim};
use crate::input::{columns_by_name, read_for_model, Selection};
use crate::ode_flags::load_model_with;
use crate::output::write_rows;

/// Key of the threshold in a detector model's metadata.
/// Key of a detector's threshold in the model's metadata.
pub(crate) const THRESHOLD_KEY: &str = "anomaly_threshold";

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

pub(crate) fn threshold_of(flow: &Flow, model: &std::path::Path) -> Result<Threshold, CliError> {
    let v =
        flow.meta.extra.get(THRESHOLD_KEY).ok_or_else(|| {
            CliError::Usage(format!("{}: not an anomaly detector (train it with `normflow anomaly fit`)", model.display()))
        })?;
    serde_json::from_value(v.clone()).map_err(|e| CliError::Usage(format!("{}: damaged anomaly threshold: {e}", model.display())))
}

/// Negative log-likelihood of every row. A row so far from the data that its log-density
/// leaves f32's range scores `f32::MAX`: the most anomalous score there is, and a finite one.
fn scores(flow: &Flow, data: &Matrix, context: Option<&Matrix>) -> Result<Vec<f32>, CliError> {
    Ok(flow.log_prob(data, context)?.iter().map(|v| if v.is_finite() { -v } else { f32::MAX }).collect())
}

/// The rows `idx` of `rows`.
fn keep(rows: &TrainingRows, idx: &[usize]) -> TrainingRows {
    let pick = |t: &Table| Table { data: t.data.select_rows(idx), columns: t.columns.clone() };
    TrainingRows { data: pick(&rows.data), context: rows.context.as_ref().map(pick) }
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
    let train_rows = keep(&rows, train);
    // Without labels the rows may hold the very outliers to detect, and a flow learns them as
    // modes: fit the final flow without the expected contamination.
    let (mut flow, history) = match (&a.label_column, a.trim) {
        (None, Trim::Flow) => {
            let (first, _) = fit_rows(&a.train, &train_rows, Smoothing::Auto)?;
            let ctx = train_rows.context.as_ref().map(|c| &c.data);
            let train_scores = scores(&first, &train_rows.data.data, ctx)?;
            let cut = Threshold::calibrate(&train_scores, quantile)?.threshold;
            let kept: Vec<usize> = (0..train_scores.len()).filter(|&i| f64::from(train_scores[i]) <= cut).collect();
            if !a.train.quiet && !a.train.json {
                eprintln!("first fit done; fitting again without its {} worst-scored rows", train_scores.len() - kept.len());
            }
            fit_rows(&a.train, &keep(&train_rows, &kept), Smoothing::Auto)?
        }
        (None, Trim::Central | Trim::Gross) => {
            let x = &train_rows.data.data;
            let kept = if a.trim == Trim::Central { central_rows(x, quantile)? } else { without_gross_outliers(x, quantile)? };
            if !a.train.quiet && !a.train.json {
                eprintln!("trimmed {} suspected outliers before the fit", x.rows() - kept.len());
            }
            fit_rows(&a.train, &keep(&train_rows, &kept), Smoothing::Auto)?
        }
        _ => fit_rows(&a.train, &train_rows, Smoothing::Auto)?,
    };
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

/// An error about a row of a chunk that starts `offset` data rows into the file, renumbered
/// from the start of the file's data.
fn from_chunk(e: CliError, offset: usize) -> CliError {
    use normflow::Error;
    match e {
        CliError::Flow(Error::OutOfBounds { row, column, value, lo, hi }) => {
            CliError::Flow(Error::OutOfBounds { row: row + offset, column, value, lo, hi })
        }
        CliError::Flow(Error::NotInteger { row, column, value }) => CliError::Flow(Error::NotInteger { row: row + offset, column, value }),
        other => other,
    }
}

/// Rows per chunk when scoring a CSV file as a stream.
const SCORE_CHUNK: usize = 65_536;

fn score(a: AnomalyScoreArgs) -> Result<(), CliError> {
    let flow = load_model_with(&a.model, &a.ode)?;
    let threshold = threshold_of(&flow, &a.model)?;
    let output_format = a.output.as_deref().map(Format::for_output).transpose()?;
    let streamable = Format::of(&a.data) == Format::Csv && output_format.is_none_or(|f| f == Format::Csv) && flow.context_dim() == 0;
    if streamable {
        return score_stream(&a, &flow, &threshold);
    }
    let select = Selection { columns: a.columns.as_deref(), by_position: a.by_position, ..Default::default() };
    let (t, c) = read_for_model(&a.data, &flow, select)?;
    let s = scores(&flow, &t.data, c.as_ref())?;
    let ids = a.id_column.as_deref().map(|col| read_column(&a.data, col)).transpose()?;
    let (rows, header) = score_rows(&s, ids.as_deref(), a.id_column.as_deref(), &threshold);
    write_rows(a.output.as_deref(), &rows, &header)
}

/// The header of the scores: `[id,] score, percentile, flag`.
fn score_header(id_name: Option<&str>) -> Vec<String> {
    id_name.map(String::from).into_iter().chain(["score", "percentile", "flag"].map(String::from)).collect()
}

/// Output rows `[id,] score, percentile, flag` and their header.
fn score_rows(s: &[f32], ids: Option<&[f32]>, id_name: Option<&str>, threshold: &Threshold) -> (Matrix, Vec<String>) {
    let header = score_header(id_name);
    let mut out = Vec::with_capacity(s.len() * header.len());
    for (i, &v) in s.iter().enumerate() {
        if let Some(ids) = ids {
            out.push(ids[i]);
        }
        out.extend([v, threshold.percentile(v) as f32, f32::from(u8::from(threshold.flags(v)))]);
    }
    (Matrix::from_vec(s.len(), header.len(), out), header)
}

/// Scores a CSV file chunk by chunk (bounded memory), writing as it goes, with a progress line.
fn score_stream(a: &AnomalyScoreArgs, flow: &Flow, threshold: &Threshold) -> Result<(), CliError> {
    // The data columns: --columns, else the model's names (all of them, or an error), else
    // every column but the id. The id column, if any, is read first.
    let probe = CsvChunks::open(&a.data, &CsvOptions::default())?;
    let header: Option<Vec<String>> = probe.columns().map(<[String]>::to_vec);
    let all: Vec<String> = match &header {
        Some(h) => h.clone(),
        None => (1..=probe.width()).map(|k| k.to_string()).collect(),
    };
    drop(probe);
    let id_name = a.id_column.as_ref().map(|id| match (&header, id.parse::<usize>()) {
        (Some(h), Ok(k)) if !h.contains(id) && (1..=h.len()).contains(&k) => h[k - 1].clone(),
        _ => id.clone(),
    });
    let model_names = match (&a.columns, &flow.meta.columns) {
        (None, Some(names)) if !a.by_position => columns_by_name(&a.data, names)?,
        _ => None,
    };
    let data_cols =
        a.columns.clone().or(model_names).unwrap_or_else(|| all.iter().filter(|c| Some(*c) != id_name.as_ref()).cloned().collect());
    let columns: Vec<String> = id_name.iter().cloned().chain(data_cols).collect();
    let mut chunks = CsvChunks::open(&a.data, &CsvOptions { columns: Some(columns), ..Default::default() })?;
    let id_cols = usize::from(a.id_column.is_some());
    if chunks.width() - id_cols != flow.dim() {
        return Err(CliError::Usage(format!(
            "{}: has {} data columns, the model expects {}; choose them with --columns",
            a.data.display(),
            chunks.width() - id_cols,
            flow.dim()
        )));
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {human_pos} rows scored ({per_sec})")
            .expect("valid template"),
    );
    let mut noise = Rng::new(0);
    let mut write_all = |w: &mut dyn std::io::Write| -> Result<(), CliError> {
        // CSV: the row count is for NPY headers only.
        let header = score_header(a.id_column.as_deref());
        let mut table = TableWriter::new(w, Format::Csv, 0, header.len(), Some(&header))?;
        let mut done = 0;
        while let Some(chunk) = chunks.next_chunk(SCORE_CHUNK)? {
            let (ids, data) =
                if id_cols == 1 { (Some(chunk.slice_cols(0, 1).into_vec()), chunk.slice_cols(1, chunk.cols())) } else { (None, chunk) };
            let data = if flow.dequantized_columns().is_empty() {
                data
            } else {
                flow.dequantize_rows(&data, &mut noise).map_err(|e| from_chunk(e.into(), done))?
            };
            let s = scores(flow, &data, None).map_err(|e| from_chunk(e, done))?;
            done += data.rows();
            let (rows, _) = score_rows(&s, ids.as_deref(), a.id_column.as_deref(), threshold);
            table.write(&rows)?;
            bar.inc(rows.rows() as u64);
        }
        Ok(())
    };
    let result = match &a.output {
        Some(path) => write_atomic(path, |w| write_all(w)),
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            write_all(&mut w).and_then(|_| std::io::Write::flush(&mut w).map_err(CliError::from))
        }
    };
    bar.finish_and_clear();
    result
}

fn eval(a: AnomalyEvalArgs) -> Result<(), CliError> {
    let flow = load_model_with(&a.model, &a.ode)?;
    let threshold = threshold_of(&flow, &a.model)?;
    let labels: Vec<bool> = read_column(&a.data, &a.label_column)?.iter().map(|&l| l as f64 != a.normal_label).collect();
    let select = Selection { columns: a.columns.as_deref(), by_position: a.by_position, ..Default::default() };
    let (t, c) = read_for_model(&a.data, &flow, select)?;
    let s = scores(&flow, &t.data, c.as_ref())?;
    let s64: Vec<f64> = s.iter().map(|&v| v as f64).collect();
    let flags: Vec<bool> = s.iter().map(|&v| threshold.flags(v)).collect();
    let conf = Confusion::new(&flags, &labels);
    let (auc, ap) = (auroc(&s64, &labels), average_precision(&s64, &labels));
    if let Some(plot) = &a.plot {
        let class = |anomaly: bool| s64.iter().zip(&labels).filter(|(_, &l)| l == anomaly).map(|(&v, _)| v).collect::<Vec<f64>>();
        crate::plot::score_histograms(plot, &class(false), &class(true), threshold.threshold)?;
    }
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
