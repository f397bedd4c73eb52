//! Trains a Glow on MNIST (`../shared/data/mnist`, or the folder given) for a number of steps and
//! prints the training rate and the test bits per dimension on all 10,000 test images.
//!
//! ```sh
//! cargo run --release --example glow_mnist -- [MNIST_DIR] [STEPS] [LEVELS] [STEPS_PER_LEVEL] [HIDDEN]
//! ```
//! Defaults: `../shared/data/mnist 500 2 4 64`. Pixels are dequantised with fresh uniform noise
//! each batch. The images are zero-padded from 28×28 to 32×32 so that the squeezes halve them
//! evenly; the padding pixels (always 0, dequantised to U(0, 1)) cost at least 0 nats, so the
//! total NLL over 784 · ln 2 is an upper bound on the bits per dimension of the 28×28 images.

use std::time::Instant;

use normflow::bijection::{Dequantize, ImageShape};
use normflow::data::read_idx;
use normflow::flows::GlowConfig;
use normflow::train::{fit, FitConfig};
use normflow::{Matrix, Rng};

/// 28×28 images padded to 32×32 with zero pixels.
fn pad(images: &Matrix) -> Matrix {
    let mut out = Matrix::zeros(images.rows(), 32 * 32);
    for n in 0..images.rows() {
        let (src, dst) = (images.row(n), out.row_mut(n));
        for y in 0..28 {
            dst[(y + 2) * 32 + 2..(y + 2) * 32 + 30].copy_from_slice(&src[y * 28..(y + 1) * 28]);
        }
    }
    out
}

fn main() -> normflow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |k: usize, default: &str| args.get(k).cloned().unwrap_or_else(|| default.to_string());
    let dir = std::path::PathBuf::from(arg(0, "../shared/data/mnist"));
    let steps: usize = arg(1, "500").parse().expect("STEPS is a number");
    let (levels, per_level, hidden): (usize, usize, usize) =
        (arg(2, "2").parse().expect("LEVELS"), arg(3, "4").parse().expect("STEPS_PER_LEVEL"), arg(4, "64").parse().expect("HIDDEN"));
    let train = pad(&read_idx(&dir.join("train-images-idx3-ubyte.gz"))?.data);
    let test = pad(&read_idx(&dir.join("t10k-images-idx3-ubyte.gz"))?.data);
    let image = ImageShape { channels: 1, height: 32, width: 32 };
    let glow = GlowConfig::new(image).with_levels(levels).with_steps(per_level).with_hidden(hidden).init(&mut Rng::new(0))?;
    let flow = glow.with_data_layer(Box::new(Dequantize::new(1024, (0..1024).collect())?))?;
    eprintln!("Glow: {levels} levels × {per_level} steps, {hidden} hidden channels, {} parameters", flow.num_params());
    let config = FitConfig {
        lr: 1e-3,
        batch_size: 64,
        max_steps: Some(steps),
        eval_every: Some(steps),
        val_frac: 0.02,
        min_gain_z: None,
        init_rows: Some(2048),
        ..FitConfig::default()
    };
    let start = Instant::now();
    let (flow, _) = fit(flow, &train, None, &config, &mut |p| {
        if p.step % 50 == 0 {
            let rate = p.step as f64 * 64.0 / start.elapsed().as_secs_f64();
            eprintln!("step {:5}  {:7.1} images/s  train {:.3} bits/dim", p.step, rate, p.train_nll / (784.0 * std::f64::consts::LN_2));
        }
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let test = flow.dequantize_rows(&test, &mut Rng::new(1))?;
    let nll = -flow.log_prob(&test, None)?.iter().map(|&v| v as f64).sum::<f64>() / test.rows() as f64;
    println!(
        "{{\"steps\": {steps}, \"seconds\": {seconds:.1}, \"images_per_second\": {:.1}, \"test_bits_per_dim\": {:.4}, \"params\": {}}}",
        steps as f64 * 64.0 / seconds,
        nll / (784.0 * std::f64::consts::LN_2),
        flow.num_params()
    );
    Ok(())
}
