//! Checkpoints: a model folder (`model::save`) plus the training state needed for an exact resume
//! (`training_state.json`, `optimizer.safetensors`), each written atomically.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::SamplerState;
use crate::error::{Context, Result};
use crate::train::setup::Run;

pub use crate::model::save::{list_checkpoints, save_safetensors, write_atomic, write_folder_atomic, ModelFolder, TRAINING_STATE};
pub const OPTIMIZER_STATE: &str = "optimizer.safetensors";

/// Everything beyond the weights that an exact resume needs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainingState {
    /// Optimizer steps taken.
    pub step: usize,
    /// The next micro-batch to train on.
    pub sampler: SamplerState,
    /// Dropout RNG state.
    pub rng: [u64; 4],
    pub best_metric: Option<f64>,
    pub best_checkpoint: Option<String>,
    pub evals_without_improvement: usize,
    pub tokens_seen: u64,
    pub train_seconds: f64,
    /// The processes the run started with (MPI ranks): the global batch is `batch_size` × this ×
    /// accumulation, whatever number of ranks resumes it.
    #[serde(default = "one")]
    pub processes: usize,
}

fn one() -> usize {
    1
}

impl TrainingState {
    /// Before the first step of a run on `processes` ranks.
    pub fn new(seed: u64, processes: usize) -> TrainingState {
        TrainingState {
            step: 0,
            sampler: SamplerState::default(),
            rng: crate::rng::Rng::new(seed ^ 0x5EED).state(),
            best_metric: None,
            best_checkpoint: None,
            evals_without_improvement: 0,
            tokens_seen: 0,
            train_seconds: 0.0,
            processes,
        }
    }
}

/// Removes what a killed process can leave in a run folder: `.name.tmp-PID` / `.name.old-PID`
/// folders of an unfinished atomic write and `name.tmp-PID` files. Complete folders are never
/// touched.
pub fn remove_partial_writes(run_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let partial = |marker: &str| name.rsplit_once(marker).is_some_and(|(_, pid)| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()));
        let path = entry.path();
        if name.starts_with('.') && (partial(".tmp-") || partial(".old-")) && path.is_dir() {
            std::fs::remove_dir_all(&path).with_context(|| format!("cannot remove the partial write {}", path.display()))?;
        } else if partial(".tmp-") && path.is_file() {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove the partial write {}", path.display()))?;
        }
    }
    Ok(())
}

pub fn read_state(checkpoint: &Path) -> Result<TrainingState> {
    let p = checkpoint.join(TRAINING_STATE);
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a training state", p.display()))
}

pub(crate) fn save(run: &Run, state: &TrainingState) -> Result<PathBuf> {
    let dir = run.dir.join(format!("checkpoint-{}", state.step));
    write_folder_atomic(&dir, |tmp| {
        ModelFolder { config: &run.config, tensors: &run.loaded.tensors, tokenizer: &run.tokenizer, dtype: None }.write_into(tmp)?;
        // Test hooks, half way through writing checkpoint-N: an I/O error, or a pause (long enough
        // for a test to kill the process in the middle of the write).
        let at = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<usize>().ok()) == Some(state.step);
        if at("MODERNFT_FAULT_CHECKPOINT") {
            return Err(std::io::Error::other("injected I/O fault (MODERNFT_FAULT_CHECKPOINT)").into());
        }
        if at("MODERNFT_PAUSE_CHECKPOINT") {
            std::thread::sleep(std::time::Duration::from_secs(120));
        }
        let moments: Vec<(String, Tensor)> = run.optimizer.params.iter().map(|p| (p.name.clone(), p.moments.as_tensor().clone())).collect();
        save_safetensors(&tmp.join(OPTIMIZER_STATE), &moments, None)?;
        std::fs::write(tmp.join(TRAINING_STATE), serde_json::to_string_pretty(state)?)?;
        Ok(())
    })?;
    let trainer_state = json!({
        "global_step": state.step,
        "best_metric": state.best_metric,
        "best_model_checkpoint": state.best_checkpoint,
        "last_checkpoint": format!("checkpoint-{}", state.step),
        "metric_for_best_model": run.cfg.training.metric_for_best_model,
    });
    write_atomic(&run.dir.join("trainer_state.json"), serde_json::to_string_pretty(&trainer_state)?.as_bytes())?;
    prune_checkpoints(run, state)?;
    Ok(dir)
}

/// Keeps the newest `save_total_limit` checkpoints, and always the best one.
pub(crate) fn prune_checkpoints(run: &Run, state: &TrainingState) -> Result<()> {
    let Some(limit) = run.cfg.training.save_total_limit else { return Ok(()) };
    let all = list_checkpoints(&run.dir)?;
    let keep_from = all.len().saturating_sub(limit.max(1));
    for (i, (_, path)) in all.iter().enumerate() {
        let is_best = state.best_checkpoint.as_deref() == path.file_name().and_then(|n| n.to_str());
        if i < keep_from && !is_best {
            std::fs::remove_dir_all(path).with_context(|| format!("cannot remove old checkpoint {}", path.display()))?;
        }
    }
    Ok(())
}
