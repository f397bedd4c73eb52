//! Probes of the machine's arithmetic limits, for the benchmarks: the rate of the engine's
//! matrix products, and the rate of fused multiply-adds with no memory traffic at all, which no
//! implementation of a product on this machine can exceed.

use super::conv::image_parts;
use super::conv::Conv2dShape;
use super::conv_group::{group_images, groups, GroupConv};
use super::isa::{self, Isa};
use super::matmul::matmul_ab;
use super::pool::{self, LineBuf};
use super::threads::for_each_part;

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

/// Seconds of one forward and one backward pass (each the best of `reps`) of the convolution
/// `s` as the image networks run their layers: the batch split into one part per worker, each
/// part in groups of images already in group layout (channel-major over the group, see
/// `conv_group`), each worker with its own scratch. Unlike [`super::conv2d_forward`] and
/// [`super::conv2d_backward`], no conversion from or to image rows is timed: a network converts
/// only at its ends.
pub fn conv_layer_seconds(s: Conv2dShape, reps: usize) -> (f64, f64) {
    let (pixels, group) = (s.pixels(), group_images(s.pixels()));
    let fill = |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7919 + seed) % 1000) as f32 / 500.0 - 1.0).collect() };
    let (weight, bias) = (fill(s.weight_len(), 1).iter().map(|v| 0.1 * v).collect::<Vec<_>>(), fill(s.out_channels, 2));
    let conv = GroupConv::new(s, &weight, &bias);
    let parts = image_parts(s.batch);
    // Each part's groups: (images, input, output gradient), line-aligned as a network's.
    let data: Vec<Vec<(usize, LineBuf, LineBuf)>> = parts
        .iter()
        .map(|part| {
            groups(part.len(), pixels)
                .map(|g| {
                    let x = LineBuf::copied(&fill(s.in_channels * g.len() * pixels, part.start + g.start));
                    (g.len(), x, LineBuf::copied(&fill(s.out_channels * g.len() * pixels, g.start + 7)))
                })
                .collect()
        })
        .collect();
    let pass = |backward: bool| {
        for_each_part(parts.len(), &|p| {
            let mut y = LineBuf::scratch(s.out_channels.max(s.in_channels) * group * pixels);
            let mut work = LineBuf::scratch(conv.work_len(group));
            let (mut gw, mut gb) = (pool::zeroed(conv.weight_grad_len()), pool::zeroed(s.out_channels));
            for (images, x, g) in &data[p] {
                if backward {
                    conv.backward(*images, x, g, &mut y, &mut gw, &mut gb, &mut work);
                } else {
                    conv.forward(*images, x, &mut y, &mut work, true);
                }
            }
            for v in [gw, gb] {
                pool::give(v);
            }
        });
    };
    let best = |backward: bool| {
        pass(backward);
        (0..reps.max(1))
            .map(|_| {
                let start = std::time::Instant::now();
                pass(backward);
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    (best(false), best(true))
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

/// Independent accumulator registers: enough to hide the latency of a multiply-add on two
/// pipelines, few enough to stay in registers (of 16 or 32).
const CHAINS: usize = 12;

/// `rounds` multiply-adds `x ← x·scale + shift` on each of `CHAINS` independent registers of
/// `width`; returns the sum of every lane so that the work cannot be optimised away.
fn multiply_add_chains(width: Isa, rounds: usize, scale: f32, shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        match width {
            // SAFETY: the CPU reported the feature at run time (`Isa::detect`).
            Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => return unsafe { chains_avx512(rounds, scale, shift) },
            // SAFETY: as above.
            Isa::Avx2Fma if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") => {
                return unsafe { chains_avx2(rounds, scale, shift) }
            }
            _ => {}
        }
    }
    let _ = width;
    let mut acc: [f32; CHAINS] = std::array::from_fn(|c| c as f32 * 1e-3);
    for _ in 0..rounds {
        for v in acc.iter_mut() {
            *v = v.mul_add(scale, shift);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chains_avx512(rounds: usize, scale: f32, shift: f32) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(scale), _mm512_set1_ps(shift));
    let mut acc: [__m512; CHAINS] = std::array::from_fn(|c| _mm512_set1_ps(c as f32 * 1e-3));
    for _ in 0..rounds {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_avx2(rounds: usize, scale: f32, shift: f32) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(scale), _mm256_set1_ps(shift));
    let mut acc: [__m256; CHAINS] = std::array::from_fn(|c| _mm256_set1_ps(c as f32 * 1e-3));
    for _ in 0..rounds {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut lanes = [0.0f32; 8];
    acc.iter()
        .map(|&v| {
            _mm256_storeu_ps(lanes.as_mut_ptr(), v);
            lanes.iter().sum::<f32>()
        })
        .sum()
}

/// Peak throughput in GFLOP/s of `threads` threads each doing multiply-adds on registers only,
/// at the widest vector width the kernels use ([`isa::active`]: the CPU's widest unless
/// `NORMFLOW_ISA` caps it): the ceiling of any `f32` matrix product on this machine (a product
/// also loads its operands), so a target that needs more than this rate for the FLOPs it must
/// do cannot be met. Returns the width too.
pub fn multiply_add_peak_gflops(threads: usize) -> (f64, Isa) {
    let width = isa::active();
    let rounds = 20_000_000;
    let flop = 2.0 * (rounds * CHAINS * width.lanes()) as f64;
    let rate = gflops_on_threads(threads, flop, || {
        std::hint::black_box(multiply_add_chains(width, rounds, std::hint::black_box(0.999), std::hint::black_box(1e-3)));
    });
    (rate, width)
}

/// The split-`bf16` products' limit on this machine, in GFLOP/s of the `f32` work they replace
/// (a third of the `bf16` tile rate: three tile products stand in for one `f32` product), with
/// `threads` threads of register-only tile products; `None` without AMX.
pub fn split_peak_gflops(threads: usize) -> Option<f64> {
    let rounds = 2_000_000;
    super::split_product::tile_products(1)?;
    let rate = gflops_on_threads(threads, super::split_product::TILE_ROUND_FLOP * rounds as f64, || {
        std::hint::black_box(super::split_product::tile_products(rounds));
    });
    Some(rate / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_compute_the_recurrence_at_the_detected_width_and_portably() {
        // x ← 0.5·x + 1 from x₀ converges to 2; after 60 rounds every lane is 2 to f32 precision.
        for width in [Isa::detect(), Isa::Portable] {
            let sum = multiply_add_chains(width, 60, 0.5, 1.0);
            let want = 2.0 * (CHAINS * width.lanes()) as f32;
            assert!((sum - want).abs() < 1e-3 * want, "{width:?}: {sum}, want {want}");
        }
    }
}
