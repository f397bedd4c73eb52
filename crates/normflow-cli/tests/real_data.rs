//! Tests on the real tables in `../shared/data` (run with `cargo test -- --ignored`; CI has the
//! folder beside the checkout).

mod common;
use common::*;

use std::path::PathBuf;

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(rel)
}

/// Mean NLL that `eval` reports.
fn eval_nll(model: &str, data: &str) -> f64 {
    let json = ok(&["eval", model, data, "--json"]);
    let start = json.find("\"nll\":").unwrap() + 6;
    json[start..].split([',', '}']).next().unwrap().parse().unwrap()
}

/// Writes the first `cut` data rows of `src` (a CSV with a header, last column a label) to
/// `train` and the rest to `test`, both without the label, in a seeded shuffled order.
fn split(src: &str, train: &PathBuf, test: &PathBuf, keep_fraction: f64) {
    let lines: Vec<&str> = src.lines().collect();
    let strip = |l: &str| l.rsplit_once(',').unwrap().0.to_string();
    let mut rows: Vec<String> = lines[1..].iter().map(|l| strip(l)).collect();
    let mut rng = normflow::Rng::new(0);
    rng.shuffle(&mut rows);
    let cut = (rows.len() as f64 * keep_fraction) as usize;
    let header = strip(lines[0]);
    std::fs::write(train, format!("{header}\n{}\n", rows[..cut].join("\n"))).unwrap();
    std::fs::write(test, format!("{header}\n{}\n", rows[cut..].join("\n"))).unwrap();
}

#[test]
#[ignore = "needs ../shared/data"]
fn pima_default_flow_is_no_worse_than_the_gaussian() {
    let t = TempDir::new("pima");
    let (train, test) = (t.path("train.csv"), t.path("test.csv"));
    split(&std::fs::read_to_string(shared("odds/pima.csv")).unwrap(), &train, &test, 0.8);
    let (flow, gaussian) = (t.path("flow.safetensors"), t.path("gaussian.safetensors"));
    ok(&["train", s(&train), "-q", "-o", s(&flow)]);
    // The untrained preset is the Gaussian of the training rows: one step at a negligible rate.
    ok(&["train", s(&train), "--val-frac", "0", "--max-steps", "1", "--lr", "1e-12", "-q", "-o", s(&gaussian)]);
    let (f, g) = (eval_nll(s(&flow), s(&test)), eval_nll(s(&gaussian), s(&test)));
    eprintln!("pima test NLL: default flow {f:.3}, Gaussian {g:.3}");
    assert!(f <= g + 1e-3, "default flow {f} against the Gaussian's {g}");
}

#[test]
#[ignore = "needs ../shared/data"]
fn shuttle_gzip_csv_trains_and_scores_every_row() {
    let t = TempDir::new("shuttle");
    let model = t.path("m.safetensors");
    let data = shared("odds/shuttle.csv.gz");
    ok(&["train", s(&data), "--columns", "x0,x1,x2,x3,x4,x5,x6,x7,x8", "--flow", "maf", "--epochs", "2", "-q", "-o", s(&model)]);
    let out = t.path("lp.npy");
    ok(&["log-prob", s(&model), s(&data), "-o", s(&out)]);
    let lp = normflow::data::read_npy(&out).unwrap();
    assert_eq!(lp.rows(), 49_097);
}

/// Mean test AUROC of default unlabelled `anomaly fit`s in pyod's protocol: for each split seed,
/// a shuffled 60% of `rows` (labels kept in the file, but not given to the fit) to train on and
/// the other 40% to evaluate.
fn unlabelled_auroc(t: &TempDir, header: &str, rows: &[&str], columns: &str, seeds: u64) -> f64 {
    let (train, test, model) = (t.path("train.csv"), t.path("test.csv"), t.path("d.safetensors"));
    let mut total = 0.0;
    for seed in 0..seeds {
        let mut rows = rows.to_vec();
        normflow::Rng::new(seed).shuffle(&mut rows);
        let cut = rows.len() * 6 / 10;
        std::fs::write(&train, format!("{header}\n{}\n", rows[..cut].join("\n"))).unwrap();
        std::fs::write(&test, format!("{header}\n{}\n", rows[cut..].join("\n"))).unwrap();
        ok(&[
            "anomaly",
            "fit",
            s(&train),
            "--columns",
            columns,
            "--contamination",
            "0.1",
            "--seed",
            &seed.to_string(),
            "-q",
            "-o",
            s(&model),
        ]);
        let json = ok(&["anomaly", "eval", s(&model), s(&test), "--label-column", "outlier", "--json"]);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        total += v["auroc"].as_f64().unwrap();
    }
    total / seeds as f64
}

#[test]
#[ignore = "needs ../shared/data"]
fn unlabelled_anomaly_fits_rank_pima_and_shuttle_outliers() {
    let t = TempDir::new("odds-unlabelled");
    let pima = std::fs::read_to_string(shared("odds/pima.csv")).unwrap();
    let lines: Vec<&str> = pima.lines().collect();
    let auroc = unlabelled_auroc(&t, lines[0], &lines[1..], "x0,x1,x2,x3,x4,x5,x6,x7", 3);
    eprintln!("pima: mean test AUROC {auroc:.4} over 3 splits (pyod's best published detector, KNN: 0.705)");
    assert!(auroc >= 0.68, "pima AUROC {auroc}");
    // Every fourth shuttle row (12,275 rows, 7% outliers) keeps the test short.
    let table = normflow::data::read_table(&shared("odds/shuttle.csv.gz"), &Default::default()).unwrap();
    let x = &table.data;
    let rows: Vec<String> =
        (0..x.rows()).step_by(4).map(|i| (0..x.cols()).map(|j| x.get(i, j).to_string()).collect::<Vec<_>>().join(",")).collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let auroc = unlabelled_auroc(&t, &table.columns.unwrap().join(","), &rows, "x0,x1,x2,x3,x4,x5,x6,x7,x8", 1);
    eprintln!("shuttle (every fourth row): test AUROC {auroc:.4} (pyod's IsolationForest: 0.997)");
    assert!(auroc >= 0.99, "shuttle AUROC {auroc}");
}
