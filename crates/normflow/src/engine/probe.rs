//! Probes of the machine's arithmetic limits, for the benchmarks: the rate of the engine's
//! matrix products, and the rate of fused multiply-adds with no memory traffic at all, which no
//! implementation of a product on this machine can exceed.

use super::matmul::matmul_ab;

/// Throughput in GFLOP/s of `threads` concurrent `m×k · k×n` products with the engine's own
/// settings (single-threaded products, one per thread, as the training step runs them): the
/// machine's practical limit for this engine.
pub fn product_gflops(m: usize, n: usize, k: usize, threads: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let flop = 2.0 * (m * n * k) as f64;
    let reps = (4e9 / flop).clamp(3.0, 1000.0) as usize;
    gflops_on_threads(threads, flop * reps as f64, || {
        let mut out = vec![0.0f32; m * n];
        for _ in 0..reps {
            matmul_ab(&mut out, &a, &b, m, n, k, false);
        }
    })
}

/// Runs `work` on `threads` threads at once and returns their joint rate in GFLOP/s, given the
/// FLOPs of one run of `work`.
fn gflops_on_threads(threads: usize, flop_per_thread: f64, work: impl Fn() + Sync) -> f64 {
    let threads = threads.max(1);
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(&work);
        }
    });
    flop_per_thread * threads as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// `f32` lanes of the widest vector register the build targets.
#[cfg(target_feature = "avx512f")]
const LANES: usize = 16;
#[cfg(not(target_feature = "avx512f"))]
const LANES: usize = 8;

/// Independent accumulator registers: enough to hide the latency of a multiply-add on two
/// pipelines, few enough to stay in registers.
const CHAINS: usize = 12;

/// One multiply-add as the products do it: fused where the build targets FMA, else a multiply
/// and an add (still two FLOPs).
#[inline(always)]
fn multiply_add(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_feature = "fma")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        a * b + c
    }
}

/// `rounds` multiply-adds on each of `CHAINS × LANES` independent accumulators held in
/// registers; returns their sum so that the work cannot be optimised away.
fn multiply_add_chains(rounds: usize, scale: f32, shift: f32) -> f32 {
    let mut acc = [[0.0f32; LANES]; CHAINS];
    for (c, chain) in acc.iter_mut().enumerate() {
        for (l, v) in chain.iter_mut().enumerate() {
            *v = (c * LANES + l) as f32 * 1e-3;
        }
    }
    for _ in 0..rounds {
        for chain in acc.iter_mut() {
            for v in chain.iter_mut() {
                *v = multiply_add(*v, scale, shift);
            }
        }
    }
    acc.iter().flatten().sum()
}

/// Peak throughput in GFLOP/s of `threads` threads each doing multiply-adds on registers only:
/// the ceiling of any `f32` matrix product on this machine (a product also loads its operands),
/// so a target that needs more than this rate for the FLOPs it must do cannot be met.
pub fn multiply_add_peak_gflops(threads: usize) -> f64 {
    let rounds = 50_000_000;
    let flop = 2.0 * (rounds * CHAINS * LANES) as f64;
    gflops_on_threads(threads, flop, || {
        std::hint::black_box(multiply_add_chains(rounds, std::hint::black_box(0.999), std::hint::black_box(1e-3)));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_compute_the_recurrence() {
        // x ← 0.5·x + 1 from x₀ converges to 2; after 60 rounds every lane is 2 to f32 precision.
        let sum = multiply_add_chains(60, 0.5, 1.0);
        assert!((sum - 2.0 * (CHAINS * LANES) as f32).abs() < 1e-3, "{sum}");
    }
}
