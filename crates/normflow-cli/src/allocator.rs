//! Allocator tuning for large one-off buffers: a choice for the whole process, so the binary
//! makes it, not the library.
//!
//! With glibc's default settings every buffer above 128 KiB comes from a fresh `mmap` and goes
//! back with `munmap`, paying page faults and kernel zeroing each time. Training steps no longer
//! allocate (matrix buffers are recycled, see `pool`), but batch inference over many rows still
//! builds its large outputs afresh on every call; keeping freed memory in the heap lets repeated
//! calls reuse the same pages. (Before the buffer store, this setting took the M-size MAF
//! training step of WORKLOAD.md from 20–21 ms to 12–16 ms.)

/// Keeps freed buffers in glibc's heap instead of returning them to the kernel (raises the
/// `mmap` and trim thresholds to 1 GiB). Called once at program start. A no-op on other C
/// libraries and platforms.
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
