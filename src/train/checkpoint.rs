//! Checkpoints: a model folder (`model::save`) plus the training state needed for an exact resume
//! (`training_state.json`, `optimizer.safetensors`), each written atomically.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::SamplerState;
use crate::error::{Context, Result};

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
