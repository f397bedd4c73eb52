//! Elementwise maths written so that loops over slices vectorise (libm's scalar calls do not):
//! used where a pass evaluates many transcendental functions.

/// `eˣ` with relative error below 3·10⁻⁷ on `[−87, 88]` (inputs are clamped to that range, so
/// the result is always finite and positive). Branch-free, so loops over it vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits (no float → int
    // conversion, whose saturating semantics would stop vectorisation).
    const ROUND: f32 = 12_582_912.0;
    // ln 2 in a high part exact in f32 and a low remainder (Cody and Waite), so that
    // x − n·ln 2 loses no precision.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor polynomial of e^r on |r| ≤ ln2/2 (truncation error < r⁷/7! ≈ 1.2·10⁻⁷).
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2ⁿ from n's bits: (n + 127) << 23.
    p * f32::from_bits(shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23)
}

/// Lanes handled together: one 256-bit vector of `f32`.
const LANES: usize = 8;

/// Softmax of `v` in place. Works in fixed blocks of [`LANES`] (short slices, such as a
/// spline's 8 bins, would otherwise fall to the scalar remainder of a wider vector loop).
#[inline]
pub(crate) fn softmax_in_place(v: &mut [f32]) {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sums = [0.0f32; LANES];
    let mut blocks = v.chunks_exact_mut(LANES);
    for block in &mut blocks {
        for (x, s) in block.iter_mut().zip(sums.iter_mut()) {
            *x = exp(*x - m);
            *s += *x;
        }
    }
    let rest = blocks.into_remainder();
    for x in rest.iter_mut() {
        *x = exp(*x - m);
    }
    let r = 1.0 / (sums.iter().sum::<f32>() + rest.iter().sum::<f32>());
    v.iter_mut().for_each(|x| *x *= r);
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let got = super::exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(-1e30) > 0.0 && super::exp(-1e30) < 1e-37);
        assert!(super::exp(f32::NEG_INFINITY).is_finite() && super::exp(f32::INFINITY).is_finite());
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_inputs() {
        let mut v = [1000.0, 999.0, -1e30, 0.0];
        super::softmax_in_place(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let e = (-1.0f32).exp();
        assert!((v[0] - 1.0 / (1.0 + e)).abs() < 1e-6 && (v[1] - e / (1.0 + e)).abs() < 1e-6);
    }
}
