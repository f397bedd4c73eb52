//! Splitting work across threads: a persistent pool of worker threads (one per extra core),
//! started on first use, so that a training step hands its rows to threads without spawning
//! any (and without allocating).

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How many worker threads to use for `rows` rows of work: one per core, but never fewer than
/// `min_rows` rows a thread (below that, handing work to threads costs more than it saves).
///
/// Inside a part of a parallel run (the training step already spreads its rows over the
/// cores) the answer is 1: splitting again would only put more threads on the same cores.
pub(crate) fn worker_count(rows: usize, min_rows: usize) -> usize {
    if IN_PART.with(Cell::get) {
        return 1;
    }
    cores().min(rows / min_rows.max(1)).max(1)
}

thread_local! {
    /// Whether this thread is running a part of a parallel run.
    static IN_PART: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as running a part until dropped.
struct PartMark {
    before: bool,
}

impl PartMark {
    fn new() -> Self {
        Self { before: IN_PART.with(|c| c.replace(true)) }
    }
}

impl Drop for PartMark {
    fn drop(&mut self) {
        IN_PART.with(|c| c.set(self.before));
    }
}

/// Number of cores available to this process.
pub(crate) fn cores() -> usize {
    // Asked once: the answer reads cgroup files, which costs system calls and allocations.
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Splits `0..rows` into `parts` contiguous, nearly equal ranges.
pub(crate) fn split_rows(rows: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    (0..parts).map(|p| part_range(rows, parts, p)).filter(|r| !r.is_empty()).collect()
}

/// Part `p` of `0..len` split into `parts` contiguous, nearly equal ranges.
pub(crate) fn part_range(len: usize, parts: usize, p: usize) -> std::ops::Range<usize> {
    (len * p / parts)..(len * (p + 1) / parts)
}

/// Splits `0..rows` into one contiguous range per worker (each of at least `min_rows` rows,
/// one range when there are fewer) and runs `f` on the ranges in parallel; the results come
/// back in row order.
pub(crate) fn map_row_ranges<T: Send>(rows: usize, min_rows: usize, f: impl Fn(std::ops::Range<usize>) -> T + Sync) -> Vec<T> {
    let f = &f;
    run_parallel(split_rows(rows, worker_count(rows, min_rows)).into_iter().map(|range| move || f(range)).collect())
}

/// [`map_row_ranges`] for work that writes `cols` values per row into `out` (when given):
/// each range's `f` receives that range's rows of `out`, so the parts fill one output buffer
/// in place instead of returning pieces to be concatenated.
pub(crate) fn map_row_ranges_into<T: Send>(
    rows: usize,
    min_rows: usize,
    cols: usize,
    out: Option<&mut [f32]>,
    f: impl Fn(std::ops::Range<usize>, Option<&mut [f32]>) -> T + Sync,
) -> Vec<T> {
    let ranges = split_rows(rows, worker_count(rows, min_rows));
    let mut rest = out;
    let mut slots = Vec::with_capacity(ranges.len());
    for range in &ranges {
        slots.push(rest.take().map(|o| {
            let (mine, others) = o.split_at_mut(range.len() * cols);
            rest = Some(others);
            mine
        }));
    }
    let f = &f;
    run_parallel(ranges.into_iter().zip(slots).map(|(range, slot)| move || f(range, slot)).collect())
}

/// Runs `jobs` in parallel (see [`for_each_part`]) and returns their results in order.
pub(crate) fn run_parallel<T: Send, F: FnOnce() -> T + Send>(jobs: Vec<F>) -> Vec<T> {
    let slots: Vec<Mutex<(Option<F>, Option<T>)>> = jobs.into_iter().map(|f| Mutex::new((Some(f), None))).collect();
    for_each_part(slots.len(), &|p| {
        let job = lock(&slots[p]).0.take().expect("each part runs once");
        let out = job();
        lock(&slots[p]).1 = Some(out);
    });
    slots.into_iter().map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()).1.expect("every part ran")).collect()
}

/// Runs `f` with the thread-local override `key` set to `value`, restoring the previous one
/// afterwards (also when `f` panics). The settings the pool hands on to its workers (the
/// instruction-set cap, the product precision) are such overrides.
pub(crate) fn with_thread_override<T: Copy + 'static, R>(
    key: &'static std::thread::LocalKey<std::cell::Cell<Option<T>>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static>(&'static std::thread::LocalKey<std::cell::Cell<Option<T>>>, Option<T>);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(key, key.with(|c| c.replace(Some(value))));
    f()
}

/// Runs `f(0)`, …, `f(parts − 1)` in parallel: part 0 on the calling thread, the others on the
/// pool's workers, and returns when all have finished. A panic in any part is re-raised here.
///
/// Allocation-free once the pool has started. When the pool is busy (another thread is using
/// it, or `f` itself calls this) or too small, the extra parts run on scoped threads instead.
pub(crate) fn for_each_part(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        if parts == 1 {
            f(0);
        }
        return;
    }
    // Every part runs with the caller's instruction set and product precision (a thread's
    // `isa::with_isa` or `with_product_precision` reaches the work it hands out).
    let (isa, precision) = (super::isa::active(), super::split_product::product_precision());
    let marked = |p: usize| {
        let _mark = PartMark::new();
        super::isa::with_isa(isa, || super::split_product::with_product_precision(precision, || f(p)));
    };
    let f: &(dyn Fn(usize) + Sync) = &marked;
    let pool = pool();
    let guard = match pool.busy.try_lock() {
        Ok(g) => Some(g),
        // A part panicked while holding the pool; the pool itself is still sound.
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    match guard {
        Some(_guard) if pool.workers.len() >= parts - 1 => pool.run(parts, f),
        _ => std::thread::scope(|s| {
            for p in 1..parts {
                s.spawn(move || f(p));
            }
            f(0);
        }),
    }
}

/// Runs `f(p, &mut items[p])` for every item in parallel (see [`for_each_part`]).
pub(crate) fn for_each_mut<T: Send>(items: &mut [T], f: &(dyn Fn(usize, &mut T) + Sync)) {
    let base = SendPtr(items.as_mut_ptr());
    for_each_part(items.len(), &|p| {
        // SAFETY: each part touches only its own element, and `items` stays mutably borrowed
        // until every part has finished.
        let item = unsafe { &mut *base.get().add(p) };
        f(p, item);
    });
}

/// Splits `data` into `parts` nearly equal chunks (see [`part_range`]) and runs
/// `f(p, chunk_p)` for each in parallel.
pub(crate) fn for_each_chunk_mut(data: &mut [f32], parts: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    for_each_chunks_mut([data], parts, &|p, [chunk]| f(p, chunk));
}

/// Sums the values `values(s)` of the `sources` (each as long as `out`) into `out`, split into
/// `parts` chunks summed in parallel, then runs `finish(p, chunk_p)` on each summed chunk on the
/// thread that summed it (a check or a norm without another pass): the reduction of per-thread
/// gradient buffers. Allocation-free.
pub(crate) fn sum_parts_into<S: Sync>(
    out: &mut [f32],
    sources: &[S],
    values: &(dyn Fn(&S) -> &[f32] + Sync),
    parts: usize,
    finish: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let len = out.len();
    assert!(sources.iter().all(|s| values(s).len() == len), "sources as long as the output");
    for_each_chunk_mut(out, parts, &|p, g| {
        let range = part_range(len, parts, p);
        match sources {
            [] => g.fill(0.0),
            [first] => g.copy_from_slice(&values(first)[range]),
            [first, second, rest @ ..] => {
                // The first two in one pass instead of a copy and an add.
                let (first, second) = (&values(first)[range.clone()], &values(second)[range.clone()]);
                g.iter_mut().zip(first).zip(second).for_each(|((a, b), c)| *a = b + c);
                for other in rest {
                    g.iter_mut().zip(&values(other)[range.clone()]).for_each(|(a, b)| *a += b);
                }
            }
        }
        finish(p, g);
    });
}

/// [`for_each_chunk_mut`] over `N` slices of one length at once: part `p` gets chunk `p` of
/// each.
pub(crate) fn for_each_chunks_mut<const N: usize>(data: [&mut [f32]; N], parts: usize, f: &(dyn Fn(usize, [&mut [f32]; N]) + Sync)) {
    let len = data.first().map_or(0, |d| d.len());
    assert!(data.iter().all(|d| d.len() == len), "slices of one length");
    let bases = data.map(|d| SendPtr(d.as_mut_ptr()));
    for_each_part(parts, &|p| {
        let r = part_range(len, parts, p);
        // SAFETY: the chunks are disjoint, and every slice stays mutably borrowed until every
        // part has finished.
        let chunks = bases.map(|b| unsafe { std::slice::from_raw_parts_mut(b.get().add(r.start), r.len()) });
        f(p, chunks);
    });
}

/// A raw pointer that parts may share; each dereferences only its own disjoint region.
struct SendPtr<T>(*mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}

// SAFETY: see the uses: each part writes a region no other part touches.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// A job handed to a worker: the shared function (its lifetime erased; see [`Pool::run`]) and
/// the part to run.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync + 'static),
    part: usize,
}

// SAFETY: `f` points at a `Sync` function that the submitting thread keeps alive until the
// worker reports back (see `Pool::run`).
unsafe impl Send for Job {}

#[derive(Clone, Copy)]
enum State {
    /// No job yet.
    Idle,
    Assigned(Job),
    Finished {
        panicked: bool,
    },
}

/// [`State`]s by number, for [`Worker::phase`].
const IDLE: u8 = 0;
const ASSIGNED: u8 = 1;
const FINISHED: u8 = 2;

impl State {
    /// The state's number in [`Worker::phase`].
    fn phase(&self) -> u8 {
        match self {
            State::Idle => IDLE,
            State::Assigned(_) => ASSIGNED,
            State::Finished { .. } => FINISHED,
        }
    }
}

/// A worker's state and how many threads sleep waiting for it to change.
struct Slot {
    state: State,
    sleepers: usize,
}

/// One worker thread's mailbox. Each side first spins on `phase` for a while (a fork or join a
/// few microseconds after the last one then costs no system call, and no wake-up of a halted
/// core, which on a virtual machine takes 10–30 µs), then sleeps on `changed`.
struct Worker {
    slot: Mutex<Slot>,
    changed: Condvar,
    /// [`State::phase`] of `slot.state`, readable without the lock.
    phase: AtomicU8,
}

/// How long a thread spins waiting for a worker's state to change before it sleeps. At 50 µs
/// some processes settled into sleeping at every fork (the serial part of a small training
/// step outlasts the spin) and ran 2–2.5× slower than others: coupling S training steps of
/// 0.34 or 0.69 ms, flow-matching S steps of 0.09 or 0.23 ms, by the luck of the start.
/// 300 µs kept every run fast (`bench/results/2026-12-03-worker-spin-ab-xeon.txt`).
const SPIN: Duration = Duration::from_micros(300);

impl Worker {
    /// Sets the state and wakes whoever sleeps waiting for it.
    fn set(&self, state: State) {
        let mut slot = lock(&self.slot);
        self.phase.store(state.phase(), Ordering::Release);
        slot.state = state;
        if slot.sleepers > 0 {
            self.changed.notify_all();
        }
    }

    /// Waits until the state is in `phase`: spins for [`SPIN`], then sleeps. Returns the
    /// locked slot.
    fn wait_for(&self, phase: u8) -> std::sync::MutexGuard<'_, Slot> {
        let start = Instant::now();
        while self.phase.load(Ordering::Acquire) != phase && start.elapsed() <= SPIN {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        let mut slot = lock(&self.slot);
        while slot.state.phase() != phase {
            slot.sleepers += 1;
            slot = self.changed.wait(slot).unwrap_or_else(|e| e.into_inner());
            slot.sleepers -= 1;
        }
        slot
    }
}

struct Pool {
    busy: Mutex<()>,
    workers: Vec<&'static Worker>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let workers = (1..cores())
            .filter_map(|i| {
                let slot = Mutex::new(Slot { state: State::Idle, sleepers: 0 });
                let w: &'static Worker = Box::leak(Box::new(Worker { slot, changed: Condvar::new(), phase: AtomicU8::new(IDLE) }));
                std::thread::Builder::new().name(format!("normflow-{i}")).spawn(move || work(w)).ok().map(|_| w)
            })
            .collect();
        Pool { busy: Mutex::new(()), workers }
    })
}

/// A worker's loop: wait for a job, run it, report.
fn work(w: &'static Worker) {
    loop {
        let job = match w.wait_for(ASSIGNED).state {
            State::Assigned(job) => job,
            _ => unreachable!("waited for an assigned job"),
        };
        // SAFETY: the submitter blocks in `Pool::run` until this job reports `Finished`.
        let f = unsafe { &*job.f };
        let panicked = catch_unwind(AssertUnwindSafe(|| f(job.part))).is_err();
        w.set(State::Finished { panicked });
    }
}

impl Pool {
    /// Runs parts 1.. on workers and part 0 here; waits for every worker before returning,
    /// even when part 0 panics, so that no worker outlives the borrow of `f`.
    fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        // SAFETY: only the lifetime is erased; every use of the pointer ends before this
        // function returns (it waits for each worker to report `Finished`).
        let f: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(f as *const (dyn Fn(usize) + Sync + '_)) };
        for (i, w) in self.workers[..parts - 1].iter().enumerate() {
            w.set(State::Assigned(Job { f, part: i + 1 }));
        }
        let here = catch_unwind(AssertUnwindSafe(|| unsafe { &*f }(0)));
        let mut worker_panicked = false;
        for w in &self.workers[..parts - 1] {
            // The worker stays `Finished` until its next assignment.
            if let State::Finished { panicked } = w.wait_for(FINISHED).state {
                worker_panicked |= panicked;
            }
        }
        if let Err(p) = here {
            resume_unwind(p);
        }
        assert!(!worker_panicked, "a normflow worker thread panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn sum_parts_into_adds_every_source_and_finishes_every_chunk() {
        let len = 1000;
        let sources: Vec<Vec<f32>> = (0..3).map(|s| (0..len).map(|i| (i * (s + 1)) as f32).collect()).collect();
        for count in 0..=3 {
            for parts in [1, 2, 3] {
                let mut out = vec![f32::NAN; len];
                let seen = Mutex::new(Vec::new());
                sum_parts_into(&mut out, &sources[..count], &|v| v.as_slice(), parts, &|p, g| lock(&seen).push((p, g.len())));
                for (i, v) in out.iter().enumerate() {
                    let want: f32 = (0..count).map(|s| (i * (s + 1)) as f32).sum();
                    assert_eq!(*v, want, "{count} sources, {parts} parts, value {i}");
                }
                let mut seen = seen.into_inner().unwrap();
                seen.sort();
                assert_eq!(seen, (0..parts).map(|p| (p, part_range(len, parts, p).len())).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn a_part_of_a_parallel_run_does_not_split_again() {
        let inner: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
        for_each_part(2, &|p| inner[p].store(worker_count(1000, 1), Ordering::SeqCst));
        assert!(inner.iter().all(|c| c.load(Ordering::SeqCst) == 1), "nested counts: {inner:?}");
        assert_eq!(worker_count(1000, 1), cores(), "outside a part, every core");
    }

    #[test]
    fn every_part_runs_once_and_results_keep_their_order() {
        for parts in 1..=5 {
            let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            for_each_part(parts, &|p| {
                hits[p].fetch_add(1, Ordering::SeqCst);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
            let out = run_parallel((0..parts).map(|p| move || p * 10).collect());
            assert_eq!(out, (0..parts).map(|p| p * 10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn each_part_gets_its_own_item_and_chunk() {
        let mut items = vec![0usize; 3];
        for_each_mut(&mut items, &|p, v| *v = p + 1);
        assert_eq!(items, vec![1, 2, 3]);
        let mut data = vec![0.0f32; 10];
        for_each_chunk_mut(&mut data, 3, &|p, c| c.fill(p as f32));
        assert_eq!(data, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
    }

    #[test]
    fn nested_calls_do_not_deadlock() {
        let total = AtomicUsize::new(0);
        for_each_part(2, &|_| {
            for_each_part(2, &|_| {
                total.fetch_add(1, Ordering::SeqCst);
            });
        });
        assert_eq!(total.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn concurrent_callers_all_complete() {
        // Several threads at once: one gets the pool, the others fall back to scoped threads.
        std::thread::scope(|s| {
            for t in 0..4usize {
                s.spawn(move || {
                    for round in 0..50 {
                        let parts = 2 + round % 2;
                        let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                        for_each_part(parts, &|p| {
                            hits[p].fetch_add(t + round, Ordering::SeqCst);
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == t + round));
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_part_is_reported_to_the_caller() {
        let r = catch_unwind(|| for_each_part(2, &|p| assert!(p != 1, "part 1 fails")));
        assert!(r.is_err());
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        for_each_part(2, &|_| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
