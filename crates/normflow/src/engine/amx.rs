//! The AMX tile machinery behind the split-`bf16` products (`split_product`): asking Linux for
//! the tile state, packing an `f32` operand into the two `bf16` parts' tiles, and the tile
//! kernel. Stable Rust has no AMX intrinsics, so the tile instructions are inline assembly.
//!
//! Layout: each operand is packed per part into 16×16 tiles of dwords, a dword holding two
//! `bf16` adjacent along the inner dimension (the pairing `TDPBF16PS` multiplies), every tile
//! 1 KB and contiguous, tiles in the order the product walks them. Products run in blocks of
//! 32×32 outputs (four accumulator tiles, two tiles of each operand), the three part products
//! `h·h + h·m + m·h` summed in the accumulators, then added to or copied into the output.

/// One factor of a product seen as `outer × inner`: element `(o, i)` at
/// `data[o·outer_step + i·inner_step]`.
pub(super) struct Operand<'a> {
    pub(super) data: &'a [f32],
    pub(super) outer_step: usize,
    pub(super) inner_step: usize,
    pub(super) outer: usize,
    pub(super) inner: usize,
}

/// Dwords per 16×16 tile.
pub(super) const TILE: usize = 256;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tiles {
    use super::{words, words_mut, Operand, TILE};
    use crate::engine::pool;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// Asks Linux for the AMX tile state for this process; whether the CPU has AMX with `bf16`
    /// and the request was granted.
    pub(in crate::engine) fn enable() -> bool {
        // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 22 AMX-BF16; the packing needs AVX-512.
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        if leaf7.edx & (1 << 24) == 0 || leaf7.edx & (1 << 22) == 0 || crate::engine::isa::Isa::detect() != crate::engine::isa::Isa::Avx512
        {
            return false;
        }
        const ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: the arch_prctl system call with ARCH_REQ_XCOMP_PERM only asks the kernel to
        // let this process use the tile state; it reads no memory. The syscall instruction
        // clobbers rcx and r11, declared here.
        unsafe {
            asm!("syscall", inlateout("rax") ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }

    /// Up to 16 values of `op` from `start`, `step` apart (`count` of them, zeros after).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(op: &Operand, start: usize, step: usize, count: usize) -> __m512 {
        if count == 0 {
            return _mm512_setzero_ps();
        }
        if step == 1 {
            let _ = &op.data[start..start + count];
            // SAFETY: the lanes read are inside `data` (checked just above); masked-off
            // lanes are not read.
            return unsafe { _mm512_maskz_loadu_ps(((1u32 << count) - 1) as u16, op.data.as_ptr().add(start)) };
        }
        let mut v = [0.0f32; 16];
        for (t, slot) in v.iter_mut().enumerate().take(count) {
            *slot = op.data[start + t * step];
        }
        // SAFETY: reads the 16 values of `v`.
        unsafe { _mm512_loadu_ps(v.as_ptr()) }
    }

    /// Each value rounded to the nearest `bf16` (`h`), and what it leaves rounded likewise
    /// (`m`), both kept in the high half of each 32-bit lane, the low half zero.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn split(x: __m512) -> (__m512i, __m512i) {
        #[inline]
        #[target_feature(enable = "avx512f")]
        fn round(bits: __m512i) -> __m512i {
            let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let up = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
            _mm512_and_si512(up, _mm512_set1_epi32(0xffff_0000u32 as i32))
        }
        let h = round(_mm512_castps_si512(x));
        let rest = _mm512_sub_ps(x, _mm512_castsi512_ps(h));
        (h, round(_mm512_castps_si512(rest)))
    }

    /// Transposes a 16×16 matrix of dwords held one row per register.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(r: &mut [__m512i; 16]) {
        // Pairs of rows interleaved by dword, then by quad-word: register 4i+j then holds, in
        // each 128-bit lane L, rows 4i…4i+3 of column 4L+j.
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        // Column 4L+j gathers lane L of registers j, 4+j, 8+j, 12+j.
        for j in 0..4 {
            let v0 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
            let v1 = _mm512_shuffle_i32x4::<0xee>(u[j], u[4 + j]);
            let w0 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
            let w1 = _mm512_shuffle_i32x4::<0xee>(u[8 + j], u[12 + j]);
            r[j] = _mm512_shuffle_i32x4::<0x88>(v0, w0);
            r[4 + j] = _mm512_shuffle_i32x4::<0xdd>(v0, w0);
            r[8 + j] = _mm512_shuffle_i32x4::<0x88>(v1, w1);
            r[12 + j] = _mm512_shuffle_i32x4::<0xdd>(v1, w1);
        }
    }

    /// Packs `op` into `tiles` (both parts: the `h` tiles, then the `m` tiles, each in order of
    /// outer block then inner block), each tile `[outer][pair]` for the left factor (`left`)
    /// and `[pair][outer]` for the right one; zeros past the operand's edges (`outer_blocks` may
    /// exceed its own).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BW (every CPU with AMX has).
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn pack(op: &Operand, tiles: &mut [u32], outer_blocks: usize, inner_blocks: usize, left: bool) {
        let part = outer_blocks * inner_blocks * TILE;
        let (hs, ms) = tiles[..2 * part].split_at_mut(part);
        // Read along whichever stride is unit: rows of the tile by outer index when the inner
        // one is contiguous (or neither is), else by pair; transpose when that is not the
        // orientation the factor needs.
        let by_outer = op.inner_step == 1 || op.outer_step != 1;
        // The high (odd) words of two registers, in order: bf16 values in a row.
        let odd_words = _mm512_set_epi16(
            63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1,
        );
        let (mut h, mut m) = ([_mm512_setzero_si512(); 16], [_mm512_setzero_si512(); 16]);
        // Tiles in the order that reads the source along its rows: by outer block first when
        // reading by outer (16 sequential streams), by inner block first when reading by pair
        // (rows 32 at a time, whole): walking down a column of 64-byte pieces instead ran at
        // memory latency.
        let (first, second) = if by_outer { (outer_blocks, inner_blocks) } else { (inner_blocks, outer_blocks) };
        for (ob, ib) in (0..first).flat_map(|f| (0..second).map(move |s| if by_outer { (f, s) } else { (s, f) })) {
            {
                let (o0, outers) = (ob * 16, op.outer.saturating_sub(ob * 16).min(16));
                let (i0, inners) = (ib * 32, op.inner.saturating_sub(ib * 32).min(32));
                for r in 0..16 {
                    let (x0, x1) = if by_outer {
                        // Row r: outer o0 + r, 32 inner values.
                        let (count, start) = (if r < outers { inners } else { 0 }, (o0 + r) * op.outer_step + i0 * op.inner_step);
                        // SAFETY: AVX-512 F is enabled here; load16 stays inside the data.
                        unsafe {
                            (
                                load16(op, start, op.inner_step, count.min(16)),
                                load16(op, start + 16 * op.inner_step, op.inner_step, count.saturating_sub(16)),
                            )
                        }
                    } else {
                        // Row r: pair r, two inner rows of 16 outer values.
                        let count = |i: usize| if i < inners { outers } else { 0 };
                        let start = |i: usize| o0 * op.outer_step + (i0 + i) * op.inner_step;
                        // SAFETY: as above.
                        unsafe {
                            (
                                load16(op, start(2 * r), op.outer_step, count(2 * r)),
                                load16(op, start(2 * r + 1), op.outer_step, count(2 * r + 1)),
                            )
                        }
                    };
                    let ((h0, m0), (h1, m1)) = (split(x0), split(x1));
                    if by_outer {
                        h[r] = _mm512_permutex2var_epi16(h0, odd_words, h1);
                        m[r] = _mm512_permutex2var_epi16(m0, odd_words, m1);
                    } else {
                        h[r] = _mm512_or_si512(_mm512_srli_epi32::<16>(h0), h1);
                        m[r] = _mm512_or_si512(_mm512_srli_epi32::<16>(m0), m1);
                    }
                }
                if by_outer != left {
                    transpose(&mut h);
                    transpose(&mut m);
                }
                let at = (ob * inner_blocks + ib) * TILE;
                let (th, tm) = (&mut hs[at..at + TILE], &mut ms[at..at + TILE]);
                for r in 0..16 {
                    // SAFETY: each store writes 16 dwords inside the tile's 256 (sliced above).
                    unsafe {
                        _mm512_storeu_si512(th.as_mut_ptr().add(16 * r).cast(), h[r]);
                        _mm512_storeu_si512(tm.as_mut_ptr().add(16 * r).cast(), m[r]);
                    }
                }
            }
        }
    }

    /// The tile configuration: palette 1, tiles 0–7 of 16 rows × 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    impl TileConfig {
        fn full() -> Self {
            let mut c = [0u8; 64];
            c[0] = 1;
            for t in 0..8 {
                c[16 + 2 * t] = 64;
                c[48 + t] = 16;
            }
            TileConfig(c)
        }
    }

    /// `rounds` rounds of four tile products of all-ones tiles loaded once; an entry of the
    /// first accumulator.
    #[cfg(feature = "bench")]
    pub(in crate::engine) fn tile_products(rounds: usize) -> f32 {
        let config = TileConfig::full();
        let ones = vec![0x3f80_3f80u32; TILE];
        let mut first = [0.0f32; TILE];
        // SAFETY: AMX is enabled (`enable` said yes before the caller got here); each load reads
        // one 1 KB tile of `ones`, the store writes one to `first`; the products touch
        // registers only.
        unsafe {
            asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            asm!(
                "tileloadd tmm4, [{p} + {s}*1]", "tileloadd tmm5, [{p} + {s}*1]",
                "tileloadd tmm6, [{p} + {s}*1]", "tileloadd tmm7, [{p} + {s}*1]",
                p = in(reg) ones.as_ptr(), s = in(reg) 64usize, options(nostack, readonly),
            );
            for _ in 0..rounds {
                asm!(
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    options(nostack, nomem),
                );
            }
            asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) first.as_mut_ptr(), s = in(reg) 64usize, options(nostack));
            asm!("tilerelease", options(nostack, nomem));
        }
        first[0]
    }

    /// `out[m×n] (+)= A·B`, `A` the left operand (`m = a.outer`), `B` the right (`n = b.outer`).
    pub(in crate::engine) fn product(out: &mut [f32], ldo: usize, a: &Operand, b: &Operand, accumulate: bool) {
        let mut right = pool::LineBuf::scratch(right_len(b.outer, b.inner));
        pack_right(b, words_mut(&mut right));
        product_packed(out, ldo, a, words(&right), b.outer, accumulate);
    }

    /// Words of a right operand `n` wide over `k` packed: both parts, whole 32-wide blocks.
    pub(in crate::engine) fn right_len(n: usize, k: usize) -> usize {
        2 * (2 * n.div_ceil(32)) * k.div_ceil(32) * TILE
    }

    /// Packs `b` as a right operand into `tiles` ([`right_len`] words).
    pub(in crate::engine) fn pack_right(b: &Operand, tiles: &mut [u32]) {
        // SAFETY: AMX came with AVX-512 on every CPU that has it.
        unsafe { pack(b, tiles, 2 * b.outer.div_ceil(32), b.inner.div_ceil(32), false) };
    }

    /// `out[m×n] (+)= A·B` with `B` already packed by [`pack_right`] (`n` wide, over `a.inner`).
    pub(in crate::engine) fn product_packed(out: &mut [f32], ldo: usize, a: &Operand, b_tiles: &[u32], n: usize, accumulate: bool) {
        let (m, k) = (a.outer, a.inner);
        // Outputs in blocks of 32 (two tiles); the inner dimension in blocks of 32.
        let (row_blocks, col_blocks, inner_blocks) = (m.div_ceil(32), n.div_ceil(32), k.div_ceil(32));
        let (a_len, b_len) = (2 * (2 * row_blocks) * inner_blocks * TILE, right_len(n, k));
        assert!(b_tiles.len() >= b_len, "packed right operand shorter than its shape");
        assert!(m == 0 || (ldo >= n && out.len() >= (m - 1) * ldo + n), "output shorter than its shape");
        let mut left = pool::LineBuf::scratch(a_len);
        let a_tiles = words_mut(&mut left);
        // SAFETY: AMX came with AVX-512 on every CPU that has it.
        unsafe { pack(a, a_tiles, 2 * row_blocks, inner_blocks, true) };
        let (a_part, b_part) = (a_len / 2, b_len / 2);
        let (a_ptr, b_ptr) = (a_tiles.as_ptr(), b_tiles.as_ptr());
        let mut block = [0.0f32; 32 * 32];
        let config = TileConfig::full();
        // SAFETY: the CPU has AMX (checked by `enable` before any caller gets here) and the
        // configuration is valid; every tile load below reads 16 rows of 64 bytes inside the
        // packed buffers (tile offsets stay below the part lengths); the loads from and stores
        // to `out` touch a whole 32×32 block of it (rows `r0..r0 + 32` of `ldo`, columns
        // `c0..c0 + 32`, inside the `m × n` output), the other stores write 16 rows of 64 bytes
        // inside `block` (128 bytes per row, two tiles side by side).
        unsafe {
            asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
            for rb in 0..row_blocks {
                let a0 = a_ptr.add(2 * rb * inner_blocks * TILE);
                let a1 = a0.add(inner_blocks * TILE);
                for cb in 0..col_blocks {
                    let b0 = b_ptr.add(2 * cb * inner_blocks * TILE);
                    let b1 = b0.add(inner_blocks * TILE);
                    let (r0, c0) = (rb * 32, cb * 32);
                    // A whole 32×32 block of the output is loaded into (when accumulating) and
                    // stored from the accumulators in place; a ragged edge block goes through
                    // `block`.
                    let whole = r0 + 32 <= m && c0 + 32 <= n;
                    let corner = out.as_mut_ptr().add(r0 * ldo + c0);
                    let row_bytes = 4 * ldo;
                    if whole && accumulate {
                        asm!(
                            "tileloadd tmm0, [{c0} + {s}*1]",
                            "tileloadd tmm1, [{c1} + {s}*1]",
                            "tileloadd tmm2, [{c2} + {s}*1]",
                            "tileloadd tmm3, [{c3} + {s}*1]",
                            c0 = in(reg) corner, c1 = in(reg) corner.add(16), c2 = in(reg) corner.add(16 * ldo),
                            c3 = in(reg) corner.add(16 * ldo + 16), s = in(reg) row_bytes, options(nostack, readonly),
                        );
                    } else {
                        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                    }
                    // Per inner block h·h, then h·m (the h tiles of A kept), then m·h: ten tile
                    // loads for twelve products, the h tiles of B loaded twice within a few
                    // hundred cycles (from L1).
                    for ib in 0..inner_blocks {
                        let at = ib * TILE;
                        asm!(
                            "tileloadd tmm4, [{ah0} + {s}*1]",
                            "tileloadd tmm6, [{bh0} + {s}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tileloadd tmm7, [{bh1} + {s}*1]",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tileloadd tmm5, [{ah1} + {s}*1]",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            "tileloadd tmm6, [{bm0} + {s}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tileloadd tmm7, [{bm1} + {s}*1]",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            "tileloadd tmm4, [{am0} + {s}*1]",
                            "tileloadd tmm6, [{bh0} + {s}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tileloadd tmm7, [{bh1} + {s}*1]",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tileloadd tmm5, [{am1} + {s}*1]",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            ah0 = in(reg) a0.add(at), ah1 = in(reg) a1.add(at),
                            am0 = in(reg) a0.add(a_part + at), am1 = in(reg) a1.add(a_part + at),
                            bh0 = in(reg) b0.add(at), bh1 = in(reg) b1.add(at),
                            bm0 = in(reg) b0.add(b_part + at), bm1 = in(reg) b1.add(b_part + at),
                            s = in(reg) 64usize, options(nostack, readonly),
                        );
                    }
                    if whole {
                        asm!(
                            "tilestored [{c0} + {s}*1], tmm0",
                            "tilestored [{c1} + {s}*1], tmm1",
                            "tilestored [{c2} + {s}*1], tmm2",
                            "tilestored [{c3} + {s}*1], tmm3",
                            c0 = in(reg) corner, c1 = in(reg) corner.add(16), c2 = in(reg) corner.add(16 * ldo),
                            c3 = in(reg) corner.add(16 * ldo + 16), s = in(reg) row_bytes, options(nostack),
                        );
                        continue;
                    }
                    let c = block.as_mut_ptr();
                    asm!(
                        "tilestored [{c0} + {s}*1], tmm0",
                        "tilestored [{c1} + {s}*1], tmm1",
                        "tilestored [{c2} + {s}*1], tmm2",
                        "tilestored [{c3} + {s}*1], tmm3",
                        c0 = in(reg) c, c1 = in(reg) c.add(16), c2 = in(reg) c.add(16 * 32), c3 = in(reg) c.add(16 * 32 + 16),
                        s = in(reg) 128usize, options(nostack),
                    );
                    let cols = (n - c0).min(32);
                    for r in 0..(m - r0).min(32) {
                        let dst = &mut out[(r0 + r) * ldo + c0..(r0 + r) * ldo + c0 + cols];
                        let src = &block[r * 32..r * 32 + cols];
                        if accumulate {
                            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                        } else {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod tiles {
    use super::Operand;

    /// No AMX off Linux on x86-64.
    pub(in crate::engine) fn enable() -> bool {
        false
    }

    /// Never called: [`enable`] said no.
    #[cfg(feature = "bench")]
    pub(in crate::engine) fn tile_products(_: usize) -> f32 {
        unreachable!("tile products run only where AMX is enabled")
    }

    /// Never called: [`enable`] said no.
    pub(in crate::engine) fn product(_: &mut [f32], _: usize, _: &Operand, _: &Operand, _: bool) {
        unreachable!("split products run only where AMX is enabled")
    }

    /// Never called: [`enable`] said no.
    pub(in crate::engine) fn right_len(_: usize, _: usize) -> usize {
        unreachable!("split products run only where AMX is enabled")
    }

    /// Never called: [`enable`] said no.
    pub(in crate::engine) fn pack_right(_: &Operand, _: &mut [u32]) {
        unreachable!("split products run only where AMX is enabled")
    }

    /// Never called: [`enable`] said no.
    pub(in crate::engine) fn product_packed(_: &mut [f32], _: usize, _: &Operand, _: &[u32], _: usize, _: bool) {
        unreachable!("split products run only where AMX is enabled")
    }
}

#[cfg(feature = "bench")]
pub(super) use tiles::tile_products;
pub(super) use tiles::{enable, pack_right, product, product_packed, right_len};

/// `f32` scratch as the `u32` words of packed tiles.
pub(super) fn words(buf: &[f32]) -> &[u32] {
    // SAFETY: u32 and f32 have one size and alignment; every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u32>(), buf.len()) }
}

/// `f32` scratch as the `u32` words of packed tiles, to write.
pub(super) fn words_mut(buf: &mut [f32]) -> &mut [u32] {
    // SAFETY: as in `words`; the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u32>(), buf.len()) }
}
