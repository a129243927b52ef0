//! Model folders and checkpoints on disk.
//!
//! A model folder is the Hugging Face layout (`config.json`, `model.safetensors` with
//! `{"format": "pt"}` metadata, `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`),
//! loadable by transformers as is. A checkpoint is a model folder plus the training state needed for an
//! exact resume (`training_state.json`, `optimizer.safetensors`). Every folder is written under a
//! temporary name and renamed into place, so a crash never leaves a half-written checkpoint behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::SamplerState;
use crate::error::{Context, Result};
use crate::model::ModernBertConfig;

pub const TRAINING_STATE: &str = "training_state.json";
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

/// Writes `path` atomically: to a temporary sibling first, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}

/// The mode a new file gets here (0666 less the process's umask): what `std::fs::write` gives.
#[cfg(unix)]
fn default_file_mode(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.join(format!(".mode-probe-{}", std::process::id()));
    std::fs::File::create(&probe).ok()?;
    let mode = std::fs::metadata(&probe).ok()?.permissions().mode() & 0o777;
    let _ = std::fs::remove_file(&probe);
    Some(mode)
}

/// Saves tensors as safetensors with transformers' `{"format": "pt"}` metadata, cast to `dtype`.
/// The file gets the same permissions as every other file written (the safetensors crate writes
/// through a private 0600 temporary file).
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)], dtype: Option<DType>) -> Result<()> {
    let cast: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            let t = match dtype {
                Some(d) => t.to_dtype(d)?,
                None => t.clone(),
            };
            Ok((n.clone(), t.to_device(&candle_core::Device::Cpu)?.contiguous()?))
        })
        .collect::<Result<_>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(cast.iter().map(|(n, t)| (n.as_str(), t)), Some(meta), path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Some(mode) = default_file_mode(path.parent().unwrap_or(Path::new("."))) {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
        }
    }
    Ok(())
}

/// Special-token settings transformers' `AutoTokenizer` needs next to `tokenizer.json`.
fn tokenizer_side_files(tokenizer: &Path, max_length: usize) -> Result<(Value, Value)> {
    let tok = crate::data::load_tokenizer(tokenizer)?;
    let mut special = serde_json::Map::new();
    for (key, token) in [
        ("cls_token", "[CLS]"),
        ("sep_token", "[SEP]"),
        ("pad_token", "[PAD]"),
        ("mask_token", "[MASK]"),
        ("unk_token", "[UNK]"),
    ] {
        if tok.token_to_id(token).is_some() {
            special.insert(key.into(), json!(token));
        }
    }
    let mut config = special.clone();
    config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    config.insert("model_max_length".into(), json!(max_length));
    config.insert("model_input_names".into(), json!(["input_ids", "attention_mask"]));
    config.insert("clean_up_tokenization_spaces".into(), json!(true));
    Ok((Value::Object(config), Value::Object(special)))
}

/// What goes into a model folder.
pub struct ModelFolder<'a> {
    pub config: &'a ModernBertConfig,
    pub tensors: &'a [(String, Tensor)],
    /// The tokenizer.json to ship; its folder's tokenizer_config.json / special_tokens_map.json are
    /// copied when present, generated otherwise.
    pub tokenizer: &'a Path,
    pub dtype: Option<DType>,
}

impl ModelFolder<'_> {
    /// Writes the files into `dir` (which must exist).
    pub fn write_into(&self, dir: &Path) -> Result<()> {
        let config = serde_json::to_string_pretty(&self.config.to_json())?;
        std::fs::write(dir.join("config.json"), config)?;
        save_safetensors(&dir.join("model.safetensors"), self.tensors, self.dtype)?;
        std::fs::copy(self.tokenizer, dir.join("tokenizer.json"))
            .with_context(|| format!("cannot copy {}", self.tokenizer.display()))?;
        let src = self.tokenizer.parent().unwrap_or(Path::new("."));
        let (generated_config, generated_special) =
            tokenizer_side_files(self.tokenizer, self.config.max_position_embeddings)?;
        for (name, generated) in [("tokenizer_config.json", generated_config), ("special_tokens_map.json", generated_special)] {
            let existing = src.join(name);
            if existing.is_file() && existing != dir.join(name) {
                std::fs::copy(&existing, dir.join(name))?;
            } else if !dir.join(name).is_file() {
                std::fs::write(dir.join(name), serde_json::to_string_pretty(&generated)?)?;
            }
        }
        Ok(())
    }
}

/// Builds a folder under a temporary name with `fill`, then renames it to `dir`, replacing an
/// existing folder of that name only once the new one is complete.
pub fn write_folder_atomic(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("folder");
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    if let Err(e) = fill(&tmp) {
        // Nothing half-written stays behind; an existing `dir` was never touched.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.wrap(format!("cannot write {}", dir.display())));
    }
    if dir.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dir, &old)?;
        std::fs::rename(&tmp, dir)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&tmp, dir)?;
    }
    Ok(())
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

/// `checkpoint-N` folders of a run, by step, complete ones only.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    if !run_dir.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(run_dir)? {
        let path = entry?.path();
        let Some(step) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|s| s.parse::<usize>().ok())
        else {
            continue;
        };
        if path.join(TRAINING_STATE).is_file() && path.join("model.safetensors").is_file() {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

pub fn read_state(checkpoint: &Path) -> Result<TrainingState> {
    let p = checkpoint.join(TRAINING_STATE);
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a training state", p.display()))
}
