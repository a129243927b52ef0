//! The run config (`modernft train --config run.toml`): sections `[model]`, `[data]`, `[training]`,
//! `[output]` and the top-level `task`. Every key has a default (see configs/README.md); unknown keys
//! are rejected with the nearest valid key suggested; `--set section.key=value` overrides any key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{DataConfig, TargetKind};
use crate::error::{Context, Result};
use crate::model::ModelFiles;

/// The commented template `modernft init` writes (configs/template.toml).
pub const TEMPLATE: &str = include_str!("../configs/template.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// One label per row; with `multi_label = true`, a list of labels per row.
    Classification,
    /// One number per row.
    Regression,
    /// One tag per word (named-entity recognition): `tokens` + `tags` rows, or CoNLL files.
    TokenClassification,
    /// Custom embeddings: contrastive training on (anchor, positive[, negative]) or scored pairs.
    Embedding,
    /// Masked-LM (continued) pretraining on unlabelled text: domain adaptation before a task.
    Mlm,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default = "default_task")]
    pub task: Task,
    /// Several labels per row (sigmoid + binary cross-entropy); classification only.
    #[serde(default)]
    pub multi_label: bool,
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub training: TrainingConfig,
    #[serde(default)]
    pub output: OutputConfig,
    /// Whether `[data] max_length` was written in the config (or set with --set), rather than left
    /// at its default: an explicit length overrides a sentence-transformers folder's max_seq_length.
    #[serde(skip)]
    pub max_length_given: bool,
}

fn default_task() -> Task {
    Task::Classification
}


#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// A pretrained model: folder (config.json, model.safetensors, tokenizer.json) or hub id.
    #[serde(default)]
    pub name: Option<String>,
    /// Train from scratch with this ModernBERT config.json instead (random initialisation).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// tokenizer.json to use [default: the model's].
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Override the config's `classifier_pooling` (`cls` or `mean`).
    #[serde(default)]
    pub pooling: Option<String>,
    /// Override the config's `classifier_dropout`.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Embedding runs: L2-normalise the exported model's vectors (a Normalize module).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Whole tokens to add to the tokenizer (as `tokenizer.add_tokens`); the token embeddings grow
    /// to hold them (as `resize_token_embeddings`).
    #[serde(default)]
    pub add_tokens: Vec<String>,
    /// A UTF-8 file of tokens to add, one per line (surrounding whitespace and blank lines ignored).
    #[serde(default)]
    pub add_tokens_file: Option<PathBuf>,
}


/// Where the tokenizer comes from.
#[derive(Clone, Debug)]
pub enum TokenizerSource {
    File(PathBuf),
    Model(String),
}

impl TokenizerSource {
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            TokenizerSource::File(p) => {
                if !p.is_file() {
                    crate::bail!("tokenizer {} does not exist", p.display());
                }
                Ok(p.clone())
            }
            TokenizerSource::Model(m) => ModelFiles::resolve_tokenizer(m),
        }
    }
}

impl ModelSection {
    /// `tokenizer`, else the model's; never a guess (validation requires one of them).
    pub fn tokenizer_source(&self) -> Result<TokenizerSource> {
        match (&self.tokenizer, &self.name) {
            (Some(t), _) => Ok(TokenizerSource::File(t.clone())),
            (None, Some(n)) => Ok(TokenizerSource::Model(n.clone())),
            (None, None) => crate::bail!("[model] names no tokenizer: set `tokenizer = \"path/tokenizer.json\"` (or `name` = a model that has one)"),
        }
    }

    /// The tokens to add: `add_tokens`, then `add_tokens_file`'s lines, each once, in that order
    /// (empty when neither is set). An empty token, or a file without any, is an error naming it.
    pub fn new_tokens(&self) -> Result<Vec<String>> {
        let mut tokens: Vec<String> = Vec::new();
        let mut push = |t: &str| {
            if !tokens.iter().any(|k| k == t) {
                tokens.push(t.to_string());
            }
        };
        for (i, t) in self.add_tokens.iter().enumerate() {
            if t.trim().is_empty() {
                crate::bail!("[model] add_tokens[{i}] = {t:?} is empty: a token needs at least one visible character");
            }
            push(t);
        }
        if let Some(path) = &self.add_tokens_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read [model] add_tokens_file {} (a UTF-8 file, one token per line)", path.display()))?;
            let mut any = false;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                push(line);
                any = true;
            }
            if !any {
                crate::bail!("[model] add_tokens_file {} lists no tokens: write one token per line", path.display());
            }
        }
        Ok(tokens)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    pub learning_rate: f64,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// Passes over the training data (fractions allowed); ignored when `max_steps` is set.
    pub epochs: f64,
    /// Stop after this many optimizer steps.
    pub max_steps: Option<usize>,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// `linear` (warm-up, then linear decay to 0), `cosine` or `constant` (after warm-up).
    pub lr_scheduler: String,
    pub warmup_steps: usize,
    /// Warm-up as a fraction of all steps (used when `warmup_steps` is 0).
    pub warmup_ratio: f64,
    /// Clip the global gradient norm to this (0 disables).
    pub max_grad_norm: f64,
    pub gradient_accumulation_steps: usize,
    /// `epoch`, `steps` (every `eval_steps`) or `no`.
    pub eval_strategy: String,
    pub eval_steps: Option<usize>,
    /// Log the training loss every this many optimizer steps.
    pub logging_steps: usize,
    /// Stop after this many evaluations without improvement (unset: never stop early).
    pub early_stopping_patience: Option<usize>,
    /// How much better than the best a metric must be to count as an improvement.
    pub early_stopping_threshold: f64,
    /// `loss`, `accuracy`, `f1` (macro), `mse`, `pearson`, ...
    pub metric_for_best_model: String,
    /// Whether a larger `metric_for_best_model` is better [default: false for loss/mse/mae, true otherwise].
    pub greater_is_better: Option<bool>,
    /// Keep at most this many step checkpoints (the best is always kept).
    pub save_total_limit: Option<usize>,
    /// Restore the best checkpoint's weights at the end.
    pub load_best_model_at_end: bool,
    pub seed: u64,
    /// Batch rows of similar length together (less padding).
    pub group_by_length: bool,
    /// Shuffle the training rows every epoch (false: file order).
    pub shuffle: bool,
    /// Token classification: how tags form entities, as seqeval reads them (`default` or `strict-iob2`).
    pub entity_scheme: crate::tasks::EntityScheme,
    /// Embedding: `mnrl` (MultipleNegativesRankingLoss on anchor/positive[/negative]) or `cosent` (scored pairs).
    pub embedding_loss: crate::tasks::embedding::EmbeddingLoss,
    /// Embedding: similarity scale of both losses (sentence-transformers' 20).
    pub loss_scale: f64,
    /// Masked-LM: the share of (non-special) tokens masked (ModernBERT's 30%); of those 80% become
    /// the mask token, 10% a random token, 10% stay.
    pub mlm_probability: f64,
    /// Embedding: Matryoshka dimensions (the loss is summed over truncations to each).
    pub matryoshka_dims: Option<Vec<usize>>,
    /// Embedding, MNRL: which similarity terms enter the softmax, as sentence-transformers'
    /// `directions`: `query_to_doc` (always), `doc_to_query`, `query_to_query`, `doc_to_doc`.
    pub mnrl_directions: Vec<String>,
    /// Embedding, MNRL: one softmax over all directions (`joint`) or one per direction, averaged
    /// (`per_direction`), as sentence-transformers' `partition_mode`.
    pub mnrl_partition: String,
    /// How training rows form batches: `default`, or `no_duplicates` (no text twice in a batch, as
    /// sentence-transformers' NoDuplicatesBatchSampler; a duplicate is a false in-batch negative).
    pub batch_sampler: String,
    /// Embedding: validate with `sts` (scored pairs: Spearman of cosine) or `retrieval` (pairs:
    /// MRR@10, NDCG@10, Recall@1/10 with every positive as the corpus) [default: sts for cosent, else retrieval].
    pub embedding_eval: Option<String>,
    /// Also checkpoint every this many optimizer steps (checkpoints are always written at evaluations).
    pub save_steps: Option<usize>,
    /// `f32`, or `bf16`: mixed precision as `TrainingArguments(bf16=True)` (autocast): the linear
    /// layers' products in bf16 with f32 sums, f32 master weights and optimizer.
    pub precision: String,
}

impl Default for TrainingConfig {
    /// transformers' `TrainingArguments` defaults where they exist.
    fn default() -> Self {
        TrainingConfig {
            learning_rate: 5e-5,
            batch_size: 8,
            eval_batch_size: 8,
            epochs: 3.0,
            max_steps: None,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            lr_scheduler: "linear".into(),
            warmup_steps: 0,
            warmup_ratio: 0.0,
            max_grad_norm: 1.0,
            gradient_accumulation_steps: 1,
            eval_strategy: "epoch".into(),
            eval_steps: None,
            logging_steps: 10,
            early_stopping_patience: None,
            early_stopping_threshold: 0.0,
            metric_for_best_model: "loss".into(),
            greater_is_better: None,
            save_total_limit: Some(2),
            load_best_model_at_end: true,
            seed: 42,
            group_by_length: false,
            shuffle: true,
            save_steps: None,
            entity_scheme: crate::tasks::EntityScheme::Default,
            embedding_loss: crate::tasks::embedding::EmbeddingLoss::Mnrl,
            loss_scale: 20.0,
            mlm_probability: 0.3,
            matryoshka_dims: None,
            mnrl_directions: vec!["query_to_doc".into()],
            mnrl_partition: "joint".into(),
            batch_sampler: "default".into(),
            embedding_eval: None,
            precision: "f32".into(),
        }
    }
}


#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// The run folder: checkpoints, metrics.jsonl, plots, the resolved config.
    pub dir: PathBuf,
    /// Where metrics also go while training: `"tensorboard"` (event files in `dir/tensorboard/`).
    pub report_to: Vec<String>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { dir: PathBuf::from("runs/run"), report_to: Vec::new() }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            task: Task::Classification,
            multi_label: false,
            model: ModelSection::default(),
            data: DataConfig::default(),
            training: TrainingConfig::default(),
            output: OutputConfig::default(),
            max_length_given: false,
        }
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != *cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The valid keys of every section, read off the defaults (so they can never drift from the structs).
fn known_keys() -> serde_json::Value {
    serde_json::to_value(RunConfig::default()).expect("config serializes")
}

/// The key (`section.key`, as deep as it goes) whose value alone does not deserialize: names the key
/// in a type error (a `toml::Value` carries no position). `None` when no single key is to blame.
fn failing_key(value: &toml::Value) -> Option<String> {
    fn alone(path: &[&str], v: &toml::Value) -> toml::Value {
        path.iter().rev().fold(v.clone(), |inner, key| toml::Value::Table(toml::map::Map::from_iter([(key.to_string(), inner)])))
    }
    fn find(path: &mut Vec<String>, v: &toml::Value) -> Option<String> {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        if alone(&keys, v).try_into::<RunConfig>().is_ok() {
            return None;
        }
        if let Some(table) = v.as_table() {
            for (k, child) in table {
                path.push(k.clone());
                let found = find(path, child);
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
        }
        Some(path.join("."))
    }
    let table = value.as_table()?;
    table.iter().find_map(|(k, v)| find(&mut vec![k.clone()], v))
}

/// Rejects keys the config does not have, suggesting the nearest valid one.
fn check_keys(value: &toml::Value, source: &str) -> Result<()> {
    let known = known_keys();
    let table = value.as_table().with_context(|| format!("{source}: expected TOML tables"))?;
    let suggest = |key: &str, candidates: Vec<&String>| -> String {
        candidates
            .into_iter()
            .map(|c| (edit_distance(key, c), c))
            .filter(|(d, c)| *d <= 3.max(c.len() / 3))
            .min()
            .map(|(_, c)| format!("; did you mean `{c}`?"))
            .unwrap_or_default()
    };
    let top = known.as_object().expect("object");
    for (key, v) in table {
        match top.get(key) {
            None => {
                let sections = sections_with(&known, key);
                if !sections.is_empty() {
                    crate::bail!("{source}: unknown key `{key}`: it is a key of [{}]; put it in that section", sections.join("] and ["));
                }
                crate::bail!("{source}: unknown key `{key}`{}", suggest(key, top.keys().collect()))
            }
            Some(serde_json::Value::Object(section)) => {
                let t = v.as_table().with_with_section(source, key)?;
                for k in t.keys() {
                    if !section.contains_key(k) {
                        let elsewhere = sections_with(&known, k);
                        if !elsewhere.is_empty() {
                            crate::bail!("{source}: unknown key `{key}.{k}`: `{k}` is a key of [{}]", elsewhere.join("] and ["));
                        }
                        crate::bail!(
                            "{source}: unknown key `{key}.{k}`{} (valid keys: {})",
                            suggest(k, section.keys().collect()),
                            section.keys().cloned().collect::<Vec<_>>().join(", ")
                        );
                    }
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The sections that have a key named `key`.
fn sections_with(known: &serde_json::Value, key: &str) -> Vec<String> {
    known.as_object().into_iter().flatten().filter(|(_, v)| v.as_object().is_some_and(|s| s.contains_key(key))).map(|(k, _)| k.clone()).collect()
}

/// A serde type name as a person says it.
fn plain_types(message: &str) -> String {
    [("usize", "a whole number"), ("u64", "a whole number"), ("u32", "a whole number"), ("f64", "a number"), ("f32", "a number"), ("a boolean", "true or false")]
        .iter()
        .fold(message.to_string(), |m, (t, plain)| m.replace(&format!("expected {t}"), &format!("expected {plain}")))
}

trait SectionExt<'a> {
    fn with_with_section(self, source: &str, key: &str) -> Result<&'a toml::map::Map<String, toml::Value>>;
}

impl<'a> SectionExt<'a> for Option<&'a toml::map::Map<String, toml::Value>> {
    fn with_with_section(self, source: &str, key: &str) -> Result<&'a toml::map::Map<String, toml::Value>> {
        self.with_context(|| format!("{source}: `{key}` must be a section ([{key}])"))
    }
}

/// Parses `value` of a `--set key=value` as TOML (numbers, booleans, arrays, quoted strings), or
/// takes it as a bare string.
fn parse_override_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Applies `section.key=value` overrides to a parsed config.
pub fn apply_overrides(value: &mut toml::Value, overrides: &[String]) -> Result<()> {
    let known = known_keys();
    for o in overrides {
        let (path, raw) = o.split_once('=').with_context(|| format!("--set {o}: expected section.key=value"))?;
        let parts: Vec<&str> = path.trim().split('.').collect();
        if let [key] = parts.as_slice() {
            let sections = sections_with(&known, key);
            if known.get(key).is_none() && !sections.is_empty() {
                crate::bail!("--set {o}: `{key}` is a key of [{}]; write --set {}.{key}={}", sections.join("] and ["), sections[0], raw.trim());
            }
        }
        let mut cur = value.as_table_mut().expect("table");
        for p in &parts[..parts.len() - 1] {
            cur = cur
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .with_context(|| format!("--set {o}: `{p}` is not a section"))?;
        }
        cur.insert(parts[parts.len() - 1].to_string(), parse_override_value(raw.trim()));
    }
    Ok(())
}

/// A numeric key's valid range, as the error states it.
#[derive(Clone, Copy)]
enum Range {
    /// (0, ∞)
    Positive,
    /// [0, ∞)
    NonNegative,
    /// [0, 1)
    UnitOpen,
    /// [0, 1]
    Unit,
    /// (0, 1)
    Fraction,
    /// ≥ 1 (whole numbers)
    AtLeastOne,
    /// ≥ 2 (whole numbers)
    AtLeastTwo,
}

impl Range {
    fn holds(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Range::Positive => v > 0.0,
                Range::NonNegative => v >= 0.0,
                Range::UnitOpen => (0.0..1.0).contains(&v),
                Range::Unit => (0.0..=1.0).contains(&v),
                Range::Fraction => v > 0.0 && v < 1.0,
                Range::AtLeastOne => v >= 1.0,
                Range::AtLeastTwo => v >= 2.0,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Range::Positive => "a finite number above 0",
            Range::NonNegative => "a finite number, 0 or more",
            Range::UnitOpen => "at least 0 and below 1",
            Range::Unit => "between 0 and 1",
            Range::Fraction => "above 0 and below 1",
            Range::AtLeastOne => "at least 1",
            Range::AtLeastTwo => "at least 2 (room for [CLS] and [SEP])",
        }
    }
}

/// Every numeric key with its valid range: (key as written in the config, value if set, range).
fn numeric_keys(c: &RunConfig) -> Vec<(&'static str, Option<f64>, Range)> {
    let t = &c.training;
    let n = |v: usize| Some(v as f64);
    let on = |v: Option<usize>| v.map(|v| v as f64);
    let aug = c.data.augment.as_ref();
    vec![
        ("model.classifier_dropout", c.model.classifier_dropout, Range::UnitOpen),
        ("data.max_length", n(c.data.max_length), Range::AtLeastTwo),
        ("training.learning_rate", Some(t.learning_rate), Range::NonNegative),
        ("training.batch_size", n(t.batch_size), Range::AtLeastOne),
        ("training.eval_batch_size", n(t.eval_batch_size), Range::AtLeastOne),
        ("training.gradient_accumulation_steps", n(t.gradient_accumulation_steps), Range::AtLeastOne),
        ("training.epochs", t.max_steps.is_none().then_some(t.epochs), Range::Positive),
        ("training.max_steps", on(t.max_steps), Range::AtLeastOne),
        ("training.weight_decay", Some(t.weight_decay), Range::NonNegative),
        ("training.adam_beta1", Some(t.adam_beta1), Range::UnitOpen),
        ("training.adam_beta2", Some(t.adam_beta2), Range::UnitOpen),
        ("training.adam_epsilon", Some(t.adam_epsilon), Range::Positive),
        ("training.warmup_ratio", Some(t.warmup_ratio), Range::Unit),
        ("training.max_grad_norm", Some(t.max_grad_norm), Range::NonNegative),
        ("training.eval_steps", on(t.eval_steps), Range::AtLeastOne),
        ("training.logging_steps", n(t.logging_steps), Range::AtLeastOne),
        ("training.early_stopping_patience", on(t.early_stopping_patience), Range::AtLeastOne),
        ("training.early_stopping_threshold", Some(t.early_stopping_threshold), Range::NonNegative),
        ("training.save_total_limit", on(t.save_total_limit), Range::AtLeastOne),
        ("training.loss_scale", Some(t.loss_scale), Range::Positive),
        ("training.mlm_probability", Some(t.mlm_probability), Range::Fraction),
        ("data.augment.synonym_replacement", aug.map(|a| a.synonym_replacement), Range::Unit),
        ("data.augment.random_insertion", aug.map(|a| a.random_insertion), Range::Unit),
        ("data.augment.random_swap", aug.map(|a| a.random_swap), Range::Unit),
        ("data.augment.random_deletion", aug.map(|a| a.random_deletion), Range::Unit),
        ("data.augment.copies", aug.map(|a| a.copies as f64), Range::AtLeastOne),
    ]
}

/// Every enumerated string key: (key, value if set, the valid values).
fn enumerated_keys(c: &RunConfig) -> Vec<(&'static str, Option<&str>, &'static [&'static str])> {
    let t = &c.training;
    vec![
        ("training.lr_scheduler", Some(t.lr_scheduler.as_str()), &["linear", "cosine", "constant"]),
        ("training.eval_strategy", Some(t.eval_strategy.as_str()), &["epoch", "steps", "no"]),
        ("training.embedding_eval", t.embedding_eval.as_deref(), &["sts", "retrieval"]),
        ("model.pooling", c.model.pooling.as_deref(), &["cls", "mean"]),
        ("training.mnrl_partition", Some(t.mnrl_partition.as_str()), &["joint", "per_direction"]),
        ("training.batch_sampler", Some(t.batch_sampler.as_str()), &["default", "no_duplicates"]),
        ("training.precision", Some(t.precision.as_str()), &["f32", "bf16"]),
    ]
}

/// Checks every numeric and enumerated key against its range; the error names the key, the value
/// and what is valid.
fn check_ranges(c: &RunConfig) -> Result<()> {
    for (key, value, range) in numeric_keys(c) {
        if let Some(v) = value.filter(|&v| !range.holds(v)) {
            crate::bail!("`{key}` = {v} is out of range: it must be {}", range.describe());
        }
    }
    for (key, value, valid) in enumerated_keys(c) {
        if let Some(v) = value.filter(|v| !valid.contains(v)) {
            crate::bail!("`{key}` = \"{v}\" is not one of {}", valid.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", "));
        }
    }
    let directions = &c.training.mnrl_directions;
    const DIRECTIONS: [&str; 4] = ["query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc"];
    if let Some(d) = directions.iter().find(|d| !DIRECTIONS.contains(&d.as_str())) {
        crate::bail!("`training.mnrl_directions` = {directions:?}: \"{d}\" is not one of {}", DIRECTIONS.map(|d| format!("\"{d}\"")).join(", "));
    }
    if !directions.iter().any(|d| d == "query_to_doc") {
        crate::bail!("`training.mnrl_directions` = {directions:?} must be a list that includes \"query_to_doc\" (it holds each query's positive)");
    }
    if let Some(d) = directions.iter().enumerate().find_map(|(i, d)| directions[..i].contains(d).then_some(d)) {
        crate::bail!("`training.mnrl_directions` = {directions:?} lists \"{d}\" twice: each direction must be listed once");
    }
    if c.training.mnrl_partition == "per_direction" && directions.iter().any(|d| d == "query_to_query" || d == "doc_to_doc") {
        crate::bail!(
            "`training.mnrl_partition` = \"per_direction\" with `mnrl_directions` = {directions:?}: query_to_query and doc_to_doc hold no positive, so each must be in a joint softmax; the partition must be \"joint\" here (as in sentence-transformers)"
        );
    }
    if let Some(r) = c.output.report_to.iter().find(|r| !["tensorboard", "none"].contains(&r.as_str())) {
        crate::bail!("`output.report_to` = {:?}: \"{r}\" is not one of \"tensorboard\", \"none\"", c.output.report_to);
    }
    if c.training.batch_sampler == "no_duplicates" && c.training.group_by_length {
        crate::bail!("`training.batch_sampler` = \"no_duplicates\" and `training.group_by_length` = true both decide the batches; choose one");
    }
    if let Some(dims) = &c.training.matryoshka_dims {
        if dims.is_empty() || dims.contains(&0) {
            crate::bail!("`training.matryoshka_dims` = {dims:?}: give one or more sizes, each at least 1 (and at most the model's hidden size)");
        }
    }
    Ok(())
}

impl RunConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with(path, &[])
    }

    pub fn from_file_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string(), overrides)
    }

    pub fn from_toml(text: &str, source: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Value =
            toml::from_str(text).map_err(|e| crate::err!("{source}: invalid TOML: {}", e.message()))?;
        // The file's keys first, then the overrides' (so an error says which of them is wrong).
        check_keys(&value, source)?;
        apply_overrides(&mut value, overrides)?;
        check_keys(&value, "--set")?;
        let given = value.get("data").and_then(|d| d.get("max_length")).is_some();
        let mut config: RunConfig = value.clone().try_into().map_err(|e: toml::de::Error| {
            let message = plain_types(e.message());
            match failing_key(&value) {
                Some(key) => match overrides.iter().find(|o| o.split_once('=').is_some_and(|(p, _)| p.trim() == key)) {
                    Some(o) => crate::err!("--set {o}: `{key}`: {message}"),
                    None => crate::err!("{source}: `{key}`: {message}"),
                },
                None => crate::err!("{source}: {message}"),
            }
        })?;
        config.max_length_given = given;
        config.validate().with_context(|| format!("{source}"))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        let t = &self.training;
        if self.model.name.is_none() && self.model.config.is_none() {
            crate::bail!("[model] needs `name` (a pretrained model) or `config` (a config.json to train from scratch)");
        }
        if self.model.config.is_some() && self.model.tokenizer.is_none() && self.model.name.is_none() {
            crate::bail!("[model] trains from `config`: also set `tokenizer = \"path/tokenizer.json\"`");
        }
        if self.multi_label && self.task != Task::Classification {
            crate::bail!("multi_label applies to task = \"classification\" only");
        }
        check_ranges(self)?;
        if let Some(a) = &self.data.augment {
            a.validate(self.task == Task::TokenClassification)?;
        }
        if t.eval_strategy == "steps" && t.eval_steps.is_none() {
            crate::bail!("[training] eval_strategy = \"steps\" needs eval_steps");
        }
        if t.early_stopping_patience.is_some() && t.eval_strategy == "no" {
            crate::bail!("[training] early stopping needs evaluation: set eval_strategy");
        }
        if let Some(p) = &self.model.pooling {
            crate::model::Pooling::parse(p).context("[model] pooling")?;
        }
        self.model.new_tokens()?;
        if self.data.group_texts.is_some() && self.task != Task::Mlm {
            crate::bail!("[data] group_texts applies to task = \"mlm\" only");
        }
        if self.task == Task::Mlm {
            if let Some(p) = &self.data.text_pair_column {
                crate::bail!("task = \"mlm\" reads one text column (text_column); remove text_pair_column = \"{p}\"");
            }
            if self.data.augment.is_some() {
                crate::bail!("[data.augment] is for labelled tasks; task = \"mlm\" already masks the text anew every epoch");
            }
        }
        if self.task == Task::Embedding {
            if self.data.text_pair_column.is_none() {
                crate::bail!("task = \"embedding\" trains on pairs: set [data] text_column (anchor) and text_pair_column (positive)");
            }
            if let Some(e) = &t.embedding_eval {
                if e != "sts" && e != "retrieval" {
                    crate::bail!("[training] embedding_eval must be \"sts\" or \"retrieval\", got \"{e}\"");
                }
            }
            if t.eval_strategy != "no" && t.metric_for_best_model == "loss" && self.data.validation.is_some() {
                crate::bail!("[training] for embeddings set metric_for_best_model to spearman or pearson (sts), or mrr@10, ndcg@10, recall@1, recall@10 (retrieval)");
            }
        }
        Ok(())
    }

    /// How every command reads this config's targets: one label (or, with `multi_label`, a list of
    /// labels), a number, a tag per word; `None` for embedding runs (pairs, optional scores).
    pub fn target_kind(&self) -> Option<TargetKind> {
        Some(match (self.task, self.multi_label) {
            (Task::Classification, false) => TargetKind::Classification,
            (Task::Classification, true) => TargetKind::MultiLabel,
            (Task::Regression, _) => TargetKind::Regression,
            (Task::TokenClassification, _) => TargetKind::Tags,
            (Task::Embedding | Task::Mlm, _) => return None,
        })
    }

    /// Embedding runs: which evaluator validates them.
    pub fn embedding_eval(&self) -> &str {
        match (&self.training.embedding_eval, self.training.embedding_loss) {
            (Some(e), _) => e,
            (None, crate::tasks::embedding::EmbeddingLoss::Cosent) => "sts",
            (None, _) => "retrieval",
        }
    }

    /// The config as TOML (written into every run folder).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| crate::err!("cannot write config: {e}"))
    }

    /// Whether a larger best-model metric is better.
    pub fn greater_is_better(&self) -> bool {
        self.training
            .greater_is_better
            .unwrap_or(!matches!(self.training.metric_for_best_model.trim_start_matches("eval_"), "loss" | "mse" | "mae" | "rmse" | "perplexity"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let e = RunConfig::from_toml("[training]\nlearnig_rate = 1e-4\n", "x.toml", &[]).unwrap_err().chain();
        assert!(e.contains("unknown key `training.learnig_rate`") && e.contains("did you mean `learning_rate`"), "{e}");
        let e = RunConfig::from_toml("[trainig]\n", "x.toml", &[]).unwrap_err().chain();
        assert!(e.contains("did you mean `training`"), "{e}");
        let e = RunConfig::from_toml("[data]\ntrain = \"a.jsonl\"\ntext_colum = \"x\"\n", "x.toml", &[]).unwrap_err().chain();
        assert!(e.contains("text_column"), "{e}");
    }

    #[test]
    fn overrides_and_defaults() {
        let c = RunConfig::from_toml(
            "[model]\nname = \"m\"\n[data]\ntrain = \"a.jsonl\"\n",
            "x.toml",
            &["training.learning_rate=3e-5".into(), "training.group_by_length=true".into(), "output.dir=runs/x".into()],
        )
        .unwrap();
        assert_eq!(c.training.learning_rate, 3e-5);
        assert!(c.training.group_by_length);
        assert_eq!(c.output.dir, PathBuf::from("runs/x"));
        assert_eq!(c.training.batch_size, 8);
        assert!(!c.greater_is_better());
        // The written config reads back identically; it states max_length, so that now counts as given.
        assert!(!c.max_length_given);
        let again = RunConfig::from_toml(&c.to_toml().unwrap(), "again", &[]).unwrap();
        assert!(again.max_length_given);
        assert_eq!(RunConfig { max_length_given: false, ..again }, c);
    }

    #[test]
    fn the_template_and_shipped_configs_parse() {
        let t = RunConfig::from_toml(TEMPLATE, "template.toml", &[]).unwrap();
        assert_eq!(t.training, TrainingConfig { save_total_limit: Some(2), ..TrainingConfig::default() });
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.ends_with(".toml")).collect();
        names.sort();
        for name in ["quickstart.toml", "quickstart-augment.toml", "imdb.toml", "sst2-small.toml", "wnut17-ner.toml", "stsb-regression.toml", "stsb-embedding.toml", "multilabel.toml"] {
            assert!(names.iter().any(|n| n == name), "{name} is not shipped");
        }
        for name in &names {
            RunConfig::from_file(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {}", e.chain()));
        }
    }

    #[test]
    fn every_key_is_documented_in_configs_readme() {
        let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/README.md")).unwrap();
        let known = known_keys();
        for (section, value) in known.as_object().unwrap() {
            match value.as_object() {
                Some(keys) => {
                    assert!(doc.contains(&format!("## `[{section}]`")), "section {section} undocumented");
                    for key in keys.keys() {
                        assert!(doc.contains(&format!("| `{key}` |")), "key {section}.{key} undocumented");
                    }
                }
                None => assert!(doc.contains(&format!("| `{section}` |")), "key {section} undocumented"),
            }
        }
        assert!(doc.contains("### `[data.augment]`"), "section data.augment undocumented");
        for key in serde_json::to_value(crate::data::augment::AugmentConfig::default()).unwrap().as_object().unwrap().keys() {
            assert!(doc.contains(&format!("| `{key}` |")), "key data.augment.{key} undocumented");
        }
    }

    #[test]
    fn bad_values_are_explained() {
        let e = RunConfig::from_toml("[model]\nname = \"m\"\n[data]\ntrain = \"a.jsonl\"\n[training]\nlr_scheduler = \"exp\"\n", "x.toml", &[]).unwrap_err().chain();
        assert!(e.contains("lr_scheduler"), "{e}");
        let e = RunConfig::from_toml("[data]\ntrain = \"a.jsonl\"\n[training]\nbatch_size = \"big\"\n", "x.toml", &[]).unwrap_err().chain();
        assert!(e.contains("`training.batch_size`: invalid type"), "{e}");
        // A wrong type names its key, however deep.
        let e = RunConfig::from_toml("[model]\nname = \"m\"\nadd_tokens = \"zebra\"\n[data]\ntrain = \"a.jsonl\"\n", "x.toml", &[]).unwrap_err().chain();
        assert!(e.contains("`model.add_tokens`: invalid type"), "{e}");
        let e = RunConfig::from_toml("[data]\ntrain = \"a.jsonl\"\n[data.augment]\ncopies = \"two\"\n", "x.toml", &[]).unwrap_err().chain();
        assert!(e.contains("`data.augment.copies`: invalid type"), "{e}");
        let e = RunConfig::from_toml("", "x.toml", &[]).unwrap_err().chain();
        assert!(e.contains("train"), "{e}");
    }

    /// Every numeric and enumerated key: a value out of range is refused when the config is read,
    /// and the error names the key, the value and the valid range; values on the edge are accepted.
    #[test]
    fn every_numeric_and_enumerated_key_is_range_checked() {
        let base = "[model]\nname = \"m\"\n[data]\ntrain = \"a.jsonl\"\n";
        // (key, refused values, accepted values)
        let table: &[(&str, &[&str], &[&str])] = &[
            ("model.classifier_dropout", &["1", "1.5", "-0.1", "nan"], &["0", "0.99"]),
            ("data.max_length", &["0", "1"], &["2", "8192"]),
            ("training.learning_rate", &["-1e-5", "inf", "nan"], &["0", "1e-9"]),
            ("training.batch_size", &["0"], &["1"]),
            ("training.eval_batch_size", &["0"], &["1"]),
            ("training.gradient_accumulation_steps", &["0"], &["1"]),
            ("training.epochs", &["0", "-1", "inf"], &["0.5"]),
            ("training.max_steps", &["0"], &["1"]),
            ("training.weight_decay", &["-0.01", "inf"], &["0", "0.1"]),
            ("training.adam_beta1", &["1", "1.1", "-0.1"], &["0", "0.9"]),
            ("training.adam_beta2", &["1", "2"], &["0.999"]),
            ("training.adam_epsilon", &["0", "-1e-8"], &["1e-8"]),
            ("training.warmup_ratio", &["1.01", "-0.1"], &["0", "0.5", "1"]),
            ("training.max_grad_norm", &["-1", "nan"], &["0", "1"]),
            ("training.eval_steps", &["0"], &["1"]),
            ("training.logging_steps", &["0"], &["1"]),
            ("training.early_stopping_patience", &["0"], &["1"]),
            ("training.early_stopping_threshold", &["-0.1"], &["0"]),
            ("training.save_total_limit", &["0"], &["1"]),
            ("training.loss_scale", &["0", "-20"], &["20"]),
            ("training.mlm_probability", &["0", "1", "-0.1"], &["0.15", "0.3"]),
            ("data.augment.synonym_replacement", &["1.5", "-0.1", "nan"], &["0", "1"]),
            ("data.augment.random_insertion", &["2", "-1"], &["0.1"]),
            ("data.augment.random_swap", &["1.01"], &["0.1"]),
            ("data.augment.random_deletion", &["-0.5"], &["0.1", "1"]),
            ("data.augment.copies", &["0"], &["1", "4"]),
            ("training.lr_scheduler", &["\"exp\"", "\"Linear\""], &["\"cosine\"", "\"constant\""]),
            ("training.eval_strategy", &["\"epochs\""], &["\"no\""]),
            ("training.embedding_eval", &["\"mteb\""], &["\"sts\""]),
            ("model.pooling", &["\"max\""], &["\"mean\""]),
            ("training.matryoshka_dims", &["[]", "[0, 64]"], &["[64, 32]"]),
            ("training.mnrl_partition", &["\"both\""], &["\"per_direction\""]),
            ("training.batch_sampler", &["\"nodup\""], &["\"no_duplicates\""]),
            ("training.precision", &["\"fp16\"", "\"bfloat16\""], &["\"bf16\"", "\"f32\""]),
            ("training.mnrl_directions", &["[\"doc_to_query\"]", "[\"query_to_doc\", \"sideways\"]", "[\"query_to_doc\", \"query_to_doc\"]"], &["[\"query_to_doc\", \"doc_to_query\"]"]),
        ];
        let probe = RunConfig::from_toml(base, "x.toml", &[]).unwrap();
        for (key, _, _) in numeric_keys(&probe) {
            assert!(table.iter().any(|(k, _, _)| *k == key), "{key} is range-checked but not in this test's table");
        }
        for (key, _, _) in enumerated_keys(&probe) {
            assert!(table.iter().any(|(k, _, _)| *k == key), "{key} is checked but not in this test's table");
        }
        for (key, refused, accepted) in table {
            // eval_steps and patience need the settings they belong with to be read at all.
            let mut extra: Vec<String> = Vec::new();
            if *key == "training.early_stopping_patience" {
                extra.push("training.eval_strategy=\"epoch\"".into());
            }
            if key.starts_with("data.augment.") {
                // A section that sets an operation, with the file its synonyms come from.
                extra.push("data.augment.random_insertion=0.1".into());
                extra.push("data.augment.synonyms=\"s.tsv\"".into());
            }
            for v in *refused {
                let mut sets = extra.clone();
                sets.push(format!("{key}={v}"));
                let e = RunConfig::from_toml(base, "x.toml", &sets).map(|_| ()).unwrap_err().chain();
                // Numbers are shown as Rust prints them (`-1e-5` as -0.00001).
                let shown = match v.parse::<f64>() {
                    Ok(x) => format!("{x}").to_lowercase(),
                    Err(_) => v.trim_matches('"').to_lowercase(),
                };
                assert!(e.contains(key.rsplit('.').next().unwrap()), "{key} = {v}: {e}");
                assert!(e.to_lowercase().contains(&shown) || *key == "training.matryoshka_dims", "{key} = {v}: the value is not named: {e}");
                assert!(e.contains("must be") || e.contains("is not one of") || e.contains("at least"), "{key} = {v}: no valid range: {e}");
            }
            for v in *accepted {
                let mut sets = extra.clone();
                sets.push(format!("{key}={v}"));
                if let Err(e) = RunConfig::from_toml(base, "x.toml", &sets) {
                    panic!("{key} = {v} refused: {}", e.chain());
                }
            }
        }
    }
}
