//! Micro-batching: one compute thread per loaded model takes the requests queued for it,
//! coalesces those of one kind into a block of rows (up to a row cap, optionally waiting a short
//! window for more), computes the block with the engine (which spreads large blocks over its
//! worker pool) and hands each request its own rows back. The async runtime only queues jobs and
//! awaits replies; it never computes.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use normflow::{Flow, Matrix, Rng};
use tokio::sync::oneshot;

use super::metrics::Metrics;

/// What a job asks of the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `log p(x)` per row.
    LogProb,
    /// Latent codes `z = f⁻¹(x)`.
    Encode,
    /// Rows `x = f(z)`.
    Decode,
}

/// The result of a job.
pub enum Output {
    /// One value per row (log-densities).
    Values(Vec<f32>),
    /// Rows (latents, decoded rows or samples).
    Rows(Matrix),
}

/// The answer a job's requester awaits.
pub type Reply = oneshot::Sender<Result<Output, normflow::Error>>;

/// A unit of work for a model's compute thread.
pub enum Job {
    /// Rows to map; coalesced with other jobs of the same op.
    Map { op: Op, x: Matrix, context: Option<Matrix>, reply: Reply },
    /// Samples, computed alone (each request has its own seed).
    Sample { n: usize, context: Option<Matrix>, seed: u64, reply: Reply },
}

impl Job {
    fn rows(&self) -> usize {
        match self {
            Job::Map { x, .. } => x.rows(),
            Job::Sample { n, .. } => *n,
        }
    }

    /// Whether the requester has gone (disconnected or timed out): its work can be skipped.
    fn abandoned(&self) -> bool {
        match self {
            Job::Map { reply, .. } | Job::Sample { reply, .. } => reply.is_closed(),
        }
    }
}

/// Most bytes of recycled buffers the compute thread keeps between blocks.
const CACHE_BYTES: usize = 1 << 20;

/// How blocks are formed.
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Most rows in one block (a single larger request still runs, as one block).
    pub max_rows: usize,
    /// How long to wait for more jobs once one has arrived.
    pub window: Duration,
}

/// Starts the compute thread of `flow` (named after the model) and returns its queue. The
/// thread ends when every sender is gone, after finishing what was queued.
pub fn start(name: &str, flow: Arc<Flow>, config: BatchConfig, metrics: Arc<Metrics>) -> std::io::Result<Sender<Job>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let model = name.to_string();
    std::thread::Builder::new().name(format!("compute-{name}")).spawn(move || run(&model, &flow, &rx, config, &metrics))?;
    Ok(tx)
}

fn run(model: &str, flow: &Flow, rx: &Receiver<Job>, config: BatchConfig, metrics: &Metrics) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut block = vec![first];
        let mut rows = block[0].rows();
        let deadline = Instant::now() + config.window;
        while rows < config.max_rows {
            let next = if config.window.is_zero() {
                match rx.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            };
            if rows + next.rows() > config.max_rows {
                pending = Some(next);
                break;
            }
            rows += next.rows();
            block.push(next);
        }
        block.retain(|job| !job.abandoned());
        if !block.is_empty() {
            metrics.record_block(model, block.len(), block.iter().map(Job::rows).sum());
        }
        compute_block(flow, block);
        // Blocks come in every size, and the engine caches buffers by exact size: without a
        // bound the cache would fill with sizes seen once (a slow climb of resident memory).
        normflow::engine::trim_thread_cache(CACHE_BYTES);
        metrics.set_cache_bytes(model, normflow::engine::thread_cache_bytes());
    }
}

/// Runs a block: samples one by one, each map op as one coalesced call.
fn compute_block(flow: &Flow, block: Vec<Job>) {
    let mut by_op: [Vec<(Matrix, Option<Matrix>, Reply)>; 3] = Default::default();
    for job in block {
        match job {
            Job::Sample { n, context, seed, reply } => {
                let out = flow.sample(n, context.as_ref(), &mut Rng::new(seed)).map(Output::Rows);
                let _ = reply.send(out);
            }
            Job::Map { op, x, context, reply } => by_op[op as usize].push((x, context, reply)),
        }
    }
    for (jobs, op) in by_op.into_iter().zip([Op::LogProb, Op::Encode, Op::Decode]) {
        if !jobs.is_empty() {
            compute_coalesced(flow, op, jobs);
        }
    }
}

fn apply(flow: &Flow, op: Op, x: &Matrix, context: Option<&Matrix>) -> Result<Output, normflow::Error> {
    match op {
        Op::LogProb => flow.log_prob(x, context).map(Output::Values),
        Op::Encode => flow.encode(x, context).map(Output::Rows),
        Op::Decode => flow.decode(x, context).map(Output::Rows),
    }
}

/// One call for all jobs; if it fails, each job alone, so that only the request at fault gets
/// the error, with its own row numbers.
fn compute_coalesced(flow: &Flow, op: Op, jobs: Vec<(Matrix, Option<Matrix>, Reply)>) {
    if jobs.len() == 1 {
        let (x, context, reply) = jobs.into_iter().next().expect("one job");
        let _ = reply.send(apply(flow, op, &x, context.as_ref()));
        return;
    }
    let x = concat(jobs.iter().map(|j| &j.0));
    let context = jobs[0].1.is_some().then(|| concat(jobs.iter().filter_map(|j| j.1.as_ref())));
    match apply(flow, op, &x, context.as_ref()) {
        Ok(out) => {
            let mut start = 0;
            for (x, _, reply) in jobs {
                let end = start + x.rows();
                let part = match &out {
                    Output::Values(v) => Output::Values(v[start..end].to_vec()),
                    Output::Rows(m) => Output::Rows(m.slice_rows(start, end)),
                };
                start = end;
                let _ = reply.send(Ok(part));
            }
        }
        Err(_) => {
            for (x, context, reply) in jobs {
                let _ = reply.send(apply(flow, op, &x, context.as_ref()));
            }
        }
    }
}

/// The rows of several matrices of one width, stacked.
fn concat<'a>(parts: impl Iterator<Item = &'a Matrix>) -> Matrix {
    let parts: Vec<&Matrix> = parts.collect();
    let cols = parts.first().map_or(0, |m| m.cols());
    let rows = parts.iter().map(|m| m.rows()).sum();
    let mut data = Vec::with_capacity(rows * cols);
    for m in parts {
        data.extend_from_slice(m.as_slice());
    }
    Matrix::from_vec(rows, cols, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use normflow::flows::RealNvpConfig;

    fn flow() -> Arc<Flow> {
        Arc::new(RealNvpConfig::new(2).with_layers(2).with_hidden(vec![8]).init(&mut Rng::new(1)).unwrap())
    }

    #[test]
    fn coalesced_jobs_get_their_own_rows_and_a_bad_job_fails_alone() {
        let flow = flow();
        let a = Matrix::from_vec(2, 2, vec![0.1, 0.2, -0.3, 0.4]);
        let bad = Matrix::from_vec(1, 2, vec![f32::NAN, 0.0]);
        let b = Matrix::from_vec(1, 2, vec![1.0, -1.0]);
        let mut receivers = Vec::new();
        let mut jobs = Vec::new();
        for x in [&a, &bad, &b] {
            let (tx, rx) = oneshot::channel();
            jobs.push((x.clone(), None, tx));
            receivers.push(rx);
        }
        compute_coalesced(&flow, Op::LogProb, jobs);
        let got: Vec<_> = receivers.into_iter().map(|mut r| r.try_recv().unwrap()).collect();
        let values = |o: &Result<Output, normflow::Error>| match o {
            Ok(Output::Values(v)) => v.clone(),
            _ => panic!("expected values"),
        };
        assert_eq!(values(&got[0]), flow.log_prob(&a, None).unwrap());
        assert_eq!(values(&got[2]), flow.log_prob(&b, None).unwrap());
        let err = got[1].as_ref().err().expect("the NaN row fails").to_string();
        assert!(err.contains("row 1"), "{err}");
    }

    #[test]
    fn the_thread_answers_every_queued_job_and_ends_with_its_senders() {
        let metrics = Arc::new(Metrics::default());
        let tx = start("t", flow(), BatchConfig { max_rows: 3, window: Duration::from_millis(1) }, metrics.clone()).unwrap();
        let mut receivers = Vec::new();
        for i in 0..10 {
            let (reply, rx) = oneshot::channel();
            let x = Matrix::from_vec(1, 2, vec![i as f32 * 0.1, 0.0]);
            tx.send(Job::Map { op: Op::Encode, x, context: None, reply }).unwrap();
            receivers.push(rx);
        }
        drop(tx);
        for rx in receivers {
            match rx.blocking_recv().unwrap().unwrap() {
                Output::Rows(m) => assert_eq!((m.rows(), m.cols()), (1, 2)),
                Output::Values(_) => panic!("encode returns rows"),
            }
        }
        let text = metrics.render();
        assert!(text.contains("normflow_batched_rows_total{model=\"t\"} 10"), "{text}");
    }
}
