//! Opt-in accounting of the time spent inside matrix products, for the benchmarks: how much of a
//! training step or a log-prob pass the products alone take, and so how much any other work
//! could still give back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether products record their time now; off except inside [`time_in_products`].
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Nanoseconds spent inside products, summed over threads, since the clock was started.
static NANOS: AtomicU64 = AtomicU64::new(0);
/// Keeps two measurements from sharing the counter.
static MEASURING: Mutex<()> = Mutex::new(());

/// The start of one product, when the clock runs.
pub(crate) fn start() -> Option<Instant> {
    ENABLED.load(Relaxed).then(Instant::now)
}

/// Adds one product's time from its [`start`].
pub(crate) fn stop(started: Option<Instant>) {
    if let Some(t) = started {
        NANOS.fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
    }
}

/// Runs `f` and returns its result with the time that all threads of the process together spent
/// inside matrix products meanwhile. Divided by the number of threads that ran them, this is the
/// wall time the products alone would take. Meant for benchmarks: products of unrelated threads
/// running at the same time are counted too.
pub fn time_in_products<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let _only_one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    NANOS.store(0, Relaxed);
    ENABLED.store(true, Relaxed);
    let out = f();
    ENABLED.store(false, Relaxed);
    (out, Duration::from_nanos(NANOS.load(Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::matmul_ab;

    #[test]
    fn counts_the_time_of_products_run_inside() {
        // Other tests of this process may run products meanwhile and add to the count, so only
        // a lower bound is checked: the 50 products here were counted.
        let (m, n, k) = (64, 64, 64);
        let (a, b) = (vec![0.5f32; m * k], vec![0.25f32; k * n]);
        let mut out = vec![0.0f32; m * n];
        let (_, busy) = time_in_products(|| {
            for _ in 0..50 {
                matmul_ab(&mut out, &a, &b, m, n, k, false);
            }
        });
        assert!(busy > Duration::ZERO);
        assert_eq!(out[0], 0.5 * 0.25 * k as f32);
        assert!(!ENABLED.load(Relaxed), "the clock stops with the measurement");
    }
}
