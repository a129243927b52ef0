//! Where a model comes from: a local folder in the Hugging Face layout, or a hub id resolved through
//! hf-hub (its cache, `HF_HOME`, `HF_ENDPOINT`, and offline mode with `HF_HUB_OFFLINE=1`).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use serde_json::Value;

use crate::error::{Context, Error, Result};

/// The files of one model, wherever they came from.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// What the user named (folder or hub id), for messages.
    pub origin: String,
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    /// Pooling and normalisation of a sentence-transformers folder (`1_Pooling`, `2_Normalize`).
    pub sentence: Option<SentenceSettings>,
}

/// What a sentence-transformers folder says about turning texts into one vector.
#[derive(Clone, Debug, PartialEq)]
pub struct SentenceSettings {
    pub pooling: crate::model::Pooling,
    pub normalize: bool,
    /// `sentence_bert_config.json`'s `max_seq_length`: the length the model was trained with.
    pub max_seq_length: Option<usize>,
    /// The prompt `config_sentence_transformers.json` names as `default_prompt_name`, which
    /// sentence-transformers prepends to every text it encodes.
    pub default_prompt: Option<String>,
}

/// What a command asks for explicitly (a flag or a config key), each with the name the user typed,
/// so that a notice can say which setting overrode the folder's.
#[derive(Clone, Debug, Default)]
pub struct Asked {
    pub pooling: Option<(crate::model::Pooling, String)>,
    pub normalize: Option<(bool, String)>,
    pub prefix: Option<(String, String)>,
    pub max_length: Option<(usize, String)>,
}

/// How a command turns texts into vectors with one model, resolved the same way everywhere: what
/// was asked explicitly first, then the sentence-transformers modules, then `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingSetup {
    pub pooling: crate::model::Pooling,
    pub normalize: bool,
    /// Prepended to every text.
    pub prefix: String,
    /// Tokens per text, `[CLS]` and `[SEP]` included.
    pub max_length: usize,
}

/// The one `max_length` rule, the same for `train`, `eval`, `embed` and `predict`: what was asked
/// (a flag or a config key, named in `asked`), else the folder's sentence-transformers
/// `max_seq_length` (`folder`), else the model's positions. More than the positions is refused.
/// Inputs longer than the result are truncated and counted, or refused with `--no-truncate`
/// (`data::TextEncoder::count_truncated`).
pub fn max_length_rule(asked: Option<&(usize, String)>, folder: Option<usize>, positions: usize) -> Result<usize> {
    let n = match (asked, folder) {
        (Some((n, key)), _) if *n > positions => {
            crate::bail!("{key} = {n} exceeds the model's max_position_embeddings ({positions}); use at most {positions}")
        }
        (Some((n, _)), _) => *n,
        (None, Some(m)) => m.min(positions),
        (None, None) => positions,
    };
    if n < 2 {
        crate::bail!("max_length {n} leaves no room for [CLS] and [SEP]; pass a larger --max-length");
    }
    Ok(n)
}

impl ModelFiles {
    /// [`max_length_rule`] for this folder; a notice on stderr says when what was asked overrides the
    /// folder's `max_seq_length`.
    pub fn max_length(&self, config: &crate::model::ModernBertConfig, asked: Option<&(usize, String)>) -> Result<usize> {
        let folder = self.sentence.as_ref().and_then(|s| s.max_seq_length);
        let n = max_length_rule(asked, folder, config.max_position_embeddings)
            .map_err(|e| if folder.is_some() && asked.is_none() { e.wrap(format!("{}: max_seq_length", self.origin)) } else { e })?;
        if let (Some((n, key)), Some(m)) = (asked, folder) {
            if *n != m {
                crate::say!("note: {key} = {n} overrides {}'s sentence-transformers setting (max_seq_length = {m})", self.origin);
            }
        }
        Ok(n)
    }

    /// Resolves pooling, normalisation, prefix and length for this model (see [`EmbeddingSetup`]);
    /// a notice on stderr says when an explicit setting overrides what the folder says.
    pub fn embedding_setup(&self, config: &crate::model::ModernBertConfig, asked: &Asked) -> Result<EmbeddingSetup> {
        let st = self.sentence.as_ref();
        let origin = &self.origin;
        let overrides = |key: &str, value: String, folder: String| {
            crate::say!("note: {key} = {value} overrides {origin}'s sentence-transformers setting ({folder})");
        };
        let pooling = match (&asked.pooling, st) {
            (Some((p, key)), Some(s)) if *p != s.pooling => {
                overrides(key, p.as_str().to_string(), format!("{} pooling", s.pooling.as_str()));
                *p
            }
            (Some((p, _)), _) => *p,
            (None, Some(s)) => s.pooling,
            (None, None) => config.classifier_pooling,
        };
        let normalize = match (&asked.normalize, st) {
            (Some((n, key)), Some(s)) if *n != s.normalize => {
                overrides(key, n.to_string(), format!("normalize = {}", s.normalize));
                *n
            }
            (Some((n, _)), _) => *n,
            (None, s) => s.is_some_and(|s| s.normalize),
        };
        let prefix = match (&asked.prefix, st.and_then(|s| s.default_prompt.as_ref())) {
            (Some((p, key)), Some(prompt)) if p != prompt => {
                overrides(key, format!("{p:?}"), format!("default prompt {prompt:?}"));
                p.clone()
            }
            (Some((p, _)), _) => p.clone(),
            (None, Some(prompt)) => prompt.clone(),
            (None, None) => String::new(),
        };
        let max_length = self.max_length(config, asked.max_length.as_ref())?;
        Ok(EmbeddingSetup { pooling, normalize, prefix, max_length })
    }
}

impl ModelFiles {
    /// Resolves `spec`: an existing folder is used as is; otherwise a hub id (`org/name`, optionally
    /// `org/name@revision`) is fetched through the hub cache.
    pub fn resolve(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if path.exists() {
            crate::bail!("--model {spec} is a file; pass the folder that holds config.json and model.safetensors");
        }
        if !looks_like_hub_id(spec) {
            crate::bail!("no model folder at {spec}: pass a folder with config.json and model.safetensors, or a hub id like answerdotai/ModernBERT-base");
        }
        Self::from_hub(spec).with_context(|| {
            format!(
                "there is no local folder {spec}{}; tried as a Hugging Face hub id, it could not be fetched (set HF_HUB_OFFLINE=1 to use only the local cache, HF_ENDPOINT for a mirror)",
                near_folders(path)
            )
        })
    }

    /// A model folder (Hugging Face layout), a sentence-transformers folder, a modernft run folder
    /// (its exported `model/`, else its best or latest checkpoint), or a checkpoint folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if dir.join("modules.json").is_file() {
            return Self::from_sentence_transformers(dir);
        }
        if !dir.join("config.json").is_file() {
            if dir.join("model").join("config.json").is_file() {
                return Self::from_dir(&dir.join("model"));
            }
            if let Some(ck) = run_checkpoint(dir)? {
                crate::say!("note: {} has no exported model yet; using {}", dir.display(), ck.display());
                return Self::from_dir(&ck);
            }
            crate::bail!("{} has no config.json: is it a model folder?", dir.display());
        }
        Self::from_hf_dir(dir)
    }

    fn from_sentence_transformers(dir: &Path) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        let text = std::fs::read_to_string(&modules_path).with_context(|| format!("cannot read {}", modules_path.display()))?;
        let modules: Vec<Value> = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", modules_path.display()))?;
        // Module types are `sentence_transformers.models.Pooling` (v2–v5) or
        // `sentence_transformers.….pooling.Pooling` (v6): match the class name.
        // A module's folder is its `path` ("" is the folder itself, as sentence-transformers writes
        // the Transformer module); a module without one is an error, not a guess.
        let path_of = |class: &str| -> Result<Option<PathBuf>> {
            let Some(m) = modules.iter().find(|m| m["type"].as_str().is_some_and(|t| t.rsplit('.').next() == Some(class))) else {
                return Ok(None);
            };
            match m["path"].as_str() {
                Some(p) => Ok(Some(dir.join(p))),
                None => crate::bail!("{}: the {class} module has no \"path\"; add \"path\": \"\" (this folder) or its subfolder's name", modules_path.display()),
            }
        };
        let transformer = path_of("Transformer")?
            .with_context(|| format!("{} lists no sentence_transformers.models.Transformer module", modules_path.display()))?;
        let mut files = Self::from_hf_dir(&transformer)
            .with_context(|| format!("{}: the Transformer module's folder {} is not a model", modules_path.display(), transformer.display()))?;
        let pooling = match path_of("Pooling")? {
            Some(p) => {
                let pooling_cfg = p.join("config.json");
                let named = || format!("{} names the Pooling module's folder {}", modules_path.display(), p.display());
                let text = std::fs::read_to_string(&pooling_cfg).with_context(|| format!("cannot read {} ({})", pooling_cfg.display(), named()))?;
                let cfg: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON ({})", pooling_cfg.display(), named()))?;
                let mode = cfg["pooling_mode"].as_str();
                if mode == Some("cls") || cfg["pooling_mode_cls_token"].as_bool() == Some(true) {
                    crate::model::Pooling::Cls
                } else if mode == Some("mean") || cfg["pooling_mode_mean_tokens"].as_bool() == Some(true) {
                    crate::model::Pooling::Mean
                } else {
                    crate::bail!("{}: only cls and mean pooling are supported", p.display())
                }
            }
            None => {
                // What sentence-transformers itself builds around a plain transformer.
                crate::say!("note: {} lists no Pooling module; using mean pooling", modules_path.display());
                crate::model::Pooling::Mean
            }
        };
        let max_seq_length = match read_json_if_present(&transformer.join("sentence_bert_config.json"))? {
            Some(v) => match &v["max_seq_length"] {
                Value::Null => None,
                n => Some(n.as_u64().filter(|&n| n >= 2).with_context(|| {
                    format!("{}: max_seq_length must be a whole number of at least 2, found {n}", transformer.join("sentence_bert_config.json").display())
                })? as usize),
            },
            None => None,
        };
        let st_config = dir.join("config_sentence_transformers.json");
        let default_prompt = match read_json_if_present(&st_config)? {
            Some(v) => match &v["default_prompt_name"] {
                Value::Null => None,
                Value::String(name) => Some(
                    v["prompts"][name.as_str()]
                        .as_str()
                        .with_context(|| format!("{}: default_prompt_name \"{name}\" is not among its prompts", st_config.display()))?
                        .to_string(),
                ),
                other => crate::bail!("{}: default_prompt_name must be a string, found {other}", st_config.display()),
            },
            None => None,
        };
        files.sentence = Some(SentenceSettings { pooling, normalize: path_of("Normalize")?.is_some(), max_seq_length, default_prompt });
        files.origin = dir.display().to_string();
        Ok(files)
    }

    fn from_hf_dir(dir: &Path) -> Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            crate::bail!("{} has no config.json: is it a model folder?", dir.display());
        }
        let weights = if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else if dir.join("model.safetensors.index.json").is_file() {
            shard_files(&dir.join("model.safetensors.index.json"), |f| Ok(dir.join(f)))?
        } else if dir.join("pytorch_model.bin").is_file() {
            crate::bail!(
                "{} holds only pytorch_model.bin; modernft reads safetensors. Convert it once in Python: model.save_pretrained(dir, safe_serialization=True)",
                dir.display()
            );
        } else {
            crate::bail!("{} has no model.safetensors (or model.safetensors.index.json)", dir.display());
        };
        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        Ok(ModelFiles { origin: dir.display().to_string(), config, weights, tokenizer, sentence: None })
    }

    fn from_hub(spec: &str) -> Result<Self> {
        let (id, revision) = match spec.split_once('@') {
            Some((id, rev)) => (id, rev),
            None => (spec, "main"),
        };
        let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
        let fetch = hub_fetcher(repo)?;
        // A sentence-transformers repository: its modules say where the encoder is and how it pools.
        let modules = fetch("modules.json").ok();
        let prefix = match &modules {
            Some(m) => sentence_module_paths(m)?.0,
            None => String::new(),
        };
        let at = |name: &str| format!("{prefix}{name}");
        let config = fetch(&at("config.json"))?;
        let weights = match fetch(&at("model.safetensors")) {
            Ok(p) => vec![p],
            Err(single) => match fetch(&at("model.safetensors.index.json")) {
                Ok(index) => shard_files(&index, |f| fetch(&at(f)))?,
                Err(_) => return Err(single),
            },
        };
        let tokenizer = fetch(&at("tokenizer.json")).ok();
        if let Some(m) = modules {
            // The side files land in the same cached snapshot, which then reads as a folder.
            for side in sentence_module_paths(&m)?.1 {
                let _ = fetch(&side);
            }
            let _ = fetch(&at("sentence_bert_config.json"));
            let _ = fetch("config_sentence_transformers.json");
            let root = m.parent().unwrap_or(Path::new("."));
            let mut files = Self::from_sentence_transformers(root)?;
            files.origin = spec.to_string();
            return Ok(files);
        }
        Ok(ModelFiles { origin: spec.to_string(), config, weights, tokenizer, sentence: None })
    }

    /// Just the tokenizer of `spec` (a folder or a hub id): for commands that only tokenize, a hub
    /// model's weights are not downloaded.
    pub fn resolve_tokenizer(spec: &str) -> Result<PathBuf> {
        Self::resolve_one(spec, "tokenizer.json", |files| Ok(files.tokenizer()?.to_path_buf()))
    }

    /// Only the `config.json` of a model (no weights fetched from a hub).
    pub fn resolve_config(spec: &str) -> Result<PathBuf> {
        Self::resolve_one(spec, "config.json", |files| Ok(files.config.clone()))
    }

    /// One file of a model: from its folder (or run), else fetched alone from the hub.
    fn resolve_one(spec: &str, name: &str, local: impl Fn(&ModelFiles) -> Result<PathBuf>) -> Result<PathBuf> {
        let path = Path::new(spec);
        if path.exists() || !looks_like_hub_id(spec) {
            return local(&Self::resolve(spec)?);
        }
        let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let fetch = hub_fetcher(Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string()))?;
        fetch(name).with_context(|| format!("there is no local folder {spec}{}; tried as a Hugging Face hub id, its {name} could not be fetched", near_folders(path)))
    }

    pub fn tokenizer(&self) -> Result<&Path> {
        self.tokenizer.as_deref().with_context(|| {
            format!("model {} has no tokenizer.json; copy the base model's tokenizer.json next to its config.json", self.origin)
        })
    }
}

/// The checkpoint a run folder's users want: the best one (trainer_state.json), else the latest.
fn run_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    if let Ok(text) = std::fs::read_to_string(dir.join("trainer_state.json")) {
        if let Some(best) = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["best_model_checkpoint"].as_str().map(str::to_string)) {
            if dir.join(&best).join("config.json").is_file() {
                return Ok(Some(dir.join(best)));
            }
        }
    }
    Ok(crate::model::save::list_checkpoints(dir)?.pop().map(|(_, p)| p))
}

/// ", but {parent} has: a, b, c" when the path's parent folder exists: the likely typo's neighbours.
fn near_folders(path: &Path) -> String {
    let parent = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return String::new(),
    };
    let Ok(entries) = std::fs::read_dir(parent) else { return String::new() };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| !n.starts_with('.')).collect();
    if names.is_empty() {
        return String::new();
    }
    names.sort();
    names.truncate(8);
    format!(" (the folder {} exists and holds: {})", parent.display(), names.join(", "))
}

fn looks_like_hub_id(spec: &str) -> bool {
    let id = spec.split('@').next().unwrap_or("");
    let parts: Vec<&str> = id.split('/').collect();
    !id.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

fn truthy(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// Returns a function that gives the local path of a file in `repo`: from the cache when offline
/// (`HF_HUB_OFFLINE=1`), otherwise cache first, then a download.
pub fn hub_fetcher(repo: Repo) -> Result<impl Fn(&str) -> Result<PathBuf>> {
    let offline = truthy("HF_HUB_OFFLINE");
    let cache = Cache::from_env();
    let api = if offline {
        None
    } else {
        Some(ApiBuilder::from_env().with_progress(false).build().map_err(|e| crate::err!("cannot set up the hub client: {e}"))?)
    };
    Ok(move |file: &str| -> Result<PathBuf> {
        if let Some(p) = cache.repo(repo.clone()).get(file) {
            return Ok(p);
        }
        match &api {
            None => Err(crate::err!("{file} of {} is not in the hub cache and HF_HUB_OFFLINE is set", repo.url())),
            Some(api) => api
                .repo(repo.clone())
                .get(file)
                .map_err(|e| Error::msg(format!("cannot download {file} of {}: {e}", repo.url()))),
        }
    })
}

/// The shard files listed by a `model.safetensors.index.json`, in a stable order.
fn shard_files(index: &Path, locate: impl Fn(&str) -> Result<PathBuf>) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).with_context(|| format!("cannot read {}", index.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .with_context(|| format!("{} has no `weight_map`", index.display()))?;
    let mut files: Vec<&str> = map.values().filter_map(Value::as_str).collect();
    files.sort_unstable();
    files.dedup();
    files.into_iter().map(locate).collect()
}

#[cfg(test)]
mod tests {
    use super::looks_like_hub_id;

    #[test]
    fn hub_ids_are_told_from_paths() {
        assert!(looks_like_hub_id("answerdotai/ModernBERT-base"));
        assert!(looks_like_hub_id("bert-base-uncased"));
        assert!(looks_like_hub_id("org/name@v1.0"));
        assert!(!looks_like_hub_id("./runs/x"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("../model"));
    }
}

/// A JSON side file (sentence-transformers' settings), `None` when the folder has none.
fn read_json_if_present(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map(Some).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// From a sentence-transformers `modules.json`: the Transformer module's folder as a path prefix
/// (`""` for the repository root, else `"name/"`), and the module config files to fetch.
fn sentence_module_paths(modules_json: &Path) -> Result<(String, Vec<String>)> {
    let text = std::fs::read_to_string(modules_json).with_context(|| format!("cannot read {}", modules_json.display()))?;
    let modules: Vec<Value> = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", modules_json.display()))?;
    let (mut prefix, mut sides) = (String::new(), Vec::new());
    for m in &modules {
        let class = m["type"].as_str().and_then(|t| t.rsplit('.').next()).unwrap_or("");
        let path = m["path"].as_str().unwrap_or("").trim_matches('/');
        match class {
            "Transformer" if !path.is_empty() => prefix = format!("{path}/"),
            "Pooling" => sides.push(if path.is_empty() { "config.json".to_string() } else { format!("{path}/config.json") }),
            _ => {}
        }
    }
    Ok((prefix, sides))
}
