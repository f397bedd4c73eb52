//! The continuous flow (`--flow fm`) through every command, and its solver flags.

mod common;
use common::*;

fn csv_rows(text: &str) -> Vec<Vec<f64>> {
    text.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap()
}

#[test]
fn a_conditional_continuous_flow_trains_scores_maps_and_samples() {
    let t = TempDir::new("fm");
    let (data, model) = (t.path("data.csv"), t.path("fm.safetensors"));
    // x = 2 c + noise: the flow must learn the dependence on the context column c.
    write_conditional_data(&data, 3000, 1);
    let fit = json(&ok(&[
        "train",
        s(&data),
        "--flow",
        "fm",
        "--context-columns",
        "c",
        "--hidden",
        "64,64",
        "--max-steps",
        "1500",
        "--lr",
        "3e-3",
        "-q",
        "--json",
        "-o",
        s(&model),
    ]));
    assert_eq!(fit["flow"], "fm");
    // Given c, x has entropy 0.5 ln(2πe·0.09) = 0.215 and y 1.419: 1.63 nats in all;
    // marginally x alone would cost 2.12.
    let val = fit["best_val_nll"].as_f64().unwrap();
    assert!((val - 1.63).abs() < 0.15, "{fit}");

    let e = json(&ok(&["eval", s(&model), s(&data), "--json"]));
    let lp = csv_rows(&ok(&["log-prob", s(&model), s(&data)]));
    let mean_lp = lp.iter().map(|r| r[0]).sum::<f64>() / lp.len() as f64;
    assert!((e["nll"].as_f64().unwrap() + mean_lp).abs() < 1e-3, "eval agrees with log-prob");
    // Another solver changes the density only by its error.
    let rk4 = json(&ok(&["eval", s(&model), s(&data), "--json", "--solver", "rk4", "--steps", "16"]));
    assert!((rk4["nll"].as_f64().unwrap() - e["nll"].as_f64().unwrap()).abs() < 2e-3, "{rk4} vs {e}");

    ok(&["encode", s(&model), s(&data), "-o", s(&t.path("z.csv")), "--rtol", "1e-6"]);
    let z = csv_rows(&std::fs::read_to_string(t.path("z.csv")).unwrap());
    let z_var = z.iter().map(|r| r[0] * r[0]).sum::<f64>() / z.len() as f64;
    assert!((z_var - 1.0).abs() < 0.15, "codes are standard normal: variance {z_var}");
    let zc = t.path("zc.csv");
    let orig = csv_rows(&std::fs::read_to_string(&data).unwrap());
    let mut text = String::from("c,x,y\n");
    for (o, z) in orig.iter().zip(&z) {
        text.push_str(&format!("{},{},{}\n", o[0], z[0], z[1]));
    }
    std::fs::write(&zc, text).unwrap();
    ok(&["decode", s(&model), s(&zc), "-o", s(&t.path("back.csv")), "--rtol", "1e-6"]);
    let back = csv_rows(&std::fs::read_to_string(t.path("back.csv")).unwrap());
    let worst = orig.iter().zip(&back).map(|(o, b)| (o[1] - b[0]).abs().max((o[2] - b[1]).abs())).fold(0.0, f64::max);
    assert!(worst < 1e-3, "encode → decode round trip: {worst}");

    let ctx = t.path("ctx.csv");
    std::fs::write(&ctx, "c\n-1\n1\n").unwrap();
    let samples = csv_rows(&ok(&["sample", s(&model), "--context", s(&ctx), "--per-context", "500", "--seed", "2", "--solver", "rk4"]));
    let mean = |r: &[Vec<f64>]| r.iter().map(|v| v[0]).sum::<f64>() / r.len() as f64;
    let (lo, hi) = (mean(&samples[..500]), mean(&samples[500..]));
    assert!((lo + 2.0).abs() < 0.2 && (hi - 2.0).abs() < 0.2, "E[x | c = ∓1] = {lo}, {hi}");
    assert!(ok(&["info", s(&model)]).contains("continuous"));
}

#[test]
fn solver_flags_are_checked_and_a_continuous_flow_scores_anomalies() {
    let t = TempDir::new("fm-flags");
    let (data, fm, maf) = (t.path("data.csv"), t.path("fm.safetensors"), t.path("maf.safetensors"));
    write_data(&data, 1500, 4);
    let train = |extra: &[&str], out: &std::path::Path| {
        let mut args = vec!["train", s(&data), "--max-steps", "200", "--hidden", "32,32", "-q", "-o", s(out)];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let run_ok = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let run_fails = |args: Vec<String>| fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run_ok(train(&["--flow", "fm", "--ot", "--solver", "rk4", "--steps", "8"], &fm));
    run_ok(train(&["--flow", "maf", "--layers", "2"], &maf));
    assert!(fails(&["eval", s(&maf), s(&data), "--solver", "rk4"]).contains("continuous flows"));
    assert!(fails(&["eval", s(&fm), s(&data), "--solver", "euler", "--rtol", "1e-4"]).contains("--rtol"));
    assert!(fails(&["eval", s(&fm), s(&data), "--solver", "dopri5", "--steps", "4"]).contains("--steps"));
    assert!(fails(&["sample", s(&fm), "--steps", "0"]).contains("at least 1"));
    let bad = t.path("bad.safetensors");
    assert!(run_fails(train(&["--flow", "nsf", "--ot"], &bad)).contains("--ot"));
    let skewed = t.path("skewed.safetensors");
    run_ok(train(&["--flow", "fm", "--time-sampling", "logit-normal:1.2,1"], &skewed));
    assert!(ok(&["eval", s(&skewed), s(&data), "--json"]).contains("nll"));
    assert!(run_fails(train(&["--flow", "maf", "--time-sampling", "logit-normal"], &bad)).contains("continuous flows"));
    for spec in ["logit-normal:0,-1", "logit-normal:1", "beta", "logit-normal:a,b"] {
        assert!(run_fails(train(&["--flow", "fm", "--time-sampling", spec], &bad)).contains("logit-normal:MEAN,STD"), "{spec}");
    }
    assert!(run_fails(train(&["--flow", "maf", "--solver", "rk4"], &bad)).contains("continuous flows"));
    let outside = run_fails(train(&["--flow", "fm", "--bounds", "0:0.1,-"], &bad));
    assert!(outside.contains("row") && outside.contains("column 1"), "{outside}");
    assert!(!bad.exists(), "no model is written for a refused run");

    let scored = json(&ok(&[
        "anomaly",
        "fit",
        s(&data),
        "--flow",
        "fm",
        "--max-steps",
        "300",
        "--hidden",
        "32,32",
        "--threshold-quantile",
        "0.95",
        "-q",
        "--json",
        "-o",
        s(&t.path("a.safetensors")),
    ]));
    assert!(scored["calibration_rows"].as_u64().unwrap() > 0, "{scored}");
    let flagged = csv_rows(&ok(&["anomaly", "score", s(&t.path("a.safetensors")), s(&data), "--solver", "rk4", "--steps", "16"]));
    let rate = flagged.iter().filter(|r| r[2] == 1.0).count() as f64 / flagged.len() as f64;
    assert!(rate > 0.0 && rate < 0.2, "flagged rate {rate}");
}

#[test]
fn a_continuous_flow_keeps_bounded_columns_inside_their_bounds() {
    let t = TempDir::new("fm-bounds");
    let (data, model) = (t.path("data.csv"), t.path("fm.safetensors"));
    write_data(&data, 1500, 6);
    ok(&["train", s(&data), "--flow", "fm", "--bounds", "-4.5:4.5,-", "--max-steps", "300", "--hidden", "32,32", "-q", "-o", s(&model)]);
    let samples = csv_rows(&ok(&["sample", s(&model), "-n", "2000", "--seed", "3", "--solver", "rk4", "--steps", "16"]));
    assert!(samples.iter().all(|r| (-4.5..=4.5).contains(&r[0])), "a sample left [-4.5, 4.5]");
    assert!(samples.iter().any(|r| r[1].abs() > 2.0), "the unbounded column keeps its tails");
    let far = t.path("far.csv");
    std::fs::write(&far, "a,b\n0,0\n5,0\n").unwrap();
    let err = fails(&["log-prob", s(&model), s(&far)]);
    assert!(err.contains("row 2") && err.contains("column 1"), "{err}");
}
