//! Allocator tuning for the training loop.
//!
//! A training step allocates its activation and gradient matrices afresh. With glibc's default
//! settings every buffer above 128 KiB comes from a fresh `mmap` and goes back with `munmap`, so
//! each step pays page faults and kernel zeroing for megabytes of memory (measured: the M-size
//! MAF step of WORKLOAD.md 20–21 ms by default, 12–16 ms with mmap and trimming off). Keeping
//! freed memory in the heap makes the steady state reuse the same pages.

/// Keeps freed buffers in glibc's heap instead of returning them to the kernel (raises the
/// `mmap` and trim thresholds to 1 GiB). Call once at program start; the `normflow` binary does.
/// A no-op on other C libraries and platforms.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc <malloc.h>: M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const ONE_GIB: i32 = 1 << 30;
        // SAFETY: mallopt only changes allocator tunables; it is safe to call at any time.
        unsafe {
            mallopt(-1, ONE_GIB);
            mallopt(-3, ONE_GIB);
        }
    }
}
