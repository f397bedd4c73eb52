//! Which vector instructions the element-wise kernels run with, chosen at run time, so that one
//! binary runs on every x86-64 CPU and uses the widest vectors each has: the kernels (the
//! transformer lanes, the normal draws, Adam) are compiled once per instruction set by
//! `dispatch`, and each call runs the copy for [`active`]. The products choose their own
//! kernels the same way inside `gemm`.
//!
//! `NORMFLOW_ISA=portable|avx2|avx512` in the environment caps the choice for the whole
//! process (to compare the paths, or to work around a CPU fault); [`with_isa`] caps it for one
//! call (the tests force each path the CPU has with it).

use std::cell::Cell;
use std::sync::OnceLock;

/// An instruction set the kernels are compiled for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Whatever the compiler makes of portable code for the build's target (SSE2 on a
    /// baseline x86-64 build), without fused multiply-add unless the build enables it.
    Portable,
    /// 256-bit vectors (8 `f32` lanes) with fused multiply-add: AVX2 + FMA.
    Avx2Fma,
    /// 512-bit vectors (16 `f32` lanes) and 32 vector registers: AVX-512 F, VL, BW and DQ.
    Avx512,
}

impl Isa {
    /// Every instruction set, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2Fma, Isa::Avx512];

    /// The widest instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            if avx2 && has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq") {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    /// `f32` lanes per vector register (1 for portable code, whose width the compiler picks).
    pub fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2Fma => 8,
            Isa::Portable => 1,
        }
    }

    /// The name `NORMFLOW_ISA` takes and the benchmarks print.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The instruction sets this CPU can run: the portable code and everything up to
    /// [`Isa::detect`].
    pub fn supported() -> Vec<Isa> {
        let widest = Isa::detect();
        Isa::ALL.into_iter().filter(|&isa| isa <= widest).collect()
    }
}

/// The process's choice: the CPU's widest, capped by `NORMFLOW_ISA` when that names one.
fn chosen() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let widest = Isa::detect();
        let cap = std::env::var("NORMFLOW_ISA").ok().and_then(|v| Isa::ALL.into_iter().find(|isa| isa.name() == v.trim()));
        cap.map_or(widest, |cap| cap.min(widest))
    })
}

thread_local! {
    /// This thread's cap, set by [`with_isa`].
    static THREAD_CAP: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// The instruction set kernels called on this thread run with: never wider than the CPU's.
pub fn active() -> Isa {
    let isa = chosen();
    THREAD_CAP.with(|cap| cap.get().map_or(isa, |cap| cap.min(isa)))
}

/// Runs `f` with the kernels it calls capped at `cap`, on this thread and in the work it hands
/// to the worker pool. For tests and comparisons of the paths.
pub fn with_isa<R>(cap: Isa, f: impl FnOnce() -> R) -> R {
    super::threads::with_thread_override(&THREAD_CAP, cap, f)
}

/// A kernel compiled once per instruction set. `FMA` says whether fused multiply-add is
/// there to use (see [`super::fastmath::mul_add`]). Implementations mark `run` and everything
/// it calls on the hot path `#[inline(always)]`: code that is not inlined into [`dispatch`]'s
/// per-set entry points is compiled for the baseline only.
pub(crate) trait Kernel {
    /// What the kernel returns.
    type Output;
    /// Runs the kernel.
    fn run<const FMA: bool>(self) -> Self::Output;
}

/// Runs `kernel` compiled for the [`active`] instruction set.
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    match active() {
        // SAFETY: `active` never names an instruction set the CPU lacks (`Isa::detect`).
        Isa::Avx512 => return unsafe { run_avx512(kernel) },
        // SAFETY: as above.
        Isa::Avx2Fma => return unsafe { run_avx2(kernel) },
        Isa::Portable => {}
    }
    kernel.run::<{ cfg!(target_feature = "fma") }>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
fn run_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports which instruction set ran it, by the `FMA` it was compiled with.
    struct Probe;

    impl Kernel for Probe {
        type Output = (Isa, bool);
        #[inline(always)]
        fn run<const FMA: bool>(self) -> (Isa, bool) {
            (active(), FMA)
        }
    }

    #[test]
    fn a_thread_cap_picks_the_path_and_is_undone_after() {
        let widest = active();
        for isa in Isa::supported() {
            let (ran, fma) = with_isa(isa, || dispatch(Probe));
            assert_eq!(ran, isa);
            assert_eq!(fma, isa != Isa::Portable || cfg!(target_feature = "fma"), "{isa:?}");
        }
        assert_eq!(active(), widest);
        // A cap wider than the CPU runs the CPU's widest.
        assert_eq!(with_isa(Isa::Avx512, active), widest.min(Isa::detect()));
        assert!(Isa::supported().contains(&Isa::Portable));
    }
}
