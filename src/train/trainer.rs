//! The training loop: what `modernft train` runs.
//!
//! ```text
//! prepare:  config → tokenizer → data (labels, splits) → model (+ fresh head) → AdamW, schedule, sampler
//! loop:     for each optimizer step:
//!             for each micro-batch of the step: forward (dropout on) → loss / micro-batches → backward
//!             clip the global gradient norm → AdamW at the scheduled rate
//!             log · evaluate (early stopping, best model) · checkpoint · stop on Ctrl-C
//! finish:   restore the best weights → final evaluation → model/ folder, plots, summary
//! ```
//! A run is exactly resumable: the checkpoint holds the weights, the AdamW moments, the step, the
//! sampler position and the dropout RNG, and everything else is a function of those.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::config::RunConfig;
use crate::data::{load_splits, Batch, Dataset, Sampler, SamplerState, Splits, TargetKind, TextEncoder, TokenStore};
use crate::error::{Context, Result};
use crate::model::{build, HeadKind, LoadOptions, Loaded, ModelFiles, Mode, ModernBertConfig, Pooling, Weights};
use crate::report;
use crate::rng::Rng;
use crate::tasks::{self, Evaluation};
use crate::train::checkpoint::{self, list_checkpoints, read_state, ModelFolder, TrainingState};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::schedule::Schedule;

/// Set by the Ctrl-C handler; the loop checkpoints and stops at the next step boundary.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub struct TrainOptions {
    pub device: Device,
    /// Draw progress bars (the CLI sets this when stderr is a terminal).
    pub progress: bool,
}

/// What a finished run reports.
pub struct Summary {
    pub run_dir: PathBuf,
    pub model_dir: PathBuf,
    pub steps: usize,
    pub epochs: f64,
    pub train_seconds: f64,
    pub tokens_per_second: f64,
    pub best: Option<(String, f64, String)>,
    pub validation: Option<Evaluation>,
    pub test: Option<Evaluation>,
    pub stopped_early: bool,
    pub label_names: Vec<String>,
}

/// Everything a run needs, prepared before the first step.
struct Run {
    cfg: RunConfig,
    dir: PathBuf,
    kind: TargetKind,
    config: ModernBertConfig,
    loaded: Loaded,
    splits: Splits,
    tokenizer: PathBuf,
    sampler: Sampler,
    schedule: Schedule,
    optimizer: AdamW,
    ga: usize,
    total_steps: usize,
    micro_per_epoch: usize,
    /// Set for `task = "embedding"`: contrastive training on pooled vectors.
    embedding: Option<EmbeddingRun>,
}

struct EmbeddingRun {
    loss: crate::tasks::embedding::EmbeddingLoss,
    scale: f64,
    dims: Option<Vec<usize>>,
    pooling: Pooling,
    normalize: bool,
    mnrl: crate::tasks::embedding::MnrlOptions,
    /// `sts` or `retrieval`.
    eval: String,
}

/// Starts a new run in `cfg.output.dir` (which must not exist, or be empty). Everything that can be
/// checked (files, columns, labels, the model, the best-model metric) is checked before the folder
/// is created; a run that fails before its first checkpoint removes the folder it created, so the
/// corrected rerun is not refused.
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<Summary> {
    let dir = cfg.output.dir.clone();
    let existed = dir.exists();
    let mut run = prepare(cfg, &dir, None, &opts.device)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the run folder {}", dir.display()))?;
    let started = (|| -> Result<()> {
        checkpoint::write_atomic(&dir.join("config.toml"), run.cfg.to_toml()?.as_bytes())?;
        checkpoint::write_atomic(&dir.join("metrics.jsonl"), b"")?;
        install_tokenizer(&mut run)
    })();
    let state = TrainingState {
        step: 0,
        sampler: SamplerState::default(),
        rng: Rng::new(cfg.training.seed ^ 0x5EED).state(),
        best_metric: None,
        best_checkpoint: None,
        evals_without_improvement: 0,
        tokens_seen: 0,
        train_seconds: 0.0,
    };
    let result = started.and_then(|()| run_loop(run, state, opts));
    match result {
        Err(e) if !existed && list_checkpoints(&dir).map(|c| c.is_empty()).unwrap_or(false) => {
            // Nothing was saved: leave no folder that would block the rerun.
            let _ = std::fs::remove_dir_all(&dir);
            Err(e.wrap(format!("run {} stopped before its first checkpoint (its folder was removed)", dir.display())))
        }
        other => other,
    }
}

/// Whether the run in `dir` finished (its model exported, its final evaluation logged).
pub fn is_complete(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("trainer_state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| v["finished"] == json!(true))
        && dir.join("model").join("model.safetensors").is_file()
}

/// What `--resume PATH` names: a run folder (its latest checkpoint) or one `checkpoint-N` folder
/// inside a run folder. Returns the run folder and the chosen step, if one was chosen.
pub fn resume_target(path: &Path) -> Result<(PathBuf, Option<usize>)> {
    let step = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("checkpoint-")).and_then(|s| s.parse::<usize>().ok());
    match (step, path.parent()) {
        (Some(step), Some(run)) if !path.join("config.toml").is_file() => {
            let run = if run.as_os_str().is_empty() { Path::new(".") } else { run };
            if !run.join("config.toml").is_file() {
                crate::bail!("{} is not inside a modernft run folder ({} has no config.toml)", path.display(), run.display());
            }
            Ok((run.to_path_buf(), Some(step)))
        }
        _ => Ok((path.to_path_buf(), None)),
    }
}

/// Continues the run in `dir` from its latest checkpoint (or from checkpoint-`from`), with the
/// config it was started with. A checkpoint that cannot be read is refused with its name, and the
/// next-older one is named. Resuming from an older checkpoint moves the later ones into
/// `superseded/` (kept, out of the way of the steps that will be trained again).
pub fn resume(dir: &Path, from: Option<usize>, opts: &TrainOptions) -> Result<Summary> {
    let cfg = RunConfig::from_file(&dir.join("config.toml"))
        .with_context(|| format!("{} is not a modernft run folder", dir.display()))?;
    checkpoint::remove_partial_writes(dir)?;
    let mut all = list_checkpoints(dir)?;
    let mut later: Vec<PathBuf> = Vec::new();
    if let Some(step) = from {
        if !all.iter().any(|(s, _)| *s == step) {
            let have: Vec<String> = all.iter().map(|(s, _)| format!("checkpoint-{s}")).collect();
            crate::bail!(
                "{} has no complete checkpoint-{step} (complete ones: {})",
                dir.display(),
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            );
        }
        let keep = all.partition_point(|(s, _)| *s <= step);
        later = all.split_off(keep).into_iter().map(|(_, p)| p).collect();
    }
    let (_, latest) = all
        .pop()
        .with_context(|| format!("{} has no checkpoint to resume from (checkpoints are written at each evaluation and every save_steps)", dir.display()))?;
    let older = all.pop().map(|(_, p)| p);
    let refuse = |e: crate::Error| {
        let hint = match &older {
            Some(p) => format!("; the next-older checkpoint is {p}: resume from it with `modernft train --resume {p}`", p = p.display()),
            None => "; there is no older checkpoint: start the run again with --overwrite".to_string(),
        };
        e.wrap(format!("checkpoint {} is damaged and cannot be resumed from{hint}", latest.display()))
    };
    let state = read_state(&latest).map_err(refuse)?;
    let mut run = prepare(&cfg, dir, Some(&latest), &opts.device).map_err(refuse)?;
    let moments = candle_core::safetensors::load(latest.join(checkpoint::OPTIMIZER_STATE), &opts.device)
        .with_context(|| format!("cannot read {}", latest.join(checkpoint::OPTIMIZER_STATE).display()))
        .map_err(refuse)?;
    for p in &mut run.optimizer.params {
        let m = moments
            .get(&p.name)
            .with_context(|| format!("{}: no optimizer state for {}", latest.display(), p.name))
            .map_err(refuse)?;
        if m.dims() != p.moments.dims() || m.dtype() != p.moments.dtype() {
            return Err(refuse(crate::err!("optimizer state for {} is {:?} {:?}, expected {:?} {:?}", p.name, m.dtype(), m.dims(), p.moments.dtype(), p.moments.dims())));
        }
        p.moments = m.contiguous()?;
    }
    run.optimizer.step = state.step as u64;
    install_tokenizer(&mut run)?;
    // Metrics logged after the checkpoint are replayed by the resumed run; lines the log cannot
    // parse are kept as they are (never silently dropped).
    let path = dir.join("metrics.jsonl");
    let log = match std::fs::read_to_string(&path) {
        Ok(log) => log,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(crate::Error::from(e).wrap(format!("cannot read {}; fix or move it aside, then resume again", path.display()))),
    };
    let kept: String = log
        .lines()
        .filter(|l| match serde_json::from_str::<Value>(l).ok().map(|v| v["step"].as_u64()) {
            Some(Some(s)) => s as usize <= state.step,
            _ => !l.trim().is_empty(),
        })
        .map(|l| format!("{l}\n"))
        .collect();
    checkpoint::write_atomic(&path, kept.as_bytes())?;
    if !later.is_empty() {
        let aside = dir.join("superseded");
        std::fs::create_dir_all(&aside).with_context(|| format!("cannot create {}", aside.display()))?;
        for ck in &later {
            let name = ck.file_name().unwrap_or_default();
            let mut to = aside.join(name);
            for n in 1.. {
                if !to.exists() {
                    break;
                }
                to = aside.join(format!("{}.{n}", name.to_string_lossy()));
            }
            std::fs::rename(ck, &to).with_context(|| format!("cannot move {} to {}", ck.display(), to.display()))?;
            eprintln!("note: {} comes after the chosen checkpoint; moved to {}", ck.display(), to.display());
        }
    }
    eprintln!("resuming {} from {} (step {})", dir.display(), latest.display(), state.step);
    run_loop(run, state, opts)
}

/// The run keeps its own copy of the tokenizer (checkpoints come and go, the run folder stays);
/// from here on the run's files name that copy.
fn install_tokenizer(run: &mut Run) -> Result<()> {
    let copy = run.dir.join("tokenizer").join("tokenizer.json");
    if !copy.is_file() {
        let source = run.tokenizer.clone();
        let src_dir = source.parent().unwrap_or(Path::new(".")).to_path_buf();
        checkpoint::write_folder_atomic(&run.dir.join("tokenizer"), |tmp| {
            std::fs::copy(&source, tmp.join("tokenizer.json")).with_context(|| format!("cannot copy {}", source.display()))?;
            // With a sentence-transformers folder's prompts, which its export keeps.
            for side in ["tokenizer_config.json", "special_tokens_map.json", "config_sentence_transformers.json"] {
                if src_dir.join(side).is_file() {
                    std::fs::copy(src_dir.join(side), tmp.join(side))?;
                }
            }
            Ok(())
        })?;
    }
    run.tokenizer = copy;
    Ok(())
}

/// `metric_for_best_model` names a metric this task's evaluation reports (checked before any
/// work, not at the first evaluation).
fn check_best_metric(cfg: &RunConfig, kind: TargetKind, embedding: bool, splits: &Splits) -> Result<()> {
    if splits.validation.is_none() || cfg.training.eval_strategy == "no" {
        return Ok(());
    }
    let available: &[&str] = match (embedding, cfg.embedding_eval()) {
        (true, "sts") => &["spearman", "pearson"],
        (true, _) => &["mrr@10", "ndcg@10", "recall@1", "recall@10"],
        (false, _) => tasks::metric_names(kind),
    };
    let metric = cfg.training.metric_for_best_model.trim_start_matches("eval_");
    if !available.contains(&metric) {
        crate::bail!("[training] metric_for_best_model = \"{metric}\" is not computed for this task; use one of: {}", available.join(", "));
    }
    Ok(())
}

/// `cfg` with a sentence-transformers folder's pooling, normalisation and max_seq_length filled in
/// where the config does not set them ([`ModelFiles::embedding_setup`], as `embed` and `eval` read
/// the folder).
fn resolve_sentence_settings(cfg: &RunConfig, sentence: Option<&ModelFiles>, config: &ModernBertConfig) -> Result<RunConfig> {
    let mut resolved = cfg.clone();
    let Some(files) = sentence else { return Ok(resolved) };
    let asked = crate::model::Asked {
        pooling: cfg.model.pooling.as_deref().map(Pooling::parse).transpose()?.map(|p| (p, "[model] pooling".to_string())),
        normalize: cfg.model.normalize.map(|n| (n, "[model] normalize".to_string())),
        prefix: None,
        max_length: cfg.max_length_given.then(|| (cfg.data.max_length, "[data] max_length".to_string())),
    };
    let setup = files.embedding_setup(config, &asked)?;
    if let Some(prompt) = files.sentence.as_ref().and_then(|s| s.default_prompt.as_ref()) {
        eprintln!(
            "note: {}'s default prompt {prompt:?} is not prepended to training texts (as in sentence-transformers' trainer); the exported model keeps it",
            files.origin
        );
    }
    resolved.model.pooling = Some(setup.pooling.as_str().to_string());
    resolved.model.normalize = Some(setup.normalize);
    resolved.data.max_length = setup.max_length;
    resolved.max_length_given = true;
    Ok(resolved)
}

/// Loads and checks everything a run needs; writes nothing.
fn prepare(cfg: &RunConfig, dir: &Path, checkpoint: Option<&Path>, device: &Device) -> Result<Run> {
    // Embedding runs read scores (CoSENT, STS) as regression targets.
    let kind = cfg.target_kind().unwrap_or(TargetKind::Regression);
    // Model config, weights and tokenizer: from the checkpoint when resuming, else from [model].
    let (mut config, weights, tokenizer, sentence) = match (checkpoint, &cfg.model.config, &cfg.model.name) {
        (Some(ck), _, _) => {
            let files = ModelFiles::from_dir(ck)?;
            (ModernBertConfig::from_file(&files.config)?, Some(Weights::open(&files.weights)?), files.tokenizer()?.to_path_buf(), None)
        }
        (None, Some(path), _) => {
            let tok = cfg.model.tokenizer_source()?.resolve()?;
            (ModernBertConfig::from_file(path)?, None, tok, None)
        }
        (None, None, Some(name)) => {
            let files = ModelFiles::resolve(name)?;
            let tok = match &cfg.model.tokenizer {
                Some(t) => t.clone(),
                None => files.tokenizer()?.to_path_buf(),
            };
            let config = ModernBertConfig::from_file(&files.config)?;
            let weights = Weights::open(&files.weights)?;
            (config, Some(weights), tok, files.sentence.is_some().then_some(files))
        }
        (None, None, None) => crate::bail!("[model] needs `name` or `config`"),
    };
    // A sentence-transformers folder's settings are what trains (what the config says explicitly
    // first); the run's config records the outcome, so a resumed run trains the same way.
    let cfg = &resolve_sentence_settings(cfg, sentence.as_ref(), &config)?;
    // The one max_length rule (as eval, embed and predict): the config's, else the model's positions.
    // What trains is what the run folder records (and what the export's max_seq_length says).
    let mut cfg = cfg.clone();
    let asked = cfg.max_length_given.then(|| (cfg.data.max_length, "[data] max_length".to_string()));
    cfg.data.max_length = crate::model::max_length_rule(asked.as_ref(), None, config.max_position_embeddings)?;
    cfg.max_length_given = true;
    let cfg = &cfg;
    let data_cfg = &cfg.data;
    let encoder = TextEncoder::from_file(&tokenizer, data_cfg.max_length)?.refusing_longer(!data_cfg.truncate);
    let vocab = encoder.tokenizer().get_vocab_size(true);
    if vocab > config.vocab_size {
        crate::bail!("the tokenizer has {vocab} tokens but the model's vocab_size is {}; use the model's own tokenizer", config.vocab_size);
    }
    let embedding = cfg.task == crate::config::Task::Embedding;
    let splits = if embedding { embedding_splits(cfg, data_cfg, &encoder)? } else { load_splits(data_cfg, &encoder, Some(kind))? };
    if checkpoint.is_none() {
        for ds in [Some(&splits.train), splits.validation.as_ref(), splits.test.as_ref()].into_iter().flatten() {
            if let Some(note) = encoder.truncation_note(ds.truncated, ds.len(), &format!("{} rows", ds.name), "see [data] max_length; truncate = false refuses them") {
                eprintln!("{note}");
            }
        }
    }
    let names = match (&splits.labels, kind) {
        _ if embedding => config.id2label.clone(),
        (_, TargetKind::Regression) => vec!["LABEL_0".to_string()],
        (Some(l), _) => l.names().to_vec(),
        (None, _) => crate::bail!("no labels were read"),
    };
    if checkpoint.is_some() && config.id2label != names {
        crate::bail!("the data's labels {:?} differ from the checkpoint's {:?}; resume with the data the run started with", names, config.id2label);
    }
    config.set_labels(names);
    if embedding {
        config.architectures = vec!["ModernBertModel".to_string()];
    } else {
        config.problem_type = tasks::problem_type(kind).map(str::to_string);
        config.architectures = vec![match kind {
            TargetKind::Tags => "ModernBertForTokenClassification",
            _ => "ModernBertForSequenceClassification",
        }
        .to_string()];
    }
    if let Some(p) = &cfg.model.pooling {
        config.classifier_pooling = Pooling::parse(p)?;
    }
    if let Some(d) = cfg.model.classifier_dropout {
        config.classifier_dropout = d;
    }
    let opts = LoadOptions {
        dtype: DType::F32,
        device: device.clone(),
        trainable: true,
        seed: cfg.training.seed,
        reinit_mismatched_classifier: true,
    };
    let head = match kind {
        _ if embedding => HeadKind::None,
        TargetKind::Tags => HeadKind::Token,
        _ => HeadKind::Sequence,
    };
    let loaded = build(&config, weights.as_ref(), head, &opts)
        .with_context(|| format!("cannot build the model for {}", dir.display()))?;
    if !loaded.initialised.is_empty() && checkpoint.is_none() {
        let all = loaded.initialised.len() == loaded.tensors.len();
        if all {
            eprintln!("note: training from scratch: all {} tensors are freshly initialised", loaded.initialised.len());
        } else {
            let replaced = weights.as_ref().is_some_and(|w| w.contains("classifier.weight"));
            let why = if replaced { "the checkpoint's classifier has a different label count; re-initialised" } else { "not in the checkpoint, freshly initialised" };
            eprintln!("note: {why}: {}", loaded.initialised.join(", "));
        }
    }
    check_best_metric(cfg, kind, embedding, &splits)?;
    if let (Some(dims), true) = (&cfg.training.matryoshka_dims, embedding) {
        if let Some(d) = dims.iter().find(|&&d| d == 0 || d > config.hidden_size) {
            crate::bail!("[training] matryoshka_dims: {d} is not between 1 and the model's hidden size {}", config.hidden_size);
        }
    }
    let t = &cfg.training;
    let mut sampler = Sampler::new(splits.train.tokens.lengths(), t.batch_size, t.shuffle, t.group_by_length, t.seed);
    if t.batch_sampler == "no_duplicates" {
        sampler = sampler.no_duplicates(crate::data::batch::text_keys(&splits.train));
    }
    let ga = t.gradient_accumulation_steps;
    let micro_per_epoch = sampler.batches_per_epoch();
    let steps_per_epoch = micro_per_epoch.div_ceil(ga);
    let total_steps = t.max_steps.unwrap_or_else(|| (t.epochs * steps_per_epoch as f64).ceil() as usize).max(1);
    let schedule = Schedule::new(&t.lr_scheduler, t.learning_rate, t.warmup_steps, t.warmup_ratio, total_steps);
    let adam = AdamWConfig { beta1: t.adam_beta1, beta2: t.adam_beta2, eps: t.adam_epsilon, weight_decay: t.weight_decay };
    let optimizer = AdamW::new(&loaded.params, adam)?;
    let embedding = embedding.then(|| EmbeddingRun {
        loss: t.embedding_loss,
        scale: t.loss_scale,
        dims: t.matryoshka_dims.clone(),
        pooling: config.classifier_pooling,
        normalize: cfg.model.normalize.unwrap_or(false),
        mnrl: crate::tasks::embedding::MnrlOptions { directions: t.mnrl_directions.clone(), per_direction: t.mnrl_partition == "per_direction" },
        eval: cfg.embedding_eval().to_string(),
    });
    Ok(Run {
        embedding,
        cfg: cfg.clone(),
        dir: dir.to_path_buf(),
        kind,
        config,
        loaded,
        splits,
        tokenizer,
        sampler,
        schedule,
        optimizer,
        ga,
        total_steps,
        micro_per_epoch,
    })
}

/// The loop: one optimizer step per pass, then what that step calls for (log, evaluate, checkpoint,
/// stop). Each epoch's batch order is `sampler.epoch(e)`, so a resumed run sees the same batches as
/// an uninterrupted one, in every epoch.
fn run_loop(mut run: Run, mut state: TrainingState, opts: &TrainOptions) -> Result<Summary> {
    let bar = progress_bar(run.total_steps, state.step, opts.progress);
    let mode = Mode::train(Rng::from_state(state.rng));
    let clock = (Instant::now(), state.train_seconds);
    let mut window = (0f64, 0usize); // training loss summed since the last log line, and its steps
    let mut order = (state.sampler.epoch, run.sampler.epoch(state.sampler.epoch));
    let mut stopped_early = false;
    // Debugging aid (documented in configs/README.md): the training rows of every step, as JSONL.
    let batch_log = std::env::var_os("MODERNFT_BATCH_LOG").map(PathBuf::from);
    while state.step < run.total_steps && !stopped_early {
        if order.0 != state.sampler.epoch {
            order = (state.sampler.epoch, run.sampler.epoch(state.sampler.epoch));
        }
        let batches = &order.1;
        if state.sampler.batch >= batches.len() {
            state.sampler = SamplerState { epoch: state.sampler.epoch + 1, batch: 0 };
            continue;
        }
        // One optimizer step over `ga` micro-batches (fewer at the end of an epoch).
        let group = batches[state.sampler.batch..(state.sampler.batch + run.ga).min(batches.len())].to_vec();
        if let Some(path) = &batch_log {
            let line = json!({"step": state.step + 1, "epoch": state.sampler.epoch, "rows": group});
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("MODERNFT_BATCH_LOG: cannot open {}", path.display()))?;
            writeln!(f, "{line}")?;
        }
        let (loss, grad_norm, lr, tokens) = step(&mut run, &group, &mode, state.step)?;
        state.step += 1;
        state.tokens_seen += tokens as u64;
        state.sampler.batch += group.len();
        let epoch_done = state.sampler.batch >= batches.len();
        if epoch_done {
            state.sampler = SamplerState { epoch: state.sampler.epoch + 1, batch: 0 };
        }
        state.train_seconds = clock.1 + clock.0.elapsed().as_secs_f64();
        window = (window.0 + loss, window.1 + 1);
        let last = state.step == run.total_steps;
        log_step(&run, &state, &bar, opts, &mut window, (loss, grad_norm, lr), last)?;
        let evaluate_now = run.splits.validation.is_some()
            && match run.cfg.training.eval_strategy.as_str() {
                // The end of training is always an evaluation point (as in transformers' Trainer).
                "epoch" => epoch_done || last,
                "steps" => state.step % run.cfg.training.eval_steps.unwrap_or(usize::MAX) == 0 || last,
                _ => false,
            };
        let t = &run.cfg.training;
        let mut save_now = t.save_steps.is_some_and(|n| n > 0 && state.step % n == 0) || (epoch_done && t.eval_strategy == "no") || last;
        if evaluate_now {
            stopped_early = evaluate_and_track(&run, &mut state, &bar)?;
            save_now = true;
        }
        state.rng = mode.rng_state();
        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        if save_now || interrupted || stopped_early {
            save_checkpoint(&run, &state)?;
        }
        if interrupted {
            bar.abandon();
            crate::bail!(
                "interrupted at step {}; checkpoint saved in {}; continue with `modernft train --resume {}`",
                state.step,
                run.dir.join(format!("checkpoint-{}", state.step)).display(),
                run.dir.display()
            );
        }
    }
    bar.finish_and_clear();
    finish(run, state, stopped_early)
}

/// One optimizer step: forward and backward over the micro-batches, clip, AdamW at the scheduled
/// rate. Returns (loss, gradient norm before clipping, learning rate, real tokens).
fn step(run: &mut Run, group: &[Vec<usize>], mode: &Mode, done: usize) -> Result<(f64, f64, f64, usize)> {
    let (loss, mut grads, tokens) = accumulate(run, group, mode)
        .map_err(|e| e.wrap(format!("training stopped at step {}{}", done + 1, last_checkpoint_hint(&run.dir))))?;
    let grad_norm = clip_grad_norm(&run.loaded, &mut grads, run.cfg.training.max_grad_norm)?;
    let lr = run.schedule.lr(done);
    run.optimizer.step(&grads, lr)?;
    Ok((loss, grad_norm, lr, tokens))
}

fn epoch_of(run: &Run, state: &TrainingState) -> f64 {
    state.sampler.epoch as f64 + state.sampler.batch as f64 / run.micro_per_epoch.max(1) as f64
}

/// The progress bar every step; a `train` line in metrics.jsonl every `logging_steps` and at the end.
fn log_step(run: &Run, state: &TrainingState, bar: &ProgressBar, opts: &TrainOptions, window: &mut (f64, usize), (loss, grad_norm, lr): (f64, f64, f64), last: bool) -> Result<()> {
    let epoch = epoch_of(run, state);
    let tps = state.tokens_seen as f64 / state.train_seconds.max(1e-9);
    bar.set_position(state.step as u64);
    bar.set_message(format!("epoch {epoch:.2} · loss {loss:.4} · lr {lr:.2e} · {tps:.0} tok/s"));
    if state.step % run.cfg.training.logging_steps.max(1) == 0 || last {
        let mean = window.0 / window.1.max(1) as f64;
        append_metrics(&run.dir, json!({"type": "train", "step": state.step, "epoch": epoch, "loss": mean, "learning_rate": lr, "grad_norm": grad_norm, "tokens_per_second": tps}))?;
        if !opts.progress {
            eprintln!("step {}/{} · epoch {epoch:.2} · loss {mean:.4} · lr {lr:.2e} · {tps:.0} tok/s", state.step, run.total_steps);
        }
        *window = (0.0, 0);
    }
    Ok(())
}

/// Evaluates on the validation split, logs it, tracks the best checkpoint; returns whether early
/// stopping ends the run.
fn evaluate_and_track(run: &Run, state: &mut TrainingState, bar: &ProgressBar) -> Result<bool> {
    let t = &run.cfg.training;
    let metric = t.metric_for_best_model.trim_start_matches("eval_");
    let ev = evaluate(run)?;
    let mut line = json!({"type": "eval", "step": state.step, "epoch": epoch_of(run, state)});
    for (k, v) in &ev.metrics {
        line[format!("eval_{k}")] = json!(v);
    }
    append_metrics(&run.dir, line)?;
    bar.suspend(|| eprintln!("eval at step {}: {}", state.step, format_metrics(&ev.metrics)));
    let value = *ev.metrics.get(metric).with_context(|| {
        format!("metric_for_best_model `{metric}` is not computed for this task (available: {})", ev.metrics.keys().cloned().collect::<Vec<_>>().join(", "))
    })?;
    let greater = run.cfg.greater_is_better();
    let better = |a: f64, b: f64| if greater { a > b } else { a < b };
    match state.best_metric {
        Some(best) if !(better(value, best) && (value - best).abs() > t.early_stopping_threshold) => state.evals_without_improvement += 1,
        _ => state.evals_without_improvement = 0,
    }
    if state.best_metric.is_none_or(|best| better(value, best)) {
        state.best_metric = Some(value);
        state.best_checkpoint = Some(format!("checkpoint-{}", state.step));
    }
    let stop = t.early_stopping_patience.is_some_and(|p| state.evals_without_improvement >= p);
    if stop {
        bar.suspend(|| eprintln!("early stopping: no improvement in {metric} for {} evaluations", state.evals_without_improvement));
    }
    Ok(stop)
}

/// Forward and backward over the micro-batches of one step; returns the step's loss (the mean over
/// its micro-batches), the summed gradients, and the number of real tokens.
fn accumulate(run: &Run, group: &[Vec<usize>], mode: &Mode) -> Result<(f64, GradStore, usize)> {
    let dev = run.loaded.model.model.device().clone();
    let mut total: Option<GradStore> = None;
    let (mut loss_sum, mut tokens) = (0f64, 0usize);
    for rows in group {
        let ds = &run.splits.train;
        let loss = match &run.embedding {
            Some(e) => {
                // Anchors, positives (and negatives), each encoded and pooled on its own.
                let mut columns = vec![pooled_rows(&run.loaded.model, &ds.tokens, rows, e.pooling, mode)?];
                for store in &ds.extra {
                    columns.push(pooled_rows(&run.loaded.model, store, rows, e.pooling, mode)?);
                }
                tokens += rows.iter().map(|&r| ds.tokens.row_len(r) + ds.extra.iter().map(|s| s.row_len(r)).sum::<usize>()).sum::<usize>();
                let scores: Option<Vec<f32>> = match &ds.targets {
                    Some(crate::data::Targets::Regression(v)) => Some(rows.iter().map(|&r| v[r]).collect()),
                    _ => None,
                };
                let l = crate::tasks::embedding::embedding_loss_with(e.loss, &columns, scores.as_deref(), e.scale, e.dims.as_deref(), &e.mnrl)?;
                (l / group.len() as f64)?
            }
            None => {
                let batch = Batch::new(ds, rows, run.config.pad_token_id, &dev)?;
                tokens += batch.real_tokens();
                let logits = run.loaded.model.forward_batch(&batch.packed, mode)?.logits.context("no head")?;
                (tasks::batch_loss(run.kind, &logits, ds, rows, run.config.num_labels())? / group.len() as f64)?
            }
        };
        let value = loss.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            crate::bail!("the training loss is {value}; lower the learning rate, or check the data for extreme targets");
        }
        loss_sum += value;
        let grads = loss.backward()?;
        total = Some(match total {
            None => grads,
            Some(mut acc) => {
                for (_, var) in &run.loaded.params {
                    if let Some(g) = grads.get(var.as_tensor()) {
                        let sum = match acc.get(var.as_tensor()) {
                            Some(a) => (a + g)?,
                            None => g.clone(),
                        };
                        acc.insert(var.as_tensor(), sum);
                    }
                }
                acc
            }
        });
    }
    Ok((loss_sum, total.context("an empty step")?, tokens))
}

/// Pooled vectors of some rows of `store` [rows, hidden], in the given order (gradients flow).
pub fn pooled_rows(model: &crate::model::ModernBert, store: &TokenStore, rows: &[usize], pooling: Pooling, mode: &Mode) -> Result<Tensor> {
    let seqs: Vec<&[u32]> = rows.iter().map(|&i| store.row(i)).collect();
    model.pooled(&crate::model::Packed::from_rows(&seqs, model.config().pad_token_id, model.model.device())?, pooling, mode)
}

/// `torch.nn.utils.clip_grad_norm_`: scales all gradients by max_norm / (norm + 1e-6) when that is
/// below 1. Returns the norm before clipping.
fn clip_grad_norm(loaded: &Loaded, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for (_, var) in &loaded.params {
        if let Some(g) = grads.get(var.as_tensor()) {
            sq += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for (_, var) in &loaded.params {
                if let Some(g) = grads.remove(var.as_tensor()) {
                    grads.insert(var.as_tensor(), (g * coef)?);
                }
            }
        }
    }
    Ok(norm)
}

fn evaluate(run: &Run) -> Result<Evaluation> {
    let ds = run.splits.validation.as_ref().context("no validation split")?;
    evaluate_on(run, ds)
}

fn evaluate_on(run: &Run, ds: &Dataset) -> Result<Evaluation> {
    if let Some(e) = &run.embedding {
        return evaluate_embeddings(run, e, ds);
    }
    let mut scorer = tasks::Scorer::new(run.kind, run.config.num_labels(), 0.5).with_tags(&run.config.id2label, run.cfg.training.entity_scheme);
    crate::inference::score(&mut scorer, &run.loaded.model, ds, crate::inference::Budget::rows(run.cfg.training.eval_batch_size))?;
    scorer.finish()
}

/// STS or retrieval scores of the current encoder on a split of pairs.
fn evaluate_embeddings(run: &Run, e: &EmbeddingRun, ds: &Dataset) -> Result<Evaluation> {
    let bs = run.cfg.training.eval_batch_size;
    let all = |store: &TokenStore| {
        let rows: Vec<&[u32]> = (0..store.len()).map(|i| store.row(i)).collect();
        crate::inference::embeddings(&run.loaded.model, &rows, e.pooling, false, crate::inference::Budget::rows(bs))
    };
    let a = all(&ds.tokens)?;
    let b = all(ds.extra.first().context("pairs need a second text column")?)?;
    let metrics = match (e.eval.as_str(), &ds.targets) {
        ("sts", Some(crate::data::Targets::Regression(gold))) => crate::tasks::embedding::sts(&a, &b, gold),
        ("sts", _) => crate::bail!("{}: STS evaluation needs a score per pair (label_column)", ds.source),
        _ => crate::tasks::embedding::retrieval(&a, &b, &(0..a.len()).map(|i| vec![i]).collect::<Vec<_>>()),
    };
    Ok(Evaluation {
        loss: f64::NAN,
        rows: ds.len(),
        metrics,
        classification: None,
        multi_label: None,
        regression: None,
        entities: None,
        predictions: tasks::Predictions::Regression(Vec::new()),
    })
}

/// Embedding data: training pairs (scores only for CoSENT), validation pairs (scores only for STS);
/// every text column is encoded on its own.
fn embedding_splits(cfg: &RunConfig, data: &crate::data::DataConfig, encoder: &TextEncoder) -> Result<Splits> {
    use crate::data::dataset::load_splits_as;
    let scored = |yes: bool| yes.then_some(TargetKind::Regression);
    let train_kind = scored(cfg.training.embedding_loss == crate::tasks::embedding::EmbeddingLoss::Cosent);
    let only_train = crate::data::DataConfig { validation: None, validation_split: None, test: None, test_split: None, ..data.clone() };
    let mut splits = load_splits_as(&only_train, encoder, train_kind, true)?;
    let val_kind = scored(cfg.embedding_eval() == "sts");
    if data.validation.is_some() || data.validation_split.is_some() {
        let as_train = crate::data::DataConfig {
            train: data.validation.clone(),
            train_split: data.validation_split.clone().unwrap_or_default(),
            validation: None,
            validation_split: None,
            test: None,
            test_split: None,
            validation_fraction: None,
            negative_column: None,
            ..data.clone()
        };
        let mut v = load_splits_as(&as_train, encoder, val_kind, true)?.train;
        v.name = "validation".into();
        splits.validation = Some(v);
    }
    Ok(splits)
}

fn save_checkpoint(run: &Run, state: &TrainingState) -> Result<PathBuf> {
    let dir = run.dir.join(format!("checkpoint-{}", state.step));
    checkpoint::write_folder_atomic(&dir, |tmp| {
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
        let moments: Vec<(String, Tensor)> = run.optimizer.params.iter().map(|p| (p.name.clone(), p.moments.clone())).collect();
        checkpoint::save_safetensors(&tmp.join(checkpoint::OPTIMIZER_STATE), &moments, None)?;
        std::fs::write(tmp.join(checkpoint::TRAINING_STATE), serde_json::to_string_pretty(state)?)?;
        Ok(())
    })?;
    let trainer_state = json!({
        "global_step": state.step,
        "best_metric": state.best_metric,
        "best_model_checkpoint": state.best_checkpoint,
        "last_checkpoint": format!("checkpoint-{}", state.step),
        "metric_for_best_model": run.cfg.training.metric_for_best_model,
    });
    checkpoint::write_atomic(&run.dir.join("trainer_state.json"), serde_json::to_string_pretty(&trainer_state)?.as_bytes())?;
    prune_checkpoints(run, state)?;
    Ok(dir)
}

/// Keeps the newest `save_total_limit` checkpoints, and always the best one.
fn prune_checkpoints(run: &Run, state: &TrainingState) -> Result<()> {
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

fn finish(run: Run, state: TrainingState, stopped_early: bool) -> Result<Summary> {
    // The best weights replace the last ones.
    let mut best = None;
    if let (true, Some(name), Some(value)) = (run.cfg.training.load_best_model_at_end, &state.best_checkpoint, state.best_metric) {
        let path = run.dir.join(name);
        let tensors = candle_core::safetensors::load(path.join("model.safetensors"), run.loaded.model.model.device())?;
        for (n, var) in &run.loaded.params {
            var.set(tensors.get(n).with_context(|| format!("{}: no tensor {n}", path.display()))?)?;
        }
        best = Some((run.cfg.training.metric_for_best_model.clone(), value, name.clone()));
    }
    let model_dir = run.dir.join("model");
    checkpoint::write_folder_atomic(&model_dir, |tmp| match &run.embedding {
        // Embedding runs export what sentence-transformers loads: the bare encoder plus modules.
        Some(e) => {
            let encoder: Vec<(String, Tensor)> =
                run.loaded.tensors.iter().filter_map(|(n, t)| n.strip_prefix("model.").map(|n| (n.to_string(), t.clone()))).collect();
            ModelFolder { config: &run.config, tensors: &encoder, tokenizer: &run.tokenizer, dtype: None }.write_into(tmp)?;
            let modules = crate::model::save::SentenceModules {
                pooling: e.pooling,
                normalize: e.normalize,
                max_seq_length: run.cfg.data.max_length,
                prompts: crate::model::save::read_prompts(&run.tokenizer)?,
            };
            crate::model::save::write_sentence_transformers_files(tmp, &run.config, &modules)
        }
        None => ModelFolder { config: &run.config, tensors: &run.loaded.tensors, tokenizer: &run.tokenizer, dtype: None }.write_into(tmp),
    })?;
    let validation = run.splits.validation.as_ref().map(|d| evaluate_on(&run, d)).transpose()?;
    let test = run.splits.test.as_ref().map(|d| evaluate_on(&run, d)).transpose()?;
    for (name, ev) in [("validation", &validation), ("test", &test)] {
        if let Some(ev) = ev {
            let mut line = json!({"type": "final", "split": name, "step": state.step});
            for (k, v) in &ev.metrics {
                line[k] = json!(v);
            }
            append_metrics(&run.dir, line)?;
        }
    }
    write_plots(&run, validation.as_ref())?;
    // Last: what actually happened, for `is_complete`, `--resume` and the model card.
    let epochs = epoch_of(&run, &state);
    let trainer_state = json!({
        "finished": true,
        "global_step": state.step,
        "max_steps": run.total_steps,
        "epochs": epochs,
        "stopped_early": stopped_early,
        "best_metric": state.best_metric,
        "best_model_checkpoint": state.best_checkpoint,
        "last_checkpoint": format!("checkpoint-{}", state.step),
        "metric_for_best_model": run.cfg.training.metric_for_best_model,
        "train_rows": run.splits.train.len(),
        "validation_rows": run.splits.validation.as_ref().map(Dataset::len),
        "validation_fraction": run.cfg.data.validation_fraction,
        "test_rows": run.splits.test.as_ref().map(Dataset::len),
    });
    checkpoint::write_atomic(&run.dir.join("trainer_state.json"), serde_json::to_string_pretty(&trainer_state)?.as_bytes())?;
    Ok(Summary {
        model_dir,
        steps: state.step,
        epochs,
        train_seconds: state.train_seconds,
        tokens_per_second: state.tokens_seen as f64 / state.train_seconds.max(1e-9),
        best,
        validation,
        test,
        stopped_early,
        label_names: run.config.id2label.clone(),
        run_dir: run.dir,
    })
}

fn write_plots(run: &Run, validation: Option<&Evaluation>) -> Result<()> {
    let log = std::fs::read_to_string(run.dir.join("metrics.jsonl")).unwrap_or_default();
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for v in log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let step = v["step"].as_u64().unwrap_or(0) as usize;
        match (v["type"].as_str(), v["loss"].as_f64(), v["eval_loss"].as_f64()) {
            (Some("train"), Some(l), _) => train.push((step, l)),
            (Some("eval"), _, Some(l)) => eval.push((step, l)),
            _ => {}
        }
    }
    let title = format!("{} · loss", run.dir.display());
    std::fs::write(run.dir.join("loss.svg"), report::loss_curve(&train, &eval, &title))?;
    if let Some(c) = validation.and_then(|v| v.classification.as_ref()) {
        let svg = report::confusion_matrix(&c.confusion, &run.config.id2label, "validation confusion matrix");
        std::fs::write(run.dir.join("confusion_matrix.svg"), svg)?;
    }
    Ok(())
}

fn append_metrics(dir: &Path, line: Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("metrics.jsonl"))?;
    writeln!(f, "{line}")?;
    Ok(())
}

fn last_checkpoint_hint(dir: &Path) -> String {
    match list_checkpoints(dir).ok().and_then(|mut v| v.pop()) {
        Some((_, p)) => format!("; the last good checkpoint, {}, is intact", p.display()),
        None => String::new(),
    }
}

pub fn format_metrics(m: &BTreeMap<String, f64>) -> String {
    m.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join(" · ")
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
