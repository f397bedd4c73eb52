//! Splitting a batch's rows across threads.

/// How many worker threads to use for `rows` rows of work: one per core, but never fewer than
/// `min_rows` rows a thread (below that, starting threads costs more than it saves).
pub(crate) fn worker_count(rows: usize, min_rows: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(rows / min_rows.max(1)).max(1)
}

/// Splits `0..rows` into `parts` contiguous, nearly equal ranges.
pub(crate) fn split_rows(rows: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    (0..parts).map(|p| (rows * p / parts)..(rows * (p + 1) / parts)).filter(|r| !r.is_empty()).collect()
}

/// Runs `jobs` in parallel, the first on the calling thread and the others on scoped threads,
/// and returns their results in order.
pub(crate) fn run_parallel<T: Send, F: FnOnce() -> T + Send>(jobs: Vec<F>) -> Vec<T> {
    let mut jobs = jobs.into_iter();
    let Some(first) = jobs.next() else { return Vec::new() };
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.map(|f| s.spawn(f)).collect();
        let mut out = vec![first()];
        out.extend(handles.into_iter().map(|h| h.join().expect("worker thread panicked")));
        out
    })
}
