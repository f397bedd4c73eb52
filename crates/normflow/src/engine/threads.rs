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
