//! End-to-end tests of the real `normflow` binary in temporary directories.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::*;

fn csv_rows(text: &str) -> Vec<Vec<f64>> {
    text.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect()
}

#[test]
fn train_sample_logprob_encode_decode_eval_info() {
    let t = TempDir::new("e2e");
    let (data, model) = (t.path("data.csv"), t.path("model.safetensors"));
    write_data(&data, 2000, 1);
    for flow in ["realnvp", "maf"] {
        let summary = ok(&[
            "train",
            s(&data),
            "--flow",
            flow,
            "--layers",
            "3",
            "--hidden",
            "32,32",
            "--epochs",
            "8",
            "--lr",
            "2e-3",
            "-q",
            "--json",
            "-o",
            s(&model),
        ]);
        let v: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
        assert_eq!(v["flow"], flow);
        assert!(v["best_val_nll"].as_f64().unwrap() < 2.8, "{v}");

        let samples = ok(&["sample", s(&model), "-n", "50", "--seed", "3"]);
        assert!(samples.starts_with("a,b\n"), "header carries the column names");
        assert_eq!(csv_rows(&samples).len(), 50);
        assert_eq!(samples, ok(&["sample", s(&model), "-n", "50", "--seed", "3"]), "same seed, same samples");
        ok(&["sample", s(&model), "-n", "20", "-o", s(&t.path("s.npy"))]);
        assert_eq!(normflow::data::read_npy(&t.path("s.npy")).unwrap().rows(), 20);

        let lp = csv_rows(&ok(&["log-prob", s(&model), s(&data)]));
        assert_eq!(lp.len(), 2000);
        assert!(lp.iter().all(|r| r[0].is_finite()));

        ok(&["encode", s(&model), s(&data), "-o", s(&t.path("z.csv"))]);
        ok(&["decode", s(&model), s(&t.path("z.csv")), "-o", s(&t.path("back.csv"))]);
        let (orig, back) =
            (csv_rows(&std::fs::read_to_string(&data).unwrap()), csv_rows(&std::fs::read_to_string(t.path("back.csv")).unwrap()));
        assert!(
            orig.iter().zip(&back).all(|(a, b)| (a[0] - b[0]).abs() < 1e-3 && (a[1] - b[1]).abs() < 1e-3),
            "encode → decode round trip"
        );

        let e: serde_json::Value = serde_json::from_str(ok(&["eval", s(&model), s(&data), "--json"]).trim()).unwrap();
        let nll = e["nll"].as_f64().unwrap();
        let mean_lp = lp.iter().map(|r| r[0]).sum::<f64>() / lp.len() as f64;
        assert!((nll + mean_lp).abs() < 1e-3, "eval agrees with log-prob");
        assert!(e["nll_stderr"].as_f64().unwrap() > 0.0 && (e["bits_per_dim"].as_f64().unwrap() - nll / (2.0 * 2f64.ln())).abs() < 1e-9);
        assert_eq!(e["rows"], 2000);

        let info: serde_json::Value = serde_json::from_str(ok(&["info", s(&model), "--json"]).trim()).unwrap();
        assert_eq!(info["dim"], 2);
        assert_eq!(info["columns"], serde_json::json!(["a", "b"]));
        assert!(info["params"].as_u64().unwrap() > 0 && info["training"]["steps"].as_u64().unwrap() > 0);
        assert!(ok(&["info", s(&model)]).contains("parameters"));
    }
}

#[test]
fn model_columns_are_picked_by_name_from_a_wider_file() {
    let t = TempDir::new("cols");
    let (data, model) = (t.path("data.csv"), t.path("m.safetensors"));
    write_data(&data, 300, 2);
    ok(&["train", s(&data), "--layers", "1", "--hidden", "8", "--epochs", "1", "-q", "-o", s(&model)]);
    let wide = t.path("wide.csv");
    let text: String = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                "id,b,a\n".to_string()
            } else {
                let v: Vec<&str> = l.split(',').collect();
                format!("{i},{},{}\n", v[1], v[0])
            }
        })
        .collect();
    std::fs::write(&wide, text).unwrap();
    assert_eq!(ok(&["log-prob", s(&model), s(&data)]), ok(&["log-prob", s(&model), s(&wide)]));
}

#[test]
fn bad_inputs_give_clear_errors_and_leave_no_files() {
    let t = TempDir::new("bad");
    let (data, model) = (t.path("data.csv"), t.path("model.safetensors"));
    write_data(&data, 300, 3);
    ok(&["train", s(&data), "--layers", "1", "--hidden", "8", "--epochs", "1", "-q", "-o", s(&model)]);
    let good_model = std::fs::read(&model).unwrap();

    let nan = t.path("nan.csv");
    std::fs::write(&nan, "a,b\n1,2\n3,NaN\n").unwrap();
    let err = fails(&["train", s(&nan), "-q", "-o", s(&model)]);
    assert!(err.contains("nan.csv") && err.contains("row 3") && err.contains("column 2"), "{err}");
    assert_eq!(std::fs::read(&model).unwrap(), good_model, "a failed train never overwrites a good model");

    let word = t.path("word.csv");
    std::fs::write(&word, "1,2\n3,oops\n").unwrap();
    let err = fails(&["log-prob", s(&model), s(&word), "-o", s(&t.path("out.csv"))]);
    assert!(err.contains("word.csv") && err.contains("row 2") && err.contains("column 2") && err.contains("oops"), "{err}");
    assert!(!t.path("out.csv").exists(), "no partial output file");

    let ragged = t.path("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3\n").unwrap();
    assert!(fails(&["eval", s(&model), s(&ragged)]).contains("row 3"));

    let wide = t.path("wide.csv");
    std::fs::write(&wide, "1,2,3\n4,5,6\n").unwrap();
    let err = fails(&["log-prob", s(&model), s(&wide)]);
    assert!(err.contains("wide.csv") && err.contains("3 columns") && err.contains("expects 2"), "{err}");

    let empty = t.path("empty.csv");
    std::fs::write(&empty, "").unwrap();
    assert!(fails(&["train", s(&empty), "-o", s(&t.path("m2.safetensors"))]).contains("empty"));
    assert!(!t.path("m2.safetensors").exists());
    assert!(fails(&["eval", s(&model), s(&t.path("missing.csv"))]).contains("missing.csv"));

    let constant = t.path("constant.csv");
    std::fs::write(&constant, "a,b\n1,5\n2,5\n3,5\n4,5\n").unwrap();
    let err = fails(&["train", s(&constant), "--val-frac", "0", "-q", "-o", s(&t.path("m3.safetensors"))]);
    assert!(err.contains("column 2") && err.contains("'b'") && err.contains("constant"), "{err}");

    let truncated = t.path("truncated.safetensors");
    std::fs::write(&truncated, &good_model[..good_model.len() / 2]).unwrap();
    let err = fails(&["sample", s(&truncated)]);
    assert!(err.contains("truncated.safetensors") && err.contains("not a valid normflow model"), "{err}");
    let foreign = t.path("foreign.safetensors");
    std::fs::write(&foreign, b"PK\x03\x04 this is a zip").unwrap();
    assert!(fails(&["info", s(&foreign)]).contains("foreign.safetensors"));

    let npy = t.path("bad.npy");
    std::fs::write(&npy, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',").unwrap();
    assert!(fails(&["log-prob", s(&model), s(&npy)]).contains("bad.npy"));
}

#[test]
fn closed_stdout_pipe_is_not_an_error() {
    let t = TempDir::new("pipe");
    let (data, model) = (t.path("data.csv"), t.path("m.safetensors"));
    write_data(&data, 300, 4);
    ok(&["train", s(&data), "--layers", "1", "--hidden", "8", "--epochs", "1", "-q", "-o", s(&model)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_normflow"))
        .args(["sample", s(&model), "-n", "2000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    use std::io::Read;
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn demo_writes_model_samples_and_png() {
    let t = TempDir::new("demo");
    let out = ok(&["demo", "--out", s(&t.0), "--steps", "300"]);
    assert!(out.contains("test NLL"), "{out}");
    assert_eq!(&std::fs::read(t.path("demo.png")).unwrap()[..4], b"\x89PNG");
    assert_eq!(csv_rows(&std::fs::read_to_string(t.path("samples.csv")).unwrap()).len(), 5000);
    ok(&["info", s(&t.path("model.safetensors"))]);
}

#[test]
fn bench_prints_workload_json_lines() {
    let out = ok(&["bench", "--flows", "coupling,maf", "--sizes", "S", "--steps", "3", "--reps", "1"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for v in lines {
        for key in ["train_step_ms", "logprob_ms", "sample_ms", "nll_after"] {
            assert!(v[key].as_f64().unwrap().is_finite(), "{key} in {v}");
        }
        assert!(v["nll_after"].as_f64() < v["nll_before"].as_f64(), "training lowers the NLL: {v}");
    }
}

#[test]
fn every_help_shows_an_example() {
    for cmd in ["train", "sample", "log-prob", "encode", "decode", "eval", "info", "demo", "bench"] {
        assert!(ok(&[cmd, "--help"]).contains("Example:"), "{cmd} --help");
    }
    for cmd in ["fit", "score", "eval"] {
        assert!(ok(&["anomaly", cmd, "--help"]).contains("Example:"), "anomaly {cmd} --help");
    }
}

#[test]
fn conditional_train_log_prob_eval_and_sample_per_context_row() {
    let t = TempDir::new("ctx");
    let (data, model) = (t.path("data.csv"), t.path("m.safetensors"));
    // x = 2 c + noise: the model must learn the dependence on the context column c.
    write_conditional_data(&data, 3000, 1);
    ok(&[
        "train",
        s(&data),
        "--flow",
        "maf",
        "--context-columns",
        "c",
        "--layers",
        "2",
        "--hidden",
        "32,32",
        "--epochs",
        "15",
        "--lr",
        "2e-3",
        "-q",
        "-o",
        s(&model),
    ]);
    let info: serde_json::Value = serde_json::from_str(ok(&["info", s(&model), "--json"]).trim()).unwrap();
    assert_eq!((info["context_dim"].as_u64(), info["columns"].clone()), (Some(1), serde_json::json!(["x", "y"])));
    let e: serde_json::Value = serde_json::from_str(ok(&["eval", s(&model), s(&data), "--json"]).trim()).unwrap();
    // Marginally x has variance 4.09; given c it has 0.09: the conditional NLL is far lower.
    assert!(e["nll"].as_f64().unwrap() < 1.8, "{e}");
    assert_eq!(csv_rows(&ok(&["log-prob", s(&model), s(&data)])).len(), 3000);

    let ctx = t.path("ctx.csv");
    std::fs::write(&ctx, "c\n-1\n1\n").unwrap();
    let samples = csv_rows(&ok(&["sample", s(&model), "--context", s(&ctx), "--per-context", "500", "--seed", "2"]));
    assert_eq!(samples.len(), 1000);
    let mean = |r: &[Vec<f64>]| r.iter().map(|v| v[0]).sum::<f64>() / r.len() as f64;
    let (lo, hi) = (mean(&samples[..500]), mean(&samples[500..]));
    assert!((lo + 2.0).abs() < 0.2 && (hi - 2.0).abs() < 0.2, "E[x | c = ∓1] = {lo}, {hi}");

    assert!(fails(&["sample", s(&model), "-n", "5"]).contains("--context"));
    let wide = t.path("wide.csv");
    std::fs::write(&wide, "a,b\n1,2\n").unwrap();
    assert!(fails(&["sample", s(&model), "--context", s(&wide)]).contains("context has 1"));
}

#[test]
fn bounded_columns_keep_samples_inside_and_reject_data_outside() {
    let t = TempDir::new("bounds");
    let (data, model) = (t.path("data.csv"), t.path("m.safetensors"));
    let mut rng = normflow::Rng::new(3);
    let mut text = String::from("p,v\n");
    for _ in 0..2000 {
        let u = rng.uniform();
        text.push_str(&format!("{},{}\n", u * u, rng.normal()));
    }
    std::fs::write(&data, text).unwrap();
    ok(&["train", s(&data), "--bounds", "0:1,-", "--layers", "2", "--hidden", "16,16", "--epochs", "5", "-q", "-o", s(&model)]);
    let samples = csv_rows(&ok(&["sample", s(&model), "-n", "3000", "--seed", "1"]));
    assert!(samples.iter().all(|r| (0.0..=1.0).contains(&r[0])), "every sample inside [0, 1]");
    let outside = t.path("outside.csv");
    std::fs::write(&outside, "p,v\n0.5,0\n1.5,0\n").unwrap();
    let err = fails(&["log-prob", s(&model), s(&outside)]);
    assert!(err.contains("row 2") && err.contains("column 1") && err.contains("bounds"), "{err}");
    assert!(fails(&["train", s(&data), "--bounds", "0:1", "-q", "-o", s(&t.path("x.safetensors"))]).contains("--bounds has 1 entries"));
    assert!(fails(&["train", s(&data), "--bounds", "1:0,-", "-q", "-o", s(&t.path("x.safetensors"))]).contains("lo < hi"));
}

#[test]
fn dequantized_die_column_is_scored_near_its_entropy_and_sampled_as_integers() {
    let t = TempDir::new("dequant");
    let (data, model) = (t.path("data.csv"), t.path("m.safetensors"));
    let mut rng = normflow::Rng::new(5);
    let mut text = String::from("die,z\n");
    for _ in 0..6000 {
        text.push_str(&format!("{},{}\n", rng.below(6), rng.normal()));
    }
    std::fs::write(&data, text).unwrap();
    ok(&[
        "train",
        s(&data),
        "--flow",
        "nsf",
        "--dequantize",
        "die",
        "--layers",
        "3",
        "--hidden",
        "32,32",
        "--epochs",
        "30",
        "--lr",
        "2e-3",
        "-q",
        "-o",
        s(&model),
    ]);
    // Discrete entropy of a fair die plus the differential entropy of N(0, 1); the dequantised
    // NLL bounds it from above.
    let bound = 6f64.ln() + 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln();
    let e: serde_json::Value = serde_json::from_str(ok(&["eval", s(&model), s(&data), "--json"]).trim()).unwrap();
    let nll = e["nll"].as_f64().unwrap();
    assert!(nll > bound - 0.03 && nll < bound + 0.1, "dequantised NLL {nll}, discrete bound {bound}");
    let samples = csv_rows(&ok(&["sample", s(&model), "-n", "600", "--seed", "1"]));
    assert!(samples.iter().all(|r| r[0].fract() == 0.0), "die samples are integers");
    let inside = samples.iter().filter(|r| (0.0..=5.0).contains(&r[0])).count();
    assert!(inside >= 588, "{inside} of 600 samples in 0..=5 (an unbounded flow leaks a little mass)");
    // With the support declared as bounds too, no sample falls outside.
    let bounded = t.path("bounded.safetensors");
    ok(&[
        "train",
        s(&data),
        "--dequantize",
        "die",
        "--bounds",
        "0:6,-",
        "--layers",
        "2",
        "--hidden",
        "16,16",
        "--epochs",
        "3",
        "-q",
        "-o",
        s(&bounded),
    ]);
    let samples = csv_rows(&ok(&["sample", s(&bounded), "-n", "600", "--seed", "1"]));
    assert!(samples.iter().all(|r| r[0].fract() == 0.0 && (0.0..=6.0).contains(&r[0])));
    let frac = std::fs::read_to_string(&data).unwrap().replacen("\n0,", "\n0.5,", 1);
    std::fs::write(t.path("frac.csv"), frac).unwrap();
    assert!(fails(&["eval", s(&model), s(&t.path("frac.csv"))]).contains("not an integer"));
}

/// Rows of N(0, Σ) with Σ = [[1, 0.6], [0.6, 1]] and their squared Mahalanobis radii.
fn gaussian_rows(n: usize, seed: u64) -> Vec<(f64, f64, f64)> {
    let mut rng = normflow::Rng::new(seed);
    let c = (1.0f64 - 0.36).sqrt();
    (0..n)
        .map(|_| {
            let (e1, e2) = (rng.normal(), rng.normal());
            (e1, 0.6 * e1 + c * e2, e1 * e1 + e2 * e2)
        })
        .collect()
}

#[test]
fn anomaly_threshold_flags_the_expected_mahalanobis_tail() {
    let t = TempDir::new("anomaly-known");
    let (train, fresh, model) = (t.path("train.csv"), t.path("fresh.csv"), t.path("d.safetensors"));
    let write = |p: &Path, rows: &[(f64, f64, f64)]| {
        std::fs::write(p, rows.iter().fold(String::from("a,b\n"), |s, r| s + &format!("{},{}\n", r.0, r.1))).unwrap()
    };
    write(&train, &gaussian_rows(20_000, 1));
    let fresh_rows = gaussian_rows(20_000, 2);
    write(&fresh, &fresh_rows);
    let out = ok(&[
        "anomaly",
        "fit",
        s(&train),
        "--flow",
        "maf",
        "--layers",
        "2",
        "--hidden",
        "32,32",
        "--epochs",
        "10",
        "--lr",
        "2e-3",
        "--threshold-quantile",
        "0.99",
        "-q",
        "--json",
        "-o",
        s(&model),
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["calibration_rows"], 4000);
    let scored = csv_rows(&ok(&["anomaly", "score", s(&model), s(&fresh)]));
    let rate = scored.iter().filter(|r| r[2] == 1.0).count() as f64 / scored.len() as f64;
    // The true detector flags r² > −2 ln 0.01 = 9.21 at rate 1%; sampling error of the
    // calibration quantile (4000 rows) and of the rate (20,000 rows) is about 0.2%.
    assert!((rate - 0.01).abs() < 0.005, "flagged rate {rate}");
    let agree =
        scored.iter().zip(&fresh_rows).filter(|(r, g)| (r[2] == 1.0) == (g.2 > -2.0 * 0.01f64.ln())).count() as f64 / scored.len() as f64;
    assert!(agree > 0.99, "agreement with the exact Mahalanobis rule {agree}");
    assert!(scored.iter().all(|r| (0.0..=100.0).contains(&r[1])), "percentiles in [0, 100]");
}

#[test]
fn anomaly_fit_on_labelled_normal_rows_then_eval_reports_metrics() {
    let t = TempDir::new("anomaly-eval");
    let (data, model) = (t.path("data.csv"), t.path("d.safetensors"));
    let mut text = String::from("id,a,b,outlier\n");
    let mut rng = normflow::Rng::new(7);
    for (i, g) in gaussian_rows(4000, 3).iter().enumerate() {
        if i % 20 == 0 {
            // Outliers: uniform on a wide square, mostly far from the Gaussian.
            text.push_str(&format!("{i},{},{},1\n", rng.uniform() * 12.0 - 6.0, rng.uniform() * 12.0 - 6.0));
        } else {
            text.push_str(&format!("{i},{},{},0\n", g.0, g.1));
        }
    }
    std::fs::write(&data, text).unwrap();
    ok(&[
        "anomaly",
        "fit",
        s(&data),
        "--columns",
        "a,b",
        "--label-column",
        "outlier",
        "--contamination",
        "0.02",
        "--layers",
        "2",
        "--hidden",
        "16,16",
        "--epochs",
        "15",
        "--lr",
        "2e-3",
        "-q",
        "-o",
        s(&model),
    ]);
    let e: serde_json::Value =
        serde_json::from_str(ok(&["anomaly", "eval", s(&model), s(&data), "--label-column", "outlier", "--json"]).trim()).unwrap();
    assert!(e["auroc"].as_f64().unwrap() > 0.95 && e["average_precision"].as_f64().unwrap() > 0.8, "{e}");
    for key in ["precision", "recall", "f1"] {
        assert!((0.0..=1.0).contains(&e[key].as_f64().unwrap()), "{key}: {e}");
    }
    assert_eq!(e["anomalies"], 200);
    assert!(ok(&["anomaly", "eval", s(&model), s(&data), "--label-column", "outlier", "--plot", s(&t.path("hist.png"))]).contains("AUROC"));
    assert_eq!(&std::fs::read(t.path("hist.png")).unwrap()[..4], b"\x89PNG");
    let scored = ok(&["anomaly", "score", s(&model), s(&data), "--id-column", "id"]);
    assert!(scored.starts_with("id,score,percentile,flag\n"));
    assert_eq!(csv_rows(&scored)[20][0], 20.0);
    // A plain model is no detector: a clear error.
    ok(&[
        "train",
        s(&data),
        "--columns",
        "a,b",
        "--layers",
        "1",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "-q",
        "-o",
        s(&t.path("plain.safetensors")),
    ]);
    assert!(fails(&["anomaly", "score", s(&t.path("plain.safetensors")), s(&data)]).contains("not an anomaly detector"));
    assert!(
        fails(&["anomaly", "fit", s(&data), "--contamination", "1.5", "-q", "-o", s(&t.path("x.safetensors"))]).contains("--contamination")
    );
}

#[test]
fn anomaly_score_streams_csv_and_numbers_bad_rows_in_the_whole_file() {
    let t = TempDir::new("anomaly-stream");
    let (train, model) = (t.path("train.csv"), t.path("d.safetensors"));
    write_data(&train, 500, 8);
    ok(&["anomaly", "fit", s(&train), "--layers", "1", "--hidden", "8", "--epochs", "2", "-q", "-o", s(&model)]);
    // 70,000 rows: more than one 65,536-row chunk; a bad cell deep in the second chunk.
    let mut text = String::from("id,b,a\n");
    for i in 0..70_000 {
        text.push_str(&format!("{i},{},{}\n", (i % 7) as f64 * 0.1, (i % 5) as f64 * -0.1));
    }
    let big = t.path("big.csv");
    std::fs::write(&big, &text).unwrap();
    let out = t.path("scores.csv");
    ok(&["anomaly", "score", s(&model), s(&big), "--id-column", "id", "-o", s(&out)]);
    let rows = csv_rows(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(rows.len(), 70_000);
    assert_eq!(rows[69_999][0], 69_999.0, "ids in order across chunks");
    // Columns are matched by name (b, a are swapped in the file): scores equal the in-memory path.
    let npy = t.path("scores.npy");
    ok(&["anomaly", "score", s(&model), s(&big), "--id-column", "id", "-o", s(&npy)]);
    let in_memory = normflow::data::read_npy(&npy).unwrap();
    assert!((0..70_000).step_by(997).all(|i| (in_memory.get(i, 1) as f64 - rows[i][1]).abs() < 1e-4 * (1.0 + rows[i][1].abs())));
    let bad = text.replacen("\n69000,", "\n69000,x", 1);
    std::fs::write(&big, bad).unwrap();
    let err = fails(&["anomaly", "score", s(&model), s(&big), "--id-column", "id", "-o", s(&out)]);
    assert!(err.contains("row 69002"), "{err}");
    assert_eq!(csv_rows(&std::fs::read_to_string(&out).unwrap()).len(), 70_000, "the earlier good output is untouched");
}

#[test]
fn bench_gemm_probe_reports_throughput() {
    let out = ok(&["bench", "--gemm-probe", "--flows", "coupling", "--sizes", "S", "--steps", "2", "--reps", "1"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let probe = |name: &str| lines.iter().find(|l| l["probe"] == name).unwrap_or_else(|| panic!("no {name} probe in {out}"));
    assert!(probe("gemm")["gflops_1_thread"].as_f64().unwrap() > 0.1);
    assert!(probe("multiply_add")["gflops_all_threads"].as_f64().unwrap() > 0.1);
    let result = lines.iter().find(|l| l.get("probe").is_none()).unwrap();
    assert!(result["train_gflops"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_conv_probe_reports_the_convolution_rate_at_glow_shapes() {
    let out = ok(&["bench", "--conv-probe", "--flows", "coupling", "--sizes", "S", "--steps", "1", "--reps", "1"]);
    let convs: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|l| l["probe"] == "conv2d").collect();
    assert_eq!(convs.len(), 12, "{out}");
    for c in &convs {
        assert!(c["forward_gflops"].as_f64().unwrap() > 0.1 && c["backward_gflops"].as_f64().unwrap() > 0.1, "{c}");
    }
}

#[test]
fn streamed_scoring_numbers_out_of_bounds_rows_from_the_start_of_the_file() {
    let t = TempDir::new("anomaly-bounds");
    let (train, model) = (t.path("train.csv"), t.path("d.safetensors"));
    let mut text = String::from("p,q\n");
    for i in 0..400 {
        text.push_str(&format!("{},{}\n", (i % 97) as f64 / 100.0 + 0.001, (i % 13) as f64));
    }
    std::fs::write(&train, &text).unwrap();
    ok(&["anomaly", "fit", s(&train), "--bounds", "0:1,-", "--layers", "1", "--hidden", "8", "--epochs", "2", "-q", "-o", s(&model)]);
    let mut big = String::from("p,q\n");
    for i in 0..70_000 {
        big.push_str(if i == 69_000 { "1.5,3\n" } else { "0.5,3\n" });
    }
    std::fs::write(t.path("big.csv"), big).unwrap();
    let err = fails(&["anomaly", "score", s(&model), s(&t.path("big.csv")), "-o", s(&t.path("out.csv"))]);
    assert!(err.contains("row 69001") && err.contains("bounds"), "{err}");
}

#[test]
fn products_flag_trains_and_scores_with_split_products_close_to_f32() {
    let t = TempDir::new("products");
    let (data, model) = (t.path("data.csv"), t.path("model.safetensors"));
    write_data(&data, 2000, 4);
    // Hidden layers of 128 so that the middle products are wide enough to split.
    let train = ["train", s(&data), "--flow", "realnvp", "--layers", "3", "--hidden", "128,128", "--epochs", "4", "-q", "-o", s(&model)];
    ok(&[&["--products", "bf16x3"], &train[..]].concat());
    let split = csv_rows(&ok(&["log-prob", "--products", "bf16x3", s(&model), s(&data)]));
    let plain = csv_rows(&ok(&["log-prob", "--products", "f32", s(&model), s(&data)]));
    assert_eq!(split.len(), 2000);
    let worst = split.iter().zip(&plain).map(|(a, b)| (a[0] - b[0]).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-3, "log-densities with split products differ from f32 ones by {worst}");
    let err = fails(&["--products", "fp8", "info", s(&model)]);
    assert!(err.contains("fp8") && err.contains("bf16x3"), "{err}");
    // Without the flag: bf16x3 by default, NORMFLOW_PRODUCTS otherwise, unknown values refused.
    let with_env = |value: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_normflow"));
        command.args(["log-prob", s(&model), s(&data)]).env_remove("NORMFLOW_PRODUCTS");
        if let Some(v) = value {
            command.env("NORMFLOW_PRODUCTS", v);
        }
        command.output().unwrap()
    };
    let rows = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        csv_rows(&String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(rows(with_env(None)), split, "the default is the split precision");
    assert_eq!(rows(with_env(Some("f32"))), plain, "NORMFLOW_PRODUCTS=f32 is f32");
    let refused = with_env(Some("fp8"));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("NORMFLOW_PRODUCTS") && err.contains("fp8"), "{err}");
}
