//! `normflow image`: Glow on IDX image files, run as the real binary.

mod common;
use common::*;

use std::path::Path;

/// `n` one-channel `side×side` 8-bit ramp images as an IDX file.
fn write_ramps(path: &Path, n: usize, side: usize, seed: u64) {
    let mut rng = normflow::Rng::new(seed);
    let mut bytes = vec![0u8, 0, 0x08, 3];
    for d in [n, side, side] {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    for _ in 0..n {
        let (offset, slope) = (60.0 + 80.0 * rng.uniform(), 4.0 + 10.0 * rng.uniform());
        for _y in 0..side {
            for x in 0..side {
                bytes.push((offset + slope * x as f64 + 3.0 * rng.normal()).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn json_field(text: &str, key: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn image_train_eval_and_sample_a_glow_on_idx_files() {
    let t = TempDir::new("image");
    let (train, test, model) = (t.path("train-idx3-ubyte"), t.path("test-idx3-ubyte"), t.path("glow.safetensors"));
    write_ramps(&train, 600, 8, 1);
    write_ramps(&test, 200, 8, 2);
    let summary = ok(&[
        "image",
        "train",
        s(&train),
        "--levels",
        "2",
        "--steps",
        "1",
        "--hidden",
        "8",
        "--max-steps",
        "60",
        "--eval-every",
        "20",
        "-q",
        "--json",
        "-o",
        s(&model),
    ]);
    assert!(json_field(&summary, "best_val_bits_per_dim") < 8.0, "{summary}");
    let eval = ok(&["image", "eval", s(&model), s(&test), "--json"]);
    let bpd = json_field(&eval, "bits_per_dim");
    assert!(bpd < 8.0 && json_field(&eval, "images") == 200.0, "{eval}");
    // Samples: a PNG grid, and pixel rows that stay finite and in 0..=255 at T = 1.0 and 1.2.
    let grid = t.path("grid.png");
    ok(&["image", "sample", s(&model), "-n", "16", "-o", s(&grid)]);
    assert_eq!(&std::fs::read(&grid).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    for temperature in ["1.0", "1.2"] {
        let rows = t.path("samples.npy");
        ok(&["image", "sample", s(&model), "-n", "50", "--temperature", temperature, "-o", s(&rows)]);
        let x = normflow::data::read_npy(&rows).unwrap();
        assert_eq!((x.rows(), x.cols()), (50, 64));
        assert!(x.as_slice().iter().all(|v| v.is_finite() && (0.0..=255.0).contains(v)), "T = {temperature}");
    }
}

#[test]
fn image_commands_refuse_wrong_sizes_labels_and_tabular_models() {
    let t = TempDir::new("image-bad");
    let (train, model) = (t.path("train-idx3-ubyte"), t.path("glow.safetensors"));
    write_ramps(&train, 100, 8, 3);
    ok(&["image", "train", s(&train), "--levels", "1", "--steps", "1", "--hidden", "4", "--max-steps", "2", "-q", "-o", s(&model)]);
    let other = t.path("other-idx3-ubyte");
    write_ramps(&other, 10, 4, 4);
    let err = fails(&["image", "eval", s(&model), s(&other)]);
    assert!(err.contains("height: 4") && err.contains("height: 8"), "{err}");
    let labels = t.path("labels-idx1-ubyte");
    std::fs::write(&labels, [0u8, 0, 8, 1, 0, 0, 0, 2, 3, 7]).unwrap();
    assert!(fails(&["image", "eval", s(&model), s(&labels)]).contains("not images"));
    let odd = t.path("odd-idx3-ubyte");
    write_ramps(&odd, 10, 6, 5);
    let err = fails(&["image", "train", s(&odd), "--levels", "2", "-q", "-o", s(&t.path("m2.safetensors"))]);
    assert!(err.contains("divide by 4"), "{err}");
    let data = t.path("data.csv");
    write_data(&data, 300, 1);
    let tabular = t.path("tab.safetensors");
    ok(&["train", s(&data), "--layers", "1", "--hidden", "8", "--epochs", "1", "-q", "-o", s(&tabular)]);
    assert!(fails(&["image", "sample", s(&tabular), "-o", s(&t.path("g.png"))]).contains("not an image model"));
    assert!(fails(&["image", "sample", s(&model), "--temperature", "-1", "-o", s(&t.path("g.png"))]).contains("temperature"));
    assert!(fails(&["image", "sample", s(&model), "-o", s(&t.path("g.jpg"))]).contains(".png, .npy or .csv"));
}

#[test]
fn image_train_checkpoints_and_resumes_where_it_stopped() {
    let t = TempDir::new("image-resume");
    let (train, model) = (t.path("train-idx3-ubyte"), t.path("glow.safetensors"));
    write_ramps(&train, 400, 8, 3);
    let run = |steps: &str, resume: bool| {
        let mut args = vec!["image", "train", s(&train), "--levels", "1", "--steps", "1", "--hidden", "8", "--max-steps", steps];
        args.extend(["--eval-every", "10", "-q", "--json", "-o", s(&model)]);
        if resume {
            args.push("--resume");
        }
        ok(&args)
    };
    let err = fails(&["image", "train", s(&train), "--resume", "-o", s(&model)]);
    assert!(err.contains("no checkpoint at") && err.contains("glow.checkpoint.safetensors"), "{err}");
    run("20", false);
    let checkpoint = t.path("glow.checkpoint.safetensors");
    // The checkpoint is a model every command reads.
    ok(&["info", s(&checkpoint)]);
    let resumed = run("40", true);
    assert_eq!(json_field(&resumed, "steps"), 40.0, "{resumed}");
    // Other flags than the run's are refused.
    let err = fails(&["image", "train", s(&train), "--levels", "1", "--steps", "2", "--hidden", "8", "--resume", "-o", s(&model)]);
    assert!(err.contains("another architecture"), "{err}");
}
