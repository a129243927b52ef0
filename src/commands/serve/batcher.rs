//! Dynamic batching. Requests arrive tokenized (on tokio's blocking threads) and queue their rows;
//! one model thread takes every queued request up to the token budget, runs their rows together
//! through the one inference path (longest first, unpadded, within `--max-batch-tokens` per
//! forward pass), and answers each request with its own rows' results. While it runs, new requests
//! are tokenized and queue up for the next batch.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::Result;
use crate::inference::Budget;
use crate::model::{ModernBert, Pooling};

use super::metrics::Metrics;

/// What the model computes for every row: fixed per served model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Pooled vectors, not normalised (each request normalises its own as it asks).
    Pooled(Pooling),
    /// A sequence head's logits.
    Sequence,
    /// A token head's logits, one vector per token.
    Tokens,
}

/// One row's result.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Vector(Vec<f32>),
    Tokens(Vec<Vec<f32>>),
}

impl Output {
    pub fn into_vector(self) -> Vec<f32> {
        match self {
            Output::Vector(v) => v,
            Output::Tokens(t) => t.into_iter().flatten().collect(),
        }
    }

    pub fn into_tokens(self) -> Vec<Vec<f32>> {
        match self {
            Output::Tokens(t) => t,
            Output::Vector(v) => vec![v],
        }
    }
}

/// What a batch run reports back with each request's results.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub queue: Duration,
    pub inference: Duration,
    /// Rows of all requests in the batch this request ran in.
    pub batch_rows: usize,
}

struct Job {
    rows: Vec<Vec<u32>>,
    queued: Instant,
    reply: oneshot::Sender<std::result::Result<(Vec<Output>, Timing), String>>,
}

/// The queue in front of the model thread.
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl Batcher {
    /// Starts the model thread; it ends when the batcher is dropped.
    pub fn start(model: ModernBert, work: Work, max_batch_tokens: usize, metrics: Arc<Metrics>) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("modernft-model".into())
            .spawn(move || model_thread(model, work, max_batch_tokens, rx, &m))
            .map_err(|e| crate::err!("cannot start the model thread: {e}"))?;
        Ok(Batcher { tx, metrics })
    }

    /// Queues `rows` and waits for their results, in order. An error is the model's, as text.
    pub async fn run(&self, rows: Vec<Vec<u32>>) -> std::result::Result<(Vec<Output>, Timing), String> {
        let (reply, answer) = oneshot::channel();
        // Counted before it can be taken; the model thread uncounts every non-empty job it takes.
        let counted = !rows.is_empty();
        if counted {
            self.metrics.queued.inc();
        }
        if self.tx.send(Job { rows, queued: Instant::now(), reply }).is_err() {
            if counted {
                self.metrics.queued.dec();
            }
            return Err("the model thread has stopped".to_string());
        }
        answer.await.map_err(|_| "the model thread stopped before answering".to_string())?
    }

    /// Whether the model thread is still taking work.
    pub fn alive(&self) -> bool {
        let (reply, _) = oneshot::channel();
        // An empty job is answered at once (or dropped if the thread is gone).
        self.tx.send(Job { rows: Vec::new(), queued: Instant::now(), reply }).is_ok()
    }
}

fn model_thread(model: ModernBert, work: Work, max_batch_tokens: usize, rx: mpsc::Receiver<Job>, metrics: &Metrics) {
    while let Ok(first) = rx.recv() {
        // Every request already queued, up to the budget (the last one may overshoot it: its rows
        // then run in a forward pass of their own).
        let mut tokens: usize = first.rows.iter().map(Vec::len).sum();
        let mut jobs = vec![first];
        while tokens < max_batch_tokens {
            match rx.try_recv() {
                Ok(job) => {
                    tokens += job.rows.iter().map(Vec::len).sum::<usize>();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        // Health probes (empty jobs) never counted as queued.
        metrics.queued.sub(jobs.iter().filter(|j| !j.rows.is_empty()).count() as i64);
        jobs.retain(|j| !j.reply.is_closed());
        let started = Instant::now();
        let rows: Vec<&[u32]> = jobs.iter().flat_map(|j| j.rows.iter().map(Vec::as_slice)).collect();
        let batch_rows = rows.len();
        let result = if rows.is_empty() { Ok(Vec::new()) } else { crate::error::contained("the model", || run(&model, work, &rows, max_batch_tokens)) };
        let inference = started.elapsed();
        if batch_rows > 0 {
            metrics.inference_duration.observe(inference.as_secs_f64());
            metrics.batch_rows.observe(batch_rows as f64);
            metrics.batch_tokens.observe(rows.iter().map(|r| r.len()).sum::<usize>() as f64);
        }
        match result {
            Ok(outputs) => {
                let mut outputs = outputs.into_iter();
                for job in jobs {
                    let mine: Vec<Output> = outputs.by_ref().take(job.rows.len()).collect();
                    let timing = Timing { queue: started.duration_since(job.queued), inference, batch_rows };
                    let _ = job.reply.send(Ok((mine, timing)));
                }
            }
            Err(e) => {
                let message = e.chain();
                for job in jobs {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

fn run(model: &ModernBert, work: Work, rows: &[&[u32]], max_batch_tokens: usize) -> Result<Vec<Output>> {
    let budget = Budget { rows: usize::MAX, tokens: Some(max_batch_tokens) };
    Ok(match work {
        Work::Pooled(pooling) => crate::inference::embeddings(model, rows, pooling, false, budget)?.into_iter().map(Output::Vector).collect(),
        Work::Sequence => crate::inference::sequence_logits(model, rows, budget)?.into_iter().map(Output::Vector).collect(),
        Work::Tokens => crate::inference::token_logits(model, rows, budget)?.into_iter().map(Output::Tokens).collect(),
    })
}
