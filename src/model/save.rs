//! Model folders on disk, written atomically.
//!
//! A model folder is the Hugging Face layout (`config.json`, `model.safetensors` with
//! `{"format": "pt"}` metadata, `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`),
//! loadable by transformers as is, plus sentence-transformers' module files for embedding models.
//! Every folder is written under a temporary name and renamed into place, so a crash never leaves a
//! half-written folder behind. A run's `checkpoint-N` folders are model folders plus a training state
//! (`train::checkpoint`); [`list_checkpoints`] finds the complete ones (`source` resolves run folders
//! through it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde_json::{json, Value};

use crate::error::{Context, Result};
use crate::model::{ModernBertConfig, Pooling};

/// The training state a complete checkpoint holds next to its model files.
pub const TRAINING_STATE: &str = "training_state.json";

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
    let tok = crate::model::tokenizer::load_tokenizer(tokenizer)?;
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

/// sentence-transformers' prompts file.
pub const PROMPTS_FILE: &str = "config_sentence_transformers.json";

/// What the module files of a sentence-transformers folder say.
pub struct SentenceModules {
    pub pooling: Pooling,
    pub normalize: bool,
    /// The length the model was trained with (`sentence_bert_config.json`).
    pub max_seq_length: usize,
    /// `prompts` and `default_prompt_name` of `config_sentence_transformers.json`.
    pub prompts: (Value, Option<String>),
}

/// The prompts of `config_sentence_transformers.json` in `at` (a folder, or a file whose folder is
/// meant); none when there is no such file.
pub fn read_prompts(at: &Path) -> Result<(Value, Option<String>)> {
    let dir = if at.is_dir() { at } else { at.parent().unwrap_or(Path::new(".")) };
    let path = dir.join(PROMPTS_FILE);
    if !path.is_file() {
        return Ok((json!({}), None));
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let prompts = match &v["prompts"] {
        Value::Null => json!({}),
        p @ Value::Object(_) => p.clone(),
        other => crate::bail!("{}: prompts must be an object of name: text, found {other}", path.display()),
    };
    Ok((prompts, v["default_prompt_name"].as_str().map(str::to_string)))
}

/// The module files of a sentence-transformers folder, in the layout every version since v2 reads.
pub fn write_sentence_transformers_files(dir: &Path, config: &ModernBertConfig, modules: &SentenceModules) -> Result<()> {
    let SentenceModules { pooling, normalize, max_seq_length, prompts: (prompts, default_prompt_name) } = modules;
    let (pooling, normalize) = (*pooling, *normalize);
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if normalize {
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
        // A file keeps the folder in version control; every sentence-transformers version accepts `{}`.
        std::fs::create_dir_all(dir.join("2_Normalize"))?;
        std::fs::write(dir.join("2_Normalize/config.json"), "{}\n")?;
    }
    std::fs::write(dir.join("modules.json"), serde_json::to_string_pretty(&Value::Array(modules))?)?;
    std::fs::create_dir_all(dir.join("1_Pooling"))?;
    let pool = json!({
        "word_embedding_dimension": config.hidden_size,
        "pooling_mode_cls_token": pooling == Pooling::Cls,
        "pooling_mode_mean_tokens": pooling == Pooling::Mean,
        "pooling_mode_max_tokens": false,
        "pooling_mode_mean_sqrt_len_tokens": false,
        "pooling_mode_weightedmean_tokens": false,
        "pooling_mode_lasttoken": false,
        "include_prompt": true
    });
    std::fs::write(dir.join("1_Pooling/config.json"), serde_json::to_string_pretty(&pool)?)?;
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        serde_json::to_string_pretty(&json!({"max_seq_length": max_seq_length, "do_lower_case": false}))?,
    )?;
    std::fs::write(
        dir.join("config_sentence_transformers.json"),
        serde_json::to_string_pretty(&json!({
            "__version__": {"sentence_transformers": "3.0.0", "modernft": env!("CARGO_PKG_VERSION")},
            "prompts": prompts,
            "default_prompt_name": default_prompt_name,
            "similarity_fn_name": "cosine"
        }))?,
    )?;
    Ok(())
}

