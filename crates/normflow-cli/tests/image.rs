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
    // The median and the worst image bracket the tail: median ≤ worst, and the worst is a
    // real image index.
    let (median, worst) = (json_field(&eval, "median_bits_per_dim"), json_field(&eval, "max_bits_per_dim"));
    assert!(median.is_finite() && median <= worst && json_field(&eval, "worst_image") < 200.0, "{eval}");
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

/// The pixels of an IDX file written by [`write_ramps`]: (count, side, values).
fn idx_pixels(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let side = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    (n, side, bytes[16..].to_vec())
}

#[test]
fn npy_arrays_and_png_folders_read_as_the_same_images() {
    let t = TempDir::new("image-sets");
    let (idx, model) = (t.path("train-idx3-ubyte"), t.path("glow.safetensors"));
    write_ramps(&idx, 40, 8, 5);
    ok(&["image", "train", s(&idx), "--levels", "1", "--steps", "1", "--hidden", "8", "--max-steps", "5", "-q", "-o", s(&model)]);
    let (n, side, pixels) = idx_pixels(&idx);
    // The same images as a [N, H, W] byte array, as [N, H, W, 1] floats, and as PNG files.
    let npy_u8 = t.path("images.npy");
    let mut npy = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({n}, {side}, {side}), }}").into_bytes();
    npy.resize(118, b' ');
    npy.push(b'\n');
    std::fs::write(&npy_u8, [b"\x93NUMPY\x01\x00".as_slice(), &(npy.len() as u16).to_le_bytes(), &npy, &pixels].concat()).unwrap();
    let npy_f4 = t.path("images-f4.npy");
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {side}, {side}, 1), }}").into_bytes();
    header.resize(118, b' ');
    header.push(b'\n');
    let floats: Vec<u8> = pixels.iter().flat_map(|&p| (p as f32).to_le_bytes()).collect();
    std::fs::write(&npy_f4, [b"\x93NUMPY\x01\x00".as_slice(), &(header.len() as u16).to_le_bytes(), &header, &floats].concat()).unwrap();
    let folder = t.path("pngs");
    std::fs::create_dir(&folder).unwrap();
    for (i, img) in pixels.chunks(side * side).enumerate() {
        image::GrayImage::from_raw(side as u32, side as u32, img.to_vec()).unwrap().save(folder.join(format!("{i:03}.png"))).unwrap();
    }
    let bpd = |data: &Path| json_field(&ok(&["image", "eval", s(&model), s(data), "--json"]), "bits_per_dim");
    let expected = bpd(&idx);
    for data in [&npy_u8, &npy_f4, &folder] {
        assert_eq!(bpd(data), expected, "{}", data.display());
    }
    // A folder of mixed sizes, pixels out of range, an empty folder: clear errors.
    image::GrayImage::new(4, 4).save(folder.join("zzz.png")).unwrap();
    let err = fails(&["image", "eval", s(&model), s(&folder)]);
    assert!(err.contains("zzz.png") && err.contains("one size"), "{err}");
    let empty = t.path("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(fails(&["image", "eval", s(&model), s(&empty)]).contains("no .png files"));
    let floats: Vec<u8> = pixels.iter().enumerate().flat_map(|(i, &p)| if i == 70 { 300f32 } else { p as f32 }.to_le_bytes()).collect();
    std::fs::write(&npy_f4, [b"\x93NUMPY\x01\x00".as_slice(), &(header.len() as u16).to_le_bytes(), &header, &floats].concat()).unwrap();
    let err = fails(&["image", "eval", s(&model), s(&npy_f4)]);
    assert!(err.contains("image 2") && err.contains("0–255"), "{err}");
}

#[test]
fn encode_then_decode_gives_the_images_back_and_interpolation_draws_a_grid() {
    let t = TempDir::new("image-latent");
    let (idx, model) = (t.path("train-idx3-ubyte"), t.path("glow.safetensors"));
    write_ramps(&idx, 60, 8, 6);
    ok(&["image", "train", s(&idx), "--levels", "2", "--steps", "1", "--hidden", "8", "--max-steps", "20", "-q", "-o", s(&model)]);
    let (latents, decoded) = (t.path("z.npy"), t.path("x.npy"));
    ok(&["image", "encode", s(&model), s(&idx), "-o", s(&latents)]);
    let z = normflow::data::read_npy(&latents).unwrap();
    assert_eq!((z.rows(), z.cols()), (60, 64));
    ok(&["image", "decode", s(&model), s(&latents), "-o", s(&decoded)]);
    let x = normflow::data::read_npy(&decoded).unwrap();
    let (_, _, pixels) = idx_pixels(&idx);
    assert!(x.as_slice().iter().zip(&pixels).all(|(a, &b)| *a == b as f32), "decode(encode(x)) = x");
    let grid = t.path("interp.png");
    ok(&["image", "interpolate", s(&model), s(&idx), "--pairs", "0:1,2:3,4:5", "--steps", "6", "-o", s(&grid)]);
    let png = image::open(&grid).unwrap();
    assert_eq!((png.width(), png.height()), (6 * 9 + 1, 3 * 9 + 1));
    // The ends of a row are the images themselves.
    let first = png.to_luma8();
    for y in 0..8 {
        for x in 0..8 {
            assert_eq!(first.get_pixel(1 + x, 1 + y).0[0], pixels[(y * 8 + x) as usize]);
        }
    }
    let err = fails(&["image", "interpolate", s(&model), s(&idx), "--pairs", "0:99", "-o", s(&grid)]);
    assert!(err.contains("'0:99'"), "{err}");
    let err = fails(&["image", "decode", s(&model), s(&idx), "-o", s(&grid)]);
    assert!(err.contains("values") || err.contains("error"), "{err}");
}

#[test]
fn image_train_fits_a_multiscale_realnvp_that_every_image_command_reads() {
    let t = TempDir::new("image-realnvp");
    let (train, test, model) = (t.path("train-idx3-ubyte"), t.path("test-idx3-ubyte"), t.path("rnvp.safetensors"));
    write_ramps(&train, 400, 8, 7);
    write_ramps(&test, 100, 8, 8);
    let args = ["image", "train", s(&train), "--flow", "realnvp", "--levels", "2", "--steps", "1", "--hidden", "8", "--max-steps", "40"];
    let summary = ok(&[&args[..], &["--eval-every", "20", "-q", "--json", "-o", s(&model)]].concat());
    let v: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(v["flow"], "realnvp", "{summary}");
    let bpd = json_field(&ok(&["image", "eval", s(&model), s(&test), "--json"]), "bits_per_dim");
    assert!(bpd < 8.0, "{bpd}");
    let (z, x) = (t.path("z.npy"), t.path("x.npy"));
    ok(&["image", "encode", s(&model), s(&test), "-o", s(&z)]);
    ok(&["image", "decode", s(&model), s(&z), "-o", s(&x)]);
    ok(&["image", "sample", s(&model), "-n", "9", "--temperature", "1.2", "-o", s(&t.path("g.png"))]);
    // Odd sizes for the squeezes are refused.
    let err = fails(&["image", "train", s(&train), "--flow", "realnvp", "--levels", "5", "-o", s(&model)]);
    assert!(err.contains("divide by 16"), "{err}");
}

#[test]
fn a_folder_of_rgb_pngs_trains_evaluates_and_samples_in_colour() {
    let t = TempDir::new("image-rgb");
    let (folder, model) = (t.path("rgb"), t.path("glow.safetensors"));
    std::fs::create_dir(&folder).unwrap();
    let mut rng = normflow::Rng::new(9);
    for i in 0..64 {
        let tint = [rng.uniform(), rng.uniform(), rng.uniform()].map(|v| 40.0 + 160.0 * v);
        let img = image::RgbImage::from_fn(8, 8, |x, y| {
            image::Rgb(tint.map(|c| (c + 4.0 * x as f64 - 2.0 * y as f64 + 3.0 * rng.normal()).clamp(0.0, 255.0) as u8))
        });
        img.save(folder.join(format!("{i:02}.png"))).unwrap();
    }
    ok(&["image", "train", s(&folder), "--levels", "2", "--steps", "1", "--hidden", "8", "--max-steps", "20", "-q", "-o", s(&model)]);
    let info = ok(&["info", s(&model), "--json"]);
    assert!(info.contains("\"channels\":3"), "{info}");
    let bpd = json_field(&ok(&["image", "eval", s(&model), s(&folder), "--json"]), "bits_per_dim");
    assert!(bpd < 8.0, "{bpd}");
    let grid = t.path("grid.png");
    ok(&["image", "sample", s(&model), "-n", "4", "-o", s(&grid)]);
    assert_eq!(image::open(&grid).unwrap().color(), image::ColorType::Rgb8);
}

/// `n` images of `side×side` ramps rising left to right (class 0) or falling (class 1), and
/// their labels, as IDX files.
fn write_two_classes(images: &Path, labels: &Path, n: usize, side: usize, seed: u64) {
    let mut rng = normflow::Rng::new(seed);
    let mut bytes = vec![0u8, 0, 0x08, 3];
    for d in [n, side, side] {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    let mut label_bytes = vec![0u8, 0, 0x08, 1];
    label_bytes.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        let class = i % 2;
        label_bytes.push(class as u8);
        let slope = if class == 0 { 12.0 } else { -12.0 };
        for _y in 0..side {
            for x in 0..side {
                bytes.push((128.0 + slope * (x as f64 - side as f64 / 2.0) + 4.0 * rng.normal()).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    std::fs::write(images, bytes).unwrap();
    std::fs::write(labels, label_bytes).unwrap();
}

#[test]
fn a_class_conditional_glow_scores_and_samples_by_class() {
    let t = TempDir::new("image-classes");
    let (train, train_labels, model) = (t.path("train-idx3-ubyte"), t.path("train-labels-idx1-ubyte"), t.path("c.safetensors"));
    write_two_classes(&train, &train_labels, 600, 8, 1);
    let (test, test_labels) = (t.path("test-idx3-ubyte"), t.path("test-labels-idx1-ubyte"));
    write_two_classes(&test, &test_labels, 200, 8, 2);
    ok(&[
        "image",
        "train",
        s(&train),
        "--labels",
        s(&train_labels),
        "--levels",
        "2",
        "--steps",
        "2",
        "--hidden",
        "16",
        "--max-steps",
        "300",
        "--lr",
        "2e-3",
        "-q",
        "-o",
        s(&model),
    ]);
    let bpd = |labels: &Path| json_field(&ok(&["image", "eval", s(&model), s(&test), "--labels", s(labels), "--json"]), "bits_per_dim");
    // The same images scored under the wrong class are far less likely.
    let swapped = t.path("swapped-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&test_labels).unwrap();
    bytes[8..].iter_mut().for_each(|b| *b = 1 - *b);
    std::fs::write(&swapped, bytes).unwrap();
    let (right, wrong) = (bpd(&test_labels), bpd(&swapped));
    assert!(right + 0.1 < wrong, "right labels {right} bits/dim, swapped {wrong}");
    // Samples of class 0 rise left to right; of class 1 they fall.
    for (class, rising) in [("0", true), ("1", false)] {
        let rows = t.path("samples.npy");
        ok(&["image", "sample", s(&model), "-n", "32", "--class", class, "--temperature", "0.7", "-o", s(&rows)]);
        let x = normflow::data::read_npy(&rows).unwrap();
        let (mut left, mut right) = (0.0, 0.0);
        for r in 0..x.rows() {
            for (i, v) in x.row(r).iter().enumerate() {
                if i % 8 < 4 {
                    left += v;
                } else {
                    right += v;
                }
            }
        }
        assert_eq!(right > left, rising, "class {class}: left {left}, right {right}");
    }
    // Labels are required by a conditional model, refused by others, and checked.
    assert!(fails(&["image", "eval", s(&model), s(&test)]).contains("--labels"));
    assert!(fails(&["image", "sample", s(&model), "--class", "7", "-o", s(&t.path("g.png"))]).contains("classes 0..2"));
    assert!(fails(&["image", "encode", s(&model), s(&test), "-o", s(&t.path("z.npy"))]).contains("class-conditional"));
    let short = t.path("short-labels-idx1-ubyte");
    std::fs::write(&short, [0u8, 0, 8, 1, 0, 0, 0, 2, 0, 1]).unwrap();
    assert!(fails(&["image", "eval", s(&model), s(&test), "--labels", s(&short)]).contains("2 labels for 200 images"));
}
