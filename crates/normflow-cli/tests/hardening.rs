//! Regression tests named after what a new user's trial broke in the CLI.

mod common;
use common::*;

fn log_probs(text: &str) -> Vec<f64> {
    text.lines().skip(1).map(|l| l.parse().unwrap()).collect()
}

/// Every line of a two-column CSV text, fields `x,y`, rewritten by `line`.
fn swap_columns(text: &str, line: impl Fn(&str, &str) -> String) -> String {
    text.lines()
        .map(|l| {
            let (x, y) = l.split_once(',').unwrap();
            line(x, y)
        })
        .collect()
}

/// A model trained on columns `a,b` of a correlated Gaussian, and its training file.
fn trained(t: &TempDir) -> (String, String) {
    let (data, model) = (t.path("data.csv"), t.path("m.safetensors"));
    write_data(&data, 600, 1);
    ok(&["train", s(&data), "--flow", "realnvp", "--layers", "2", "--hidden", "16", "--epochs", "3", "-q", "-o", s(&model)]);
    (s(&data).to_string(), s(&model).to_string())
}

#[test]
fn a_file_with_other_column_names_is_refused_unless_matched_by_position() {
    let t = TempDir::new("names");
    let (data, model) = trained(&t);
    let expected = log_probs(&ok(&["log-prob", &model, &data]));
    let renamed = t.path("pq.csv");
    std::fs::write(&renamed, std::fs::read_to_string(&data).unwrap().replacen("a,b", "p,q", 1)).unwrap();
    let err = fails(&["log-prob", &model, s(&renamed)]);
    assert!(err.contains("a, b") && err.contains("p, q") && err.contains("--by-position"), "{err}");
    assert_eq!(log_probs(&ok(&["log-prob", &model, s(&renamed), "--by-position"])), expected);
    // Reordered columns are found by name.
    let text = std::fs::read_to_string(&data).unwrap();
    let reordered = t.path("ba.csv");
    std::fs::write(&reordered, swap_columns(&text, |x, y| format!("{y},{x}\n"))).unwrap();
    assert_eq!(log_probs(&ok(&["log-prob", &model, s(&reordered)])), expected);
}

#[test]
fn quoted_headers_and_fields_follow_rfc_4180() {
    let t = TempDir::new("quoted");
    let (data, model) = trained(&t);
    let expected = log_probs(&ok(&["log-prob", &model, &data]));
    let text = std::fs::read_to_string(&data).unwrap();
    let header = "\"b\",\"note, with \"\"quotes\"\"\n and a line break\",\"a\"\n";
    let rows = swap_columns(&text, |x, y| format!("\"{y}\",\"x, \"\"y\"\"\",{x}\n"));
    let quoted = format!("{header}{}", rows.split_once('\n').unwrap().1);
    let path = t.path("quoted.csv");
    std::fs::write(&path, quoted).unwrap();
    assert_eq!(log_probs(&ok(&["log-prob", &model, s(&path)])), expected);
}

#[test]
fn duplicate_column_names_are_an_error_naming_them() {
    let t = TempDir::new("dupes");
    let path = t.path("dup.csv");
    std::fs::write(&path, "a,b,a\n1,2,3\n4,5,6\n7,8,10\n").unwrap();
    let err = fails(&["train", s(&path), "-q", "-o", s(&t.path("m.safetensors"))]);
    assert!(err.contains("duplicate column names") && err.contains(": a"), "{err}");
    let (data, _) = trained(&t);
    let err = fails(&["train", &data, "--columns", "a,a", "-q", "-o", s(&t.path("m2.safetensors"))]);
    assert!(err.contains("selected twice: a"), "{err}");
}

#[test]
fn sample_counts_beyond_the_limit_are_refused_before_any_work() {
    let t = TempDir::new("sample-limit");
    let (_, model) = trained(&t);
    let out = t.path("s.csv");
    for n in ["10000000000000", "0"] {
        let err = fails(&["sample", &model, "-n", n, "-o", s(&out)]);
        assert!(err.contains("-n"), "{err}");
        assert!(!out.exists());
    }
    // A large run streams: 300000 rows arrive whole, in order of the blocks.
    let text = ok(&["sample", &model, "-n", "300000", "--seed", "3"]);
    assert_eq!(text.lines().count(), 300_001);
}

#[test]
fn negative_option_values_are_read_as_numbers() {
    let t = TempDir::new("negative");
    let (data, _) = trained(&t);
    let m = t.path("neg.safetensors");
    let err = fails(&["train", &data, "--lr", "-1", "-q", "-o", s(&m)]);
    assert!(err.contains("learning rate") && err.contains("-1") && !err.contains("unexpected argument"), "{err}");
    let err = fails(&["train", &data, "--tail-bound", "-1", "-q", "-o", s(&m)]);
    assert!(err.contains("tail bound") && !err.contains("unexpected argument"), "{err}");
    ok(&["train", &data, "--bounds", "-10:10,-10:10", "--layers", "1", "--hidden", "8", "--epochs", "1", "-q", "-o", s(&m)]);
}

#[test]
fn unknown_output_extensions_are_refused_not_written_as_csv() {
    let t = TempDir::new("ext");
    let (data, model) = trained(&t);
    for name in ["out.xlsx", "out.txt"] {
        let out = t.path(name);
        let err = fails(&["log-prob", &model, &data, "-o", s(&out)]);
        assert!(err.contains(".csv, .npy, .parquet or .arrow") && err.contains(name), "{err}");
        let err = fails(&["sample", &model, "-o", s(&out)]);
        assert!(err.contains(".csv, .npy, .parquet or .arrow"), "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn info_shows_a_detectors_threshold_and_train_names_an_empty_validation_split() {
    let t = TempDir::new("info-threshold");
    let (data, _) = trained(&t);
    let det = t.path("det.safetensors");
    ok(&["anomaly", "fit", &data, "--flow", "realnvp", "--layers", "2", "--hidden", "8", "--epochs", "2", "-q", "-o", s(&det)]);
    let info = ok(&["info", s(&det)]);
    assert!(info.contains("threshold"), "{info}");
    let json = ok(&["info", s(&det), "--json"]);
    assert!(json.contains("\"anomaly_threshold\":{"), "{json}");
    let out = normflow(&[
        "train",
        &data,
        "--val-frac",
        "0",
        "--layers",
        "1",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "-o",
        s(&t.path("m.safetensors")),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("best training (no validation rows) NLL"), "{err}");
}

#[test]
fn a_plot_that_cannot_be_written_names_the_file_without_internals() {
    let t = TempDir::new("plot-error");
    let (data, _) = trained(&t);
    let labelled = t.path("labelled.csv");
    let text = std::fs::read_to_string(&data).unwrap();
    let rows: Vec<String> =
        text.lines().enumerate().map(|(i, l)| if i == 0 { format!("{l},y") } else { format!("{l},{}", i % 2) }).collect();
    std::fs::write(&labelled, rows.join("\n") + "\n").unwrap();
    let det = t.path("det.safetensors");
    ok(&["anomaly", "fit", s(&labelled), "--label-column", "y", "--layers", "1", "--hidden", "8", "--epochs", "1", "-q", "-o", s(&det)]);
    let missing = t.path("no-such-dir").join("hist.png");
    let err = fails(&["anomaly", "eval", s(&det), s(&labelled), "--label-column", "y", "--plot", s(&missing)]);
    assert!(err.contains(s(&missing)) && !err.contains(".plot-") && !err.contains(".tmp-") && !err.contains("{"), "{err}");
    let png = t.path("hist.png");
    ok(&["anomaly", "eval", s(&det), s(&labelled), "--label-column", "y", "--plot", s(&png)]);
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn integer_columns_are_dequantised_by_default_so_no_test_row_blows_up() {
    let t = TempDir::new("auto-dequantize");
    let (data, model) = (t.path("ints.csv"), t.path("m.safetensors"));
    let mut rng = normflow::Rng::new(4);
    let mut text = String::from("count,flag,x\n");
    for _ in 0..800 {
        let x = rng.normal();
        text.push_str(&format!("{},{},{x}\n", (x * 2.0 + 6.0).round().max(0.0), rng.below(2)));
    }
    std::fs::write(&data, text).unwrap();
    let out = normflow(&["train", s(&data), "--layers", "2", "--hidden", "16", "--epochs", "5", "-o", s(&model)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("dequantising integer-valued columns count, flag ("), "{err}");
    let info = ok(&["info", s(&model), "--json"]);
    assert!(info.contains("\"dequantized_columns\":[0,1]"), "{info}");
    // A count at the edge of the training data still gets a finite, moderate NLL.
    let probe = t.path("probe.csv");
    std::fs::write(&probe, "count,flag,x\n13,0,3.4\n").unwrap();
    let lp: f64 = ok(&["log-prob", s(&model), s(&probe)]).lines().nth(1).unwrap().parse().unwrap();
    assert!(lp.is_finite() && lp > -40.0, "{lp}");
    ok(&["train", s(&data), "--no-dequantize", "--layers", "1", "--hidden", "8", "--epochs", "1", "-q", "-o", s(&model)]);
    assert!(ok(&["info", s(&model), "--json"]).contains("\"dequantized_columns\":[]"));
}

#[test]
fn model_sizes_beyond_the_parameter_budget_are_refused_before_any_allocation() {
    let t = TempDir::new("budget");
    let (data, _) = trained(&t);
    let out = t.path("huge.safetensors");
    let started = std::time::Instant::now();
    for flags in [["--hidden", "65536,65536", "--layers", "1000"], ["--flow", "nsf", "--residual-blocks", "100000000"]] {
        let mut args = vec!["train", data.as_str(), "-q", "-o", s(&out)];
        args.extend(flags);
        let err = fails(&args);
        assert!(err.contains("parameters, over the limit"), "{err}");
        assert!(!out.exists());
    }
    let err = fails(&["bench", "--steps", "10000000000000", "--flows", "coupling", "--sizes", "S"]);
    assert!(err.contains("--steps and --reps must be at most"), "{err}");
    assert!(started.elapsed().as_secs() < 20, "refused at once, not after allocating");
}

#[test]
fn smoothing_takes_auto_or_a_factor_and_every_trim_mode_fits() {
    let t = TempDir::new("smoothing");
    let (data, _) = trained(&t);
    let m = t.path("m.safetensors");
    for bad in ["-0.5", "abc", "inf"] {
        let err = fails(&["train", &data, "--smoothing", bad, "--epochs", "1", "-q", "-o", s(&m)]);
        assert!(err.contains("'auto' or a finite number"), "{bad}: {err}");
    }
    let err = fails(&["train", &data, "--smoothing", "0.5", "--bounds", "-,-", "-q", "-o", s(&m)]);
    assert!(err.contains("--bounds"), "{err}");
    ok(&["train", &data, "--smoothing", "auto", "--flow", "realnvp", "--layers", "1", "--hidden", "8", "--epochs", "1", "-q", "-o", s(&m)]);
    for trim in ["gross", "central", "flow", "none"] {
        let out = normflow(&[
            "anomaly",
            "fit",
            &data,
            "--trim",
            trim,
            "--flow",
            "realnvp",
            "--layers",
            "1",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "-o",
            s(&m),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{trim}: {err}");
        let said = match trim {
            "gross" | "central" => "suspected outliers before the fit",
            "flow" => "fitting again without its",
            _ => "fitted",
        };
        assert!(err.contains(said), "{trim}: {err}");
    }
}
