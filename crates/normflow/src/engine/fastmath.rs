//! Elementwise maths written so that loops over slices vectorise (libm's scalar calls do not):
//! used where a pass evaluates many transcendental functions.

/// `a·b + c`, fused into one instruction when `FMA` (the code runs where the CPU has fused
/// multiply-add: one rounding, one instruction instead of two); a multiply and an add
/// otherwise, where `mul_add` would call a slow software routine. The kernels take `FMA` from
/// [`super::isa::dispatch`], which compiles them once per instruction set.
#[inline(always)]
pub(crate) fn mul_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `if cond { a } else { b }` as bit operations, which the compiler keeps branch-free in
/// vector code (a plain `if` on array elements can become a branch per lane, and a select can
/// become masked loads or stores, which are microcoded and slow on AMD cores).
#[inline(always)]
pub(crate) fn pick(cond: bool, a: f32, b: f32) -> f32 {
    let mask = 0u32.wrapping_sub(cond as u32);
    f32::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

/// `eˣ` with relative error below 3·10⁻⁷ on `[−87, 88]` (inputs are clamped to that range, so
/// the result is always finite and positive). Branch-free, so loops over it vectorise.
#[inline(always)]
pub(crate) fn exp<const FMA: bool>(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits (no float → int
    // conversion, whose saturating semantics would stop vectorisation).
    const ROUND: f32 = 12_582_912.0;
    // ln 2 in a high part exact in f32 and a low remainder (Cody and Waite), so that
    // x − n·ln 2 loses no precision.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = mul_add::<FMA>(x, std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = mul_add::<FMA>(-n, LN2_LO, mul_add::<FMA>(-n, LN2_HI, x));
    // Taylor polynomial of e^r on |r| ≤ ln2/2 (truncation error < r⁷/7! ≈ 1.2·10⁻⁷), by
    // Horner's rule from the highest power down (a plain loop: a closure might not be inlined
    // into the caller's instruction set, see `isa::Kernel`).
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = mul_add::<FMA>(p, r, c);
    }
    // 2ⁿ from n's bits: (n + 127) << 23.
    p * f32::from_bits(shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23)
}

/// `ln x` for positive, finite, normal `x`, with absolute error below 2·10⁻⁷ (relative below
/// 3·10⁻⁷ away from `x = 1`). Branch-free, so loops over it vectorise. Other inputs give
/// meaningless finite values: callers keep to the domain.
#[inline(always)]
pub(crate) fn ln<const FMA: bool>(x: f32) -> f32 {
    // √½.
    const SQRT_HALF_BITS: u32 = 0x3f35_04f3;
    // Write x = 2ᵉ·m with m in [√½, √2): shifting the bits by √½'s mantissa moves the exponent
    // boundary there.
    let bits = x.to_bits().wrapping_sub(SQRT_HALF_BITS);
    let e = (bits as i32 >> 23) as f32;
    let m = f32::from_bits((bits & 0x007f_ffff).wrapping_add(SQRT_HALF_BITS));
    // ln m = 2·atanh(s) with s = (m − 1)/(m + 1) in [−0.172, 0.172]: odd series to s⁹
    // (truncation below 2·s¹¹/11 ≈ 7·10⁻¹⁰).
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // Horner's rule in s², from the highest power down.
    let mut series = 1.0 / 9.0;
    for c in [1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        series = mul_add::<FMA>(series, s2, c);
    }
    mul_add::<FMA>(e, std::f32::consts::LN_2, 2.0 * s * series)
}

/// `(sin 2πt, cos 2πt)` for `t` in `[−0.5, 0.5]` (a fraction of a turn), with absolute error
/// below 2·10⁻⁷. Branch-free, so loops over it vectorise.
#[inline(always)]
pub(crate) fn sin_cos_turns(t: f32) -> (f32, f32) {
    // 1.5·2²³, as in `exp`.
    const ROUND: f32 = 12_582_912.0;
    // Nearest quarter turn q, and the remainder as an angle in [−π/4, π/4].
    let shifted = 4.0 * t + ROUND;
    let q = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let a = (t - 0.25 * (shifted - ROUND)) * std::f32::consts::TAU;
    let a2 = a * a;
    // Taylor polynomials: truncation below a¹¹/11! and a¹⁰/10! (< 3·10⁻⁸ on [−π/4, π/4]).
    let s = a * (1.0 - a2 / 6.0 * (1.0 - a2 / 20.0 * (1.0 - a2 / 42.0 * (1.0 - a2 / 72.0))));
    let c = 1.0 - a2 / 2.0 * (1.0 - a2 / 12.0 * (1.0 - a2 / 30.0 * (1.0 - a2 / 56.0)));
    // Rotate by q quarter turns: odd q swaps sine and cosine; the signs follow the quadrant.
    let odd = q & 1 == 1;
    let (s, c) = (if odd { c } else { s }, if odd { s } else { c });
    let sin_sign = (q & 2) << 30;
    let cos_sign = ((q + 1) & 2) << 30;
    (f32::from_bits(s.to_bits() ^ sin_sign), f32::from_bits(c.to_bits() ^ cos_sign))
}

/// The sum of `values` in 16 interleaved partial sums, so that it vectorises (a plain `sum`
/// adds one value at a time in order: one dependent add per value, several cycles each).
#[inline]
pub(crate) fn sum(values: &[f32]) -> f32 {
    const PARTS: usize = 16;
    let (chunks, rest) = values.as_chunks::<PARTS>();
    let mut acc = [0.0f32; PARTS];
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `Σ a·b` over two slices of one length, in 16 interleaved partial sums (see [`sum`]).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const PARTS: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (chunks_a, rest_a) = a.as_chunks::<PARTS>();
    let (chunks_b, rest_b) = b.as_chunks::<PARTS>();
    let mut acc = [0.0f32; PARTS];
    for (ca, cb) in chunks_a.iter().zip(chunks_b) {
        for l in 0..PARTS {
            acc[l] += ca[l] * cb[l];
        }
    }
    acc.iter().sum::<f32>() + rest_a.iter().zip(rest_b).map(|(x, y)| x * y).sum::<f32>()
}

/// Lanes handled together: one 256-bit vector of `f32`.
pub(crate) const LANES: usize = 8;

#[cfg(test)]
mod tests {
    #[test]
    fn exp_matches_the_standard_library_with_and_without_fused_multiply_add() {
        for exp in [super::exp::<false>, super::exp::<true>] {
            exp_matches(exp);
        }
    }

    fn exp_matches(exp: fn(f32) -> f32) {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1e30) > 0.0 && exp(-1e30) < 1e-37);
        assert!(exp(f32::NEG_INFINITY).is_finite() && exp(f32::INFINITY).is_finite());
    }

    #[test]
    fn sum_adds_every_value_whatever_the_length() {
        for n in [0, 1, 15, 16, 17, 100, 1027] {
            let v: Vec<f32> = (0..n).map(|i| (i % 9) as f32 - 3.5).collect();
            let want: f64 = v.iter().map(|&x| x as f64).sum();
            assert!((super::sum(&v) as f64 - want).abs() < 1e-3, "{n}");
        }
    }

    #[test]
    fn dot_multiplies_and_adds_every_pair() {
        for n in [0, 3, 16, 40, 1001] {
            let a: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.5).collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!((super::dot(&a, &b) as f64 - want).abs() < 1e-3, "{n}");
        }
    }

    #[test]
    fn sin_cos_turns_match_the_standard_library() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let t = -0.5 + i as f32 / 200_000.0;
            let (s, c) = super::sin_cos_turns(t);
            let (ws, wc) = (std::f64::consts::TAU * t as f64).sin_cos();
            worst = worst.max((s as f64 - ws).abs()).max((c as f64 - wc).abs());
        }
        assert!(worst < 2e-7, "worst error {worst}");
        assert_eq!(super::sin_cos_turns(0.0), (0.0, 1.0));
        assert_eq!(super::sin_cos_turns(0.25), (1.0, 0.0));
    }

    #[test]
    fn ln_matches_the_standard_library_with_and_without_fused_multiply_add() {
        for ln in [super::ln::<false>, super::ln::<true>] {
            ln_matches(ln);
        }
    }

    fn ln_matches(ln: fn(f32) -> f32) {
        let mut worst = 0.0f64;
        let mut x = 1e-30f32;
        while x < 1e30 {
            let want = (x as f64).ln();
            let got = ln(x) as f64;
            worst = worst.max((got - want).abs() / want.abs().max(1.0));
            x *= 1.000_37;
        }
        assert!(worst < 3e-7, "worst error {worst}");
        assert_eq!(ln(1.0), 0.0);
        for x in [f32::MIN_POSITIVE, 0.5, std::f32::consts::E, 2.0, f32::MAX] {
            assert!((ln(x) as f64 - (x as f64).ln()).abs() < 3e-7 * (x as f64).ln().abs().max(1.0), "{x}");
        }
    }
}
