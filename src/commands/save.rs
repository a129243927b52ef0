//! `modernft save`: a clean, portable model folder that transformers (`--format hf`) or
//! sentence-transformers (`--format sentence-transformers`) load as they are. Training state stays
//! behind; a generated README.md model card says what the model is and how it was made.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{json, Value};

use crate::error::Result;
use crate::model::{load_pretrained, HeadKind, LoadOptions, ModelFiles, ModernBertConfig, Pooling};
use crate::model::save::{write_folder_atomic, ModelFolder};
use crate::model::save::{read_prompts, write_sentence_transformers_files, SentenceModules, PROMPTS_FILE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Hf,
    SentenceTransformers,
}

pub struct SaveOptions {
    pub format: ExportFormat,
    pub dtype: DType,
    /// sentence-transformers: pooling [default: the model's classifier_pooling].
    pub pooling: Option<Pooling>,
    /// sentence-transformers: add a Normalize module.
    pub normalize: bool,
    pub overwrite: bool,
}

/// Exports the model at `src` (run folder, checkpoint, model folder or hub id) into `out`.
pub fn save(src: &str, out: &Path, opts: &SaveOptions) -> Result<()> {
    if out.exists() && !opts.overwrite {
        crate::bail!("{} already exists; pass --overwrite to replace it", out.display());
    }
    let files = ModelFiles::resolve(src)?;
    let config = ModernBertConfig::from_file(&files.config)?;
    let weights = crate::model::Weights::open(&files.weights)?;
    // Export what the checkpoint holds: a classifier when it has one, else the encoder.
    let has_head = weights.contains("classifier.weight");
    let token_model = crate::tasks::kind_of(&config) == crate::data::TargetKind::Tags;
    // A masked-LM (a `task = "mlm"` run, or a hub checkpoint as ModernBERT is published) keeps its
    // head and decoder in the transformers layout.
    let masked_lm = !has_head && config.architectures.iter().any(|a| a == "ModernBertForMaskedLM") && weights.contains("head.dense.weight");
    let kind = match (opts.format, has_head) {
        (ExportFormat::Hf, true) if token_model => HeadKind::Token,
        (ExportFormat::Hf, true) => HeadKind::Sequence,
        (ExportFormat::Hf, false) if masked_lm => HeadKind::MaskedLm,
        _ => HeadKind::None,
    };
    let (config, loaded) = load_pretrained(&files, kind, &LoadOptions::default()).map(|(_, l)| (config, l))?;
    let tokenizer = files.tokenizer()?.to_path_buf();
    let run_dir = run_folder_of(&files);
    match opts.format {
        ExportFormat::Hf => {
            let mut config = config;
            if !has_head && !masked_lm {
                config.architectures = vec!["ModernBertModel".into()];
            }
            write_folder_atomic(out, |tmp| {
                ModelFolder { config: &config, tensors: &loaded.tensors, tokenizer: &tokenizer, dtype: Some(opts.dtype) }.write_into(tmp)?;
                std::fs::write(tmp.join("README.md"), model_card(&config, run_dir.as_deref(), src, opts))?;
                Ok(())
            })
        }
        ExportFormat::SentenceTransformers => {
            // sentence-transformers loads the encoder with AutoModel: a bare ModernBertModel.
            let encoder: Vec<(String, Tensor)> = loaded
                .tensors
                .iter()
                .filter_map(|(n, t)| n.strip_prefix("model.").map(|n| (n.to_string(), t.clone())))
                .collect();
            let mut config = config;
            config.architectures = vec!["ModernBertModel".into()];
            // The source's settings (a sentence-transformers folder's modules, a run's trained
            // length), flags first: resolved as `embed` resolves them.
            let asked = crate::model::Asked {
                pooling: opts.pooling.map(|p| (p, "--pooling".to_string())),
                normalize: opts.normalize.then(|| (true, "--normalize".to_string())),
                prefix: None,
                max_length: match (&files.sentence, &run_dir) {
                    (None, Some(run)) => crate::config::RunConfig::from_file(&run.join("config.toml"))
                        .ok()
                        .map(|c| (c.data.max_length.min(config.max_position_embeddings), "the run's [data] max_length".to_string())),
                    _ => None,
                },
            };
            let setup = files.embedding_setup(&config, &asked)?;
            let source_dir = Path::new(&files.origin);
            let prompts = if source_dir.join(PROMPTS_FILE).is_file() { read_prompts(source_dir)? } else { read_prompts(&tokenizer)? };
            let modules = SentenceModules { pooling: setup.pooling, normalize: setup.normalize, max_seq_length: setup.max_length, prompts };
            write_folder_atomic(out, |tmp| {
                ModelFolder { config: &config, tensors: &encoder, tokenizer: &tokenizer, dtype: Some(opts.dtype) }.write_into(tmp)?;
                write_sentence_transformers_files(tmp, &config, &modules)?;
                std::fs::write(tmp.join("README.md"), model_card(&config, run_dir.as_deref(), src, opts))?;
                Ok(())
            })
        }
    }
}

/// The run folder a model came from, when it came from one (for the model card).
fn run_folder_of(files: &ModelFiles) -> Option<std::path::PathBuf> {
    let dir = files.config.parent()?;
    [dir.to_path_buf(), dir.parent()?.to_path_buf()].into_iter().find(|d| d.join("config.toml").is_file() && d.join("metrics.jsonl").is_file())
}

fn model_card(config: &ModernBertConfig, run: Option<&Path>, src: &str, opts: &SaveOptions) -> String {
    let mut card = String::from("---\nlibrary_name: transformers\ntags:\n- modernbert\n- modernft\n");
    if opts.format == ExportFormat::SentenceTransformers {
        card.push_str("- sentence-transformers\npipeline_tag: sentence-similarity\n");
    } else if config.architectures.iter().any(|a| a.contains("TokenClassification")) {
        card.push_str("pipeline_tag: token-classification\n");
    } else if config.architectures.iter().any(|a| a.contains("Classification")) {
        card.push_str("pipeline_tag: text-classification\n");
    }
    let run_cfg = run.and_then(|r| crate::config::RunConfig::from_file(&r.join("config.toml")).ok());
    if let Some(base) = run_cfg.as_ref().and_then(|c| c.model.name.clone()) {
        card.push_str(&format!("base_model: {base}\n"));
    }
    card.push_str("---\n\n");
    card.push_str(&format!("# {}\n\n", Path::new(src).file_name().and_then(|n| n.to_str()).unwrap_or(src)));
    card.push_str(&format!(
        "A ModernBERT model ({} layers, hidden size {}, {} attention heads) exported by modernft {} from `{src}`.\n\n",
        config.num_hidden_layers, config.hidden_size, config.num_attention_heads, env!("CARGO_PKG_VERSION")
    ));
    if config.architectures.iter().any(|a| a.contains("Classification")) {
        card.push_str(&format!("Task: `{}` with labels: {}.\n\n", config.problem_type.as_deref().unwrap_or("classification"), config.id2label.join(", ")));
    }
    if let Some(cfg) = run_cfg {
        let t = &cfg.training;
        card.push_str("## Training\n\n");
        card.push_str(&format!(
            "- base model: {}\n- data: {}{}\n- {}\n- learning rate {}, batch size {} (× {} accumulation), weight decay {}, {} schedule, warm-up {} steps / ratio {}, max grad norm {}, seed {}\n- max length {} tokens\n\n",
            cfg.model.name.clone().or(cfg.model.config.as_ref().map(|p| format!("from scratch ({})", p.display()))).unwrap_or_default(),
            crate::data::dataset::describe(&cfg.data),
            run.map(splits_line).unwrap_or_default(),
            run.map(|r| what_ran(r, t)).unwrap_or_else(|| planned(t)),
            t.learning_rate, t.batch_size, t.gradient_accumulation_steps,
            t.weight_decay, t.lr_scheduler, t.warmup_steps, t.warmup_ratio, t.max_grad_norm, t.seed, cfg.data.max_length
        ));
        if let Some(run) = run {
            let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
            let finals: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["type"] == "final").collect();
            if !finals.is_empty() {
                card.push_str("## Results\n\n| split | metric | value |\n|---|---|---|\n");
                for f in finals {
                    if let Some(obj) = f.as_object() {
                        for (k, v) in obj.iter().filter(|(k, _)| !["type", "split", "step"].contains(&k.as_str())) {
                            card.push_str(&format!("| {} | {k} | {:.4} |\n", f["split"].as_str().unwrap_or(""), v.as_f64().unwrap_or(f64::NAN)));
                        }
                    }
                }
                card.push('\n');
            }
        }
    }
    card.push_str("## Use\n\n```python\n");
    if opts.format == ExportFormat::SentenceTransformers {
        card.push_str("from sentence_transformers import SentenceTransformer\nmodel = SentenceTransformer(\"path/to/this/folder\")\nvectors = model.encode([\"a sentence\"])\n");
    } else {
        card.push_str("from transformers import AutoModelForSequenceClassification, AutoTokenizer\nmodel = AutoModelForSequenceClassification.from_pretrained(\"path/to/this/folder\")\ntokenizer = AutoTokenizer.from_pretrained(\"path/to/this/folder\")\n");
    }
    card.push_str("```\n\nor with modernft: `modernft predict --model path/to/this/folder` / `modernft embed --model path/to/this/folder`.\n");
    card
}

fn trainer_state(run: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(run.join("trainer_state.json")).ok()?).ok()
}

fn planned(t: &crate::config::TrainingConfig) -> String {
    match t.max_steps {
        Some(m) => format!("planned: {m} optimizer steps"),
        None => format!("planned: {} epochs", t.epochs),
    }
}

/// What the run actually did (from its trainer_state.json), not what its config asked for.
fn what_ran(run: &Path, t: &crate::config::TrainingConfig) -> String {
    let Some(s) = trainer_state(run).filter(|s| s["finished"] == json!(true)) else {
        return format!("{} (the run has not finished)", planned(t));
    };
    let mut line = format!(
        "trained {} optimizer steps ({:.2} epochs)",
        s["global_step"].as_u64().unwrap_or(0),
        s["epochs"].as_f64().unwrap_or(f64::NAN)
    );
    if s["stopped_early"] == json!(true) {
        line.push_str(&format!(", stopped early (of {} planned)", s["max_steps"].as_u64().unwrap_or(0)));
    }
    if let (Some(best), Some(metric)) = (s["best_model_checkpoint"].as_str(), s["metric_for_best_model"].as_str()) {
        line.push_str(&format!("; the best {metric} was at {best}, whose weights these are"));
    }
    line
}

/// Row counts of the splits, and where the validation split came from.
fn splits_line(run: &Path) -> String {
    let Some(s) = trainer_state(run) else { return String::new() };
    let mut line = format!("\n- rows: {} training", s["train_rows"].as_u64().unwrap_or(0));
    if let Some(v) = s["validation_rows"].as_u64() {
        match s["validation_fraction"].as_f64() {
            Some(f) => line.push_str(&format!(", {v} validation (carved out of the training file: {:.0}%, stratified)", f * 100.0)),
            None => line.push_str(&format!(", {v} validation")),
        }
    }
    if let Some(t) = s["test_rows"].as_u64() {
        line.push_str(&format!(", {t} test"));
    }
    line
}

/// Parses `--dtype`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    Ok(match s {
        "f32" | "float32" => DType::F32,
        "f16" | "float16" => DType::F16,
        "bf16" | "bfloat16" => DType::BF16,
        other => crate::bail!("--dtype {other}: use f32, f16 or bf16"),
    })
}
