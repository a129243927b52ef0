//! What a run reports while it trains: the progress bar (or a line per logging step), the `train`
//! lines of `metrics.jsonl`, and the optional batch log (`MODERNFT_BATCH_LOG`, a debugging aid
//! documented in configs/README.md: the training rows of every step, as JSONL).

use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::error::{Context, Result};
use crate::train::checkpoint::TrainingState;
use crate::train::setup::Run;

pub(crate) struct Log {
    pub(crate) bar: ProgressBar,
    /// A line per logging step on stderr when there is no progress bar.
    lines: bool,
    /// Whether this process writes metrics.jsonl (rank 0).
    writes: bool,
    /// The training loss summed since the last `train` line, and its steps.
    window: (f64, usize),
    batch_log: Option<PathBuf>,
    started: std::time::Instant,
}

impl Log {
    pub(crate) fn new(run: &Run, state: &TrainingState, progress: bool) -> Self {
        // Under MPI only rank 0 reports.
        let writes = run.world.is_root();
        Log {
            bar: progress_bar(run.total_steps, state.step, progress && writes),
            lines: !progress,
            writes,
            window: (0.0, 0),
            batch_log: std::env::var_os("MODERNFT_BATCH_LOG").map(PathBuf::from).filter(|_| writes),
            started: std::time::Instant::now(),
        }
    }

    /// The rows of the step about to run (`state.step + 1`), when the batch log is on.
    /// With each row's token count (which shows an augmented copy changing from epoch to epoch).
    pub(crate) fn batches(&self, run: &Run, state: &TrainingState, group: &[Vec<usize>]) -> Result<()> {
        let Some(path) = &self.batch_log else { return Ok(()) };
        let rows = run.train_rows();
        let lengths: Vec<Vec<usize>> = group.iter().map(|b| b.iter().map(|&r| rows.tokens.row_len(r)).collect()).collect();
        let mut line = json!({"step": state.step + 1, "epoch": state.sampler.epoch, "rows": group, "lengths": lengths});
        if let Some(m) = &run.mlm {
            // Masked-LM: each row's masked tokens this epoch.
            let masked: Vec<Vec<usize>> = group.iter().map(|b| b.iter().map(|&r| m.row(rows.tokens.row(r), state.sampler.epoch, r).targets.len()).collect()).collect();
            line["masked"] = json!(masked);
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("MODERNFT_BATCH_LOG: cannot open {}", path.display()))?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    /// The progress bar every step; a `train` line in metrics.jsonl every `logging_steps` and at
    /// the last step.
    pub(crate) fn step(&mut self, run: &Run, state: &TrainingState, (loss, grad_norm, lr): (f64, f64, f64), last: bool) -> Result<()> {
        self.window = (self.window.0 + loss, self.window.1 + 1);
        let epoch = epoch_of(run, state);
        let tps = state.tokens_seen as f64 / state.train_seconds.max(1e-9);
        self.bar.set_position(state.step as u64);
        self.bar.set_message(format!("epoch {epoch:.2} · loss {loss:.4} · lr {lr:.2e} · {tps:.0} tok/s"));
        if self.writes && (state.step % run.cfg.training.logging_steps.max(1) == 0 || last) {
            let mean = self.window.0 / self.window.1.max(1) as f64;
            let mut line = json!({"type": "train", "step": state.step, "epoch": epoch, "loss": mean, "learning_rate": lr, "grad_norm": grad_norm, "tokens_per_second": tps});
            if run.world.size() > 1 {
                // Under MPI: how much of the time went to the sums over the ranks (since this
                // process started: a resumed run counts afresh).
                line["processes"] = json!(run.world.size());
                line["allreduce_seconds"] = json!(run.allreduce_seconds);
                line["session_seconds"] = json!(self.started.elapsed().as_secs_f64());
            }
            append_metrics(&run.dir, line)?;
            if self.lines {
                crate::say!("step {}/{} · epoch {epoch:.2} · loss {mean:.4} · lr {lr:.2e} · {tps:.0} tok/s", state.step, run.total_steps);
            }
            self.window = (0.0, 0);
        }
        Ok(())
    }
}

/// Epochs done, fractional: the sampler's position.
pub(crate) fn epoch_of(run: &Run, state: &TrainingState) -> f64 {
    state.sampler.epoch as f64 + state.sampler.batch as f64 / run.micro_per_epoch.max(1) as f64
}

/// One line of `metrics.jsonl`, mirrored to TensorBoard when the run reports to it.
pub(crate) fn append_metrics(dir: &Path, line: Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("metrics.jsonl"))?;
    writeln!(f, "{line}")?;
    if crate::train::tensorboard::enabled(dir) {
        crate::train::tensorboard::mirror(dir, &line)?;
    }
    Ok(())
}

fn progress_bar(total: usize, at: usize, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps · {msg} · ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(at as u64);
    bar
}
