//! `normflow bench`: the workloads of `shared/bench/WORKLOAD.md`, printed as its JSON lines so
//! that the Python peers' results compare directly.

use std::time::Instant;

use normflow::bijection::BijectionSpec;
use normflow::engine::time_in_products;
use normflow::flows::{MafConfig, NsfConfig, RealNvpConfig};
use normflow::nn::{made_masks, masked_product_macs};
use normflow::train::Trainer;
use normflow::{Flow, Matrix, Rng};
use serde_json::json;

use super::{print_json, CliError};
use crate::cli::BenchArgs;

const ROWS: usize = 16_384;
const WARMUP_STEPS: usize = 10;

struct Size {
    name: &'static str,
    d: usize,
    k: usize,
    h: usize,
    b: usize,
}

const SIZES: [Size; 3] = [
    Size { name: "S", d: 8, k: 5, h: 64, b: 256 },
    Size { name: "M", d: 32, k: 5, h: 256, b: 512 },
    Size { name: "L", d: 64, k: 10, h: 512, b: 1024 },
];

/// Standard normal rows, then `x[:, j] += 0.5 sin(x[:, j−1])` in order.
fn workload_data(d: usize) -> Matrix {
    let mut rng = Rng::new(12345);
    let mut x = Matrix::from_vec(ROWS, d, (0..ROWS * d).map(|_| rng.normal() as f32).collect());
    for i in 0..ROWS {
        let r = x.row_mut(i);
        for j in 1..d {
            r[j] += 0.5 * r[j - 1].sin();
        }
    }
    x
}

fn build(flow: &str, s: &Size) -> Result<Flow, CliError> {
    let mut rng = Rng::new(0);
    let hidden = vec![s.h, s.h];
    Ok(match flow {
        "coupling" => {
            RealNvpConfig::new(s.d).with_layers(s.k).with_hidden(hidden).with_standardize(false).with_whiten(false).init(&mut rng)?
        }
        "maf" => MafConfig::new(s.d).with_layers(s.k).with_hidden(hidden).with_standardize(false).with_whiten(false).init(&mut rng)?,
        "nsf" => NsfConfig::new(s.d).with_layers(s.k).with_hidden(hidden).with_standardize(false).with_whiten(false).init(&mut rng)?,
        other => return Err(CliError::Usage(format!("unknown workload '{other}' (known: coupling, maf, nsf)"))),
    })
}

/// Matrix-product multiply-adds per row, summed over the flow's layers, of the three measured
/// passes: evaluation (log-prob: each conditioner's forward products), one training step
/// (forward, weight gradients and input gradients) and sampling. MAF counts what its masked
/// products actually do, read from its layers' architecture: the tiles of its masks, and in
/// sampling each hidden unit once over the inputs its mask lets through.
struct PassMacs {
    eval: usize,
    train: usize,
    sample: usize,
}

fn pass_macs(flow_name: &str, flow: &Flow, s: &Size) -> PassMacs {
    let (inputs, outputs) = match flow_name {
        "coupling" => (s.d / 2, 2 * (s.d - s.d / 2)),
        "maf" => {
            let mut total = PassMacs { eval: 0, train: 0, sample: 0 };
            add_made_macs(&flow.transform().spec(), &mut total);
            return total;
        }
        _ => (s.d / 2, 23 * (s.d - s.d / 2)),
    };
    let per_layer = inputs * s.h + s.h * s.h + s.h * outputs;
    PassMacs { eval: per_layer * s.k, train: 3 * per_layer * s.k, sample: per_layer * s.k }
}

/// Adds the multiply-adds per row of every MADE layer in `spec` to `total`, from the masks its
/// recorded architecture (order, sizes, degree layout) gives.
fn add_made_macs(spec: &BijectionSpec, total: &mut PassMacs) {
    match spec {
        BijectionSpec::Chain { layers } => layers.iter().for_each(|l| add_made_macs(l, total)),
        BijectionSpec::MaskedAutoregressive { dim, hidden, order, context_dim, transformer, hidden_degrees, .. } => {
            let per_dim = transformer.params_per_dim();
            let sizes: Vec<usize> = std::iter::once(dim + context_dim).chain(hidden.iter().copied()).chain([per_dim * dim]).collect();
            for (l, m) in made_masks(order, *context_dim, hidden, per_dim, *hidden_degrees).iter().enumerate() {
                let [forward, weight_grad, input_grad] = masked_product_macs(m, sizes[l + 1], sizes[l]);
                total.eval += forward;
                total.train += forward + weight_grad + input_grad;
                total.sample += m.iter().filter(|&&v| v != 0.0).count();
            }
        }
        _ => {}
    }
}

pub(super) fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One timed run: its wall time and the wall time its matrix products alone would take (all
/// threads' time inside products over the thread count), both in ms.
struct Timing {
    ms: f64,
    product_ms: f64,
}

/// Runs `f` once, timing it and its products in the same run, so that both see the same phase
/// of a shared machine.
fn timed<T>(threads: usize, f: impl FnOnce() -> T) -> (T, Timing) {
    let ((out, ms), products) = time_in_products(|| {
        let t = Instant::now();
        let out = f();
        (out, t.elapsed().as_secs_f64() * 1e3)
    });
    let product_ms = products.as_secs_f64() * 1e3 / threads as f64;
    (out, Timing { ms, product_ms })
}

/// Medians of the wall and product times of some runs.
fn median_timing(runs: &[Timing]) -> Timing {
    Timing { ms: median_ms(runs.iter().map(|t| t.ms).collect()), product_ms: median_ms(runs.iter().map(|t| t.product_ms).collect()) }
}

fn mean_nll(flow: &Flow, x: &Matrix) -> Result<f64, CliError> {
    let lp = flow.log_prob(x, None)?;
    Ok(-lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len() as f64)
}

/// The convolutions of a Glow step on MNIST (squeezed 14×14×4 and 7×7×16 images, batch 64):
/// the coupling network's 3×3 → 1×1 → 3×3 as `(in, out, side, kernel)`, with 256 hidden
/// channels (issue 15's comparison model) and with 64 (the default, and the model of the
/// README's runs).
fn conv_shapes() -> Vec<(usize, usize, usize, usize)> {
    [256, 64].into_iter().flat_map(|h| [(2, h, 14, 3), (h, h, 14, 1), (h, 4, 14, 3), (8, h, 7, 3), (h, h, 7, 1), (h, 16, 7, 3)]).collect()
}

/// Prints the rate of the convolution kernel, forward and backward, at the image flows' shapes.
fn conv_probe() -> Result<(), CliError> {
    use normflow::engine::{conv2d_backward, conv2d_forward, Conv2dShape};
    let mut rng = Rng::new(0);
    // A quarter second of the first shape, unmeasured: the first passes of a process ran at a
    // third of the rate for tens of milliseconds (the workers and clocks waking up).
    let shapes = conv_shapes();
    let (c_in, c_out, side, kernel) = shapes[0];
    let warm = Conv2dShape { batch: 64, in_channels: c_in, out_channels: c_out, height: side, width: side, kernel };
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < 0.25 {
        normflow::engine::conv_layer_seconds(warm, 1);
    }
    for &(in_channels, out_channels, side, kernel) in &shapes {
        let s = Conv2dShape { batch: 64, in_channels, out_channels, height: side, width: side, kernel };
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
        let (x, w, b, g) = (draw(s.batch * s.input_len()), draw(s.weight_len()), draw(out_channels), draw(s.batch * s.output_len()));
        let mut out = vec![0.0f32; s.batch * s.output_len()];
        let best = |f: &mut dyn FnMut()| -> f64 {
            f();
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let forward = best(&mut || conv2d_forward(s, &x, &w, &b, &mut out));
        let backward = best(&mut || drop(conv2d_backward(s, &x, &w, &g)));
        let flop = 2.0 * s.forward_macs() as f64;
        // The layer as a network runs it (group layout, forward with its ReLU), without the
        // batch functions' conversion from and to image rows.
        let (layer_forward, layer_backward) = normflow::engine::conv_layer_seconds(s, 15);
        print_json(&json!({
            "impl": "normflow", "probe": "conv2d", "batch": s.batch, "in_channels": in_channels, "out_channels": out_channels,
            "height": side, "width": side, "kernel": kernel,
            "forward_ms": forward * 1e3, "forward_gflops": flop / forward / 1e9,
            "backward_ms": backward * 1e3, "backward_gflops": 2.0 * flop / backward / 1e9,
            "layer_forward_gflops": flop / layer_forward / 1e9, "layer_backward_gflops": 2.0 * flop / layer_backward / 1e9,
        }))?;
    }
    Ok(())
}

/// The most timed steps or repetitions one run takes.
const MAX_REPEATS: usize = 1_000_000;

pub fn run(a: BenchArgs) -> Result<(), CliError> {
    if a.steps > MAX_REPEATS || a.reps > MAX_REPEATS {
        return Err(CliError::Usage(format!("--steps and --reps must be at most {MAX_REPEATS}")));
    }
    let sizes: Vec<&Size> = a
        .sizes
        .iter()
        .map(|n| {
            SIZES
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(n))
                .ok_or_else(|| CliError::Usage(format!("unknown size '{n}' (known: S, M, L)")))
        })
        .collect::<Result<_, _>>()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.gemm_probe {
        for &(m, n, k) in &[(512usize, 512usize, 512usize), (256, 256, 256)] {
            print_json(&json!({
                "impl": "normflow", "probe": "gemm", "shape": [m, n, k],
                "gflops_1_thread": normflow::engine::product_gflops(m, n, k, 1),
                "gflops_all_threads": normflow::engine::product_gflops(m, n, k, threads),
                "threads": threads,
            }))?;
        }
        let (one, width) = normflow::engine::multiply_add_peak_gflops(1);
        let (all, _) = normflow::engine::multiply_add_peak_gflops(threads);
        print_json(&json!({
            "impl": "normflow", "probe": "multiply_add", "width": format!("{width:?}"), "lanes": width.lanes(),
            "gflops_1_thread": one, "gflops_all_threads": all, "threads": threads,
        }))?;
        // With the split-bf16 products the products' own limit is the tile unit's, not the
        // f32 multiply-adds': reported as the f32 work the split replaces.
        let precision = normflow::engine::product_precision();
        if precision == normflow::engine::ProductPrecision::Bf16x3 {
            if let (Some(one), Some(all)) = (normflow::engine::split_peak_gflops(1), normflow::engine::split_peak_gflops(threads)) {
                print_json(&json!({
                    "impl": "normflow", "probe": "split_multiply_add", "products": precision.name(),
                    "gflops_1_thread": one, "gflops_all_threads": all, "threads": threads,
                }))?;
            }
        }
    }
    if a.conv_probe {
        conv_probe()?;
    }
    for flow_name in &a.flows {
        for s in &sizes {
            let x = workload_data(s.d);
            if flow_name == "fm" {
                super::bench_fm::run(s.name, &x, s.h, s.b, a.steps, a.reps, WARMUP_STEPS, threads)?;
                continue;
            }
            let mut flow = build(flow_name, s)?;
            let nll_before = mean_nll(&flow, &x)?;
            let mut trainer = Trainer::new(&flow, 1e-3);
            trainer.grad_clip = None;
            let batches = ROWS / s.b;
            let mut steps = Vec::with_capacity(a.steps);
            for step in 0..WARMUP_STEPS + a.steps {
                let start = (step % batches) * s.b;
                let batch = x.slice_rows(start, start + s.b);
                let (r, t) = timed(threads, || trainer.step(&mut flow, &batch, None));
                r?;
                if step >= WARMUP_STEPS {
                    steps.push(t);
                }
            }
            let mut lps = Vec::new();
            for _ in 0..a.reps.max(1) {
                let (r, t) = timed(threads, || flow.log_prob(&x, None));
                r?;
                lps.push(t);
            }
            let mut rng = Rng::new(1);
            flow.sample(ROWS, None, &mut rng)?;
            let mut samples = Vec::new();
            for _ in 0..a.reps.max(1) {
                let (r, t) = timed(threads, || flow.sample(ROWS, None, &mut rng));
                r?;
                samples.push(t);
            }
            let nll_after = mean_nll(&flow, &x)?;
            let (step, lp, sample) = (median_timing(&steps), median_timing(&lps), median_timing(&samples));
            let macs = pass_macs(flow_name, &flow, s);
            let train_flop = 2.0 * (macs.train * s.b) as f64;
            print_json(&json!({
                "impl": "normflow",
                "products": products_in_use(),
                "flow": flow_name,
                "size": s.name,
                "train_step_ms": step.ms,
                "train_gflops": train_flop / step.ms / 1e6,
                "train_flop": train_flop,
                "logprob_flop": 2.0 * (macs.eval * ROWS) as f64,
                "sample_flop": 2.0 * (macs.sample * ROWS) as f64,
                "train_product_ms": step.product_ms,
                "logprob_product_ms": lp.product_ms,
                "sample_product_ms": sample.product_ms,
                "logprob_ms": lp.ms,
                "sample_ms": sample.ms,
                "nll_after": nll_after,
                "nll_before": nll_before,
                "threads": threads,
                "logprob_mode": "all",
                "logprob_reps": a.reps.max(1),
                "sample_reps": a.reps.max(1),
            }))?;
        }
    }
    Ok(())
}

/// The product precision that ran: `bf16x3` where it is chosen and the CPU has AMX, else `f32`.
pub(crate) fn products_in_use() -> &'static str {
    use normflow::engine::{product_precision, split_products_available, ProductPrecision};
    if product_precision() == ProductPrecision::Bf16x3 && split_products_available() {
        "bf16x3"
    } else {
        "f32"
    }
}
