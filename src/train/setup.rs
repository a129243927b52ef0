//! A run prepared before its first step: the model, data, optimizer and schedule, each resolved
//! and checked by a named step, writing nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};

use crate::config::RunConfig;
use crate::data::augment::Augmenter;
use crate::data::{load_splits, Dataset, Sampler, Splits, Table, TargetKind, TextEncoder};
use crate::error::{Context, Result};
use crate::model::{build, HeadKind, LoadOptions, Loaded, ModelFiles, ModernBertConfig, Pooling, Weights};
use crate::tasks;
use crate::train::checkpoint;
use crate::train::dist::World;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::schedule::Schedule;

/// Everything a run needs, prepared before the first step.
pub(crate) struct Run {
    pub(crate) cfg: RunConfig,
    pub(crate) dir: PathBuf,
    pub(crate) kind: TargetKind,
    pub(crate) config: ModernBertConfig,
    pub(crate) loaded: Loaded,
    pub(crate) splits: Splits,
    pub(crate) tokenizer: PathBuf,
    pub(crate) sampler: Sampler,
    pub(crate) schedule: Schedule,
    pub(crate) optimizer: AdamW,
    pub(crate) ga: usize,
    pub(crate) total_steps: usize,
    pub(crate) micro_per_epoch: usize,
    /// Set for `task = "embedding"`: contrastive training on pooled vectors.
    pub(crate) embedding: Option<EmbeddingRun>,
    /// Set with `[data.augment]`: each epoch trains on the rows as read plus that epoch's copies.
    pub(crate) augment: Option<Augmentation>,
    /// Set for `task = "mlm"`: which tokens are masked (per epoch, per row).
    pub(crate) mlm: Option<crate::tasks::mlm::Masking>,
    /// Set with `[model] add_tokens`: the tokenizer with them, which the run folder keeps.
    pub(crate) new_vocabulary: Option<NewVocabulary>,
    /// The processes training together; each takes its share of every global batch.
    pub(crate) world: Arc<World>,
    /// The ranks the run started on: every global batch is `batch_size` × this rows.
    pub(crate) processes: usize,
    /// Seconds this process spent summing losses and gradients over the ranks (this session).
    pub(crate) allreduce_seconds: f64,
}

/// `[model] add_tokens` in a run: the tokenizer with the tokens added and each token's id.
pub(crate) struct NewVocabulary {
    tokenizer: tokenizers::Tokenizer,
    ids: Vec<(String, u32)>,
}

/// `[data.augment]` in a run: the operations, the training rows as read, and the rows of the epoch
/// the run is in (the originals, then the copies; see [`Augmenter::epoch_rows`]).
pub(crate) struct Augmentation {
    augmenter: Augmenter,
    table: Table,
    /// Truncates (a copy grown by insertions is cut at max_length, never refused).
    encoder: TextEncoder,
    separate_texts: bool,
    epoch: usize,
    rows: Dataset,
}

impl Run {
    /// The rows the current epoch trains on (batches index these).
    pub(crate) fn train_rows(&self) -> &Dataset {
        self.augment.as_ref().map_or(&self.splits.train, |a| &a.rows)
    }

    /// Makes `epoch` the current one: with augmentation, its copies are made and the sampler is
    /// rebuilt over them (a pure function of the seed and the epoch, so a resumed run rebuilds
    /// the same rows); without, nothing changes.
    pub(crate) fn enter_epoch(&mut self, epoch: usize) -> Result<()> {
        let Some(a) = self.augment.as_mut() else { return Ok(()) };
        if a.epoch != epoch {
            a.rows = a.augmenter.epoch_rows(&self.splits.train, &a.table, &a.encoder, a.separate_texts, epoch)?;
            a.epoch = epoch;
            self.sampler = sampler(&self.cfg, &a.rows, self.splits.train.len(), self.processes);
        }
        Ok(())
    }
}

pub(crate) struct EmbeddingRun {
    pub(crate) loss: crate::tasks::embedding::EmbeddingLoss,
    pub(crate) scale: f64,
    pub(crate) dims: Option<Vec<usize>>,
    pub(crate) pooling: Pooling,
    pub(crate) normalize: bool,
    pub(crate) mnrl: crate::tasks::embedding::MnrlOptions,
    /// `sts` or `retrieval`.
    pub(crate) eval: String,
}

/// The run keeps its own copy of the tokenizer (checkpoints come and go, the run folder stays);
/// from here on the run's files name that copy.
pub(crate) fn install_tokenizer(run: &mut Run) -> Result<()> {
    let copy = run.dir.join("tokenizer").join("tokenizer.json");
    if !copy.is_file() {
        let source = run.tokenizer.clone();
        let src_dir = source.parent().unwrap_or(Path::new(".")).to_path_buf();
        let extended = run.new_vocabulary.as_ref().map(|v| &v.tokenizer);
        checkpoint::write_folder_atomic(&run.dir.join("tokenizer"), |tmp| {
            match extended {
                // With the added tokens (as transformers' save_pretrained writes them).
                Some(t) => t.save(tmp.join("tokenizer.json"), true).with_context(|| format!("cannot write {}", tmp.join("tokenizer.json").display()))?,
                None => {
                    std::fs::copy(&source, tmp.join("tokenizer.json")).with_context(|| format!("cannot copy {}", source.display()))?;
                }
            }
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
pub(crate) fn check_best_metric(cfg: &RunConfig, kind: TargetKind, embedding: bool, splits: &Splits) -> Result<()> {
    if splits.validation.is_none() || cfg.training.eval_strategy == "no" {
        return Ok(());
    }
    let available: &[&str] = match (embedding, cfg.embedding_eval()) {
        _ if cfg.task == crate::config::Task::Mlm => &["loss", "accuracy", "perplexity"],
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
pub(crate) fn resolve_sentence_settings(cfg: &RunConfig, sentence: Option<&ModelFiles>, config: &ModernBertConfig) -> Result<RunConfig> {
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
        crate::say!(
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

/// Loads and checks everything a run needs, in named steps; writes nothing.
/// `processes`: the ranks the run started on (its global batch is `batch_size` × that).
pub(crate) fn prepare(cfg: &RunConfig, dir: &Path, checkpoint: Option<&Path>, device: &Device, world: Arc<World>, processes: usize) -> Result<Run> {
    // Embedding runs read scores (CoSENT, STS) as regression targets.
    let kind = cfg.target_kind().unwrap_or(TargetKind::Regression);
    let embedding = cfg.task == crate::config::Task::Embedding;
    let source = model_source(cfg, checkpoint)?;
    let cfg = &settled_config(cfg, &source)?;
    let (encoder, new_vocabulary) = tokenizer(cfg, &source, checkpoint.is_some())?;
    let mlm = (cfg.task == crate::config::Task::Mlm)
        .then(|| crate::tasks::mlm::Masking::new(encoder.tokenizer(), cfg.training.mlm_probability, cfg.training.seed))
        .transpose()?;
    let mut splits = match &mlm {
        Some(_) => mlm_splits(cfg, &encoder, checkpoint.is_none())?,
        None => data(cfg, kind, embedding, &encoder, checkpoint.is_none())?,
    };
    let augment = augmentation(cfg, &mut splits, &encoder, embedding, dir, checkpoint.is_none())?;
    let old_vocab = source.config.vocab_size;
    let mut config = model_config(cfg, source.config, kind, embedding || mlm.is_some(), &splits, checkpoint.is_some())?;
    config.vocab_size = config.vocab_size.max(crate::model::vocabulary::rows_needed(encoder.tokenizer()));
    let loaded = model(cfg, &config, source.weights.as_ref(), kind, embedding, device, checkpoint.is_none())
        .with_context(|| format!("cannot build the model for {}", dir.display()))?;
    check_best_metric(cfg, kind, embedding, &splits)?;
    if let (Some(v), true) = (&new_vocabulary, checkpoint.is_none()) {
        crate::say!("{}", v.note(old_vocab, config.vocab_size, source.weights.is_some()));
    }
    if let (Some(m), true) = (&mlm, checkpoint.is_none()) {
        let targets: usize = (0..splits.train.len()).map(|r| m.row(splits.train.tokens.row(r), 0, r).targets.len()).sum();
        if targets == 0 {
            crate::bail!("{}: no token of the training text can be masked (every token is special); give the documents text", splits.train.source);
        }
    }
    let train_rows = augment.as_ref().map_or(&splits.train, |a| &a.rows);
    let (sampler, schedule, total_steps) = schedule(cfg, train_rows, splits.train.len(), processes);
    let t = &cfg.training;
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
    // The run's config records the names as a map (a names file may change or move).
    let mut settled = cfg.clone();
    if let Some(r) = &splits.renaming {
        if checkpoint.is_none() {
            crate::say!("{}", r.describe());
        }
        settled.data.label_names = Some(crate::data::LabelNames::Map(r.map()));
    }
    Ok(Run {
        embedding,
        augment,
        mlm,
        new_vocabulary,
        cfg: settled,
        dir: dir.to_path_buf(),
        kind,
        config,
        loaded,
        splits,
        tokenizer: source.tokenizer,
        ga: t.gradient_accumulation_steps,
        micro_per_epoch: sampler.batches_per_epoch(),
        sampler,
        schedule,
        optimizer,
        total_steps,
        world,
        processes,
        allreduce_seconds: 0.0,
    })
}

/// Where the model comes from: config, weights and tokenizer.
struct ModelSource {
    config: ModernBertConfig,
    weights: Option<Weights>,
    tokenizer: PathBuf,
    /// A sentence-transformers folder (its settings are what trains).
    sentence: Option<ModelFiles>,
}

/// Step 1: the checkpoint's files when resuming, else `[model]`'s (a folder or hub id, or a config
/// to train from scratch).
fn model_source(cfg: &RunConfig, checkpoint: Option<&Path>) -> Result<ModelSource> {
    Ok(match (checkpoint, &cfg.model.config, &cfg.model.name) {
        (Some(ck), _, _) => {
            let files = ModelFiles::from_dir(ck)?;
            let tokenizer = files.tokenizer()?.to_path_buf();
            ModelSource { config: ModernBertConfig::from_file(&files.config)?, weights: Some(Weights::open(&files.weights)?), tokenizer, sentence: None }
        }
        (None, Some(path), _) => ModelSource { config: ModernBertConfig::from_file(path)?, weights: None, tokenizer: cfg.model.tokenizer_source()?.resolve()?, sentence: None },
        (None, None, Some(name)) => {
            let files = ModelFiles::resolve(name)?;
            let tokenizer = match &cfg.model.tokenizer {
                Some(t) => t.clone(),
                None => files.tokenizer()?.to_path_buf(),
            };
            let config = ModernBertConfig::from_file(&files.config)?;
            let weights = Weights::open(&files.weights)?;
            ModelSource { config, weights: Some(weights), tokenizer, sentence: files.sentence.is_some().then_some(files) }
        }
        (None, None, None) => crate::bail!("[model] needs `name` or `config`"),
    })
}

/// Step 2: the config as it trains, recorded in the run folder so a resumed run trains the same
/// way: a sentence-transformers folder's settings where the config does not set them, and the one
/// max_length rule (as eval, embed and predict): the config's, else the model's positions.
fn settled_config(cfg: &RunConfig, source: &ModelSource) -> Result<RunConfig> {
    let mut cfg = resolve_sentence_settings(cfg, source.sentence.as_ref(), &source.config)?;
    let asked = cfg.max_length_given.then(|| (cfg.data.max_length, "[data] max_length".to_string()));
    cfg.data.max_length = crate::model::max_length_rule(asked.as_ref(), None, source.config.max_position_embeddings)?;
    cfg.max_length_given = true;
    // The tokens themselves, not the file that listed them (which may change or move).
    cfg.model.add_tokens = cfg.model.new_tokens()?;
    cfg.model.add_tokens_file = None;
    Ok(cfg)
}

/// Step 3: the tokenizer at the run's max_length, with `[model] add_tokens` added, checked against
/// the model's vocabulary (which grows to hold added tokens; a resumed run's tokenizer already
/// holds them).
fn tokenizer(cfg: &RunConfig, source: &ModelSource, resuming: bool) -> Result<(TextEncoder, Option<NewVocabulary>)> {
    let mut tokenizer = crate::model::load_tokenizer(&source.tokenizer)?;
    let tokens = cfg.model.new_tokens()?;
    let vocab = crate::model::vocabulary::rows_needed(&tokenizer);
    let new_vocabulary = if tokens.is_empty() {
        if vocab > source.config.vocab_size {
            crate::bail!(
                "the tokenizer {} has ids up to {} but the model's vocab_size is {}; use the model's own tokenizer, or list the tokens it lacks in [model] add_tokens",
                source.tokenizer.display(),
                vocab - 1,
                source.config.vocab_size
            );
        }
        None
    } else {
        let ids = crate::model::vocabulary::add_tokens(&mut tokenizer, &tokens)?;
        let rows = crate::model::vocabulary::rows_needed(&tokenizer);
        if resuming && rows > source.config.vocab_size {
            let missing: Vec<&str> = ids.iter().filter(|(_, id)| *id as usize >= source.config.vocab_size).map(|(t, _)| t.as_str()).collect();
            crate::bail!("[model] add_tokens lists {missing:?}, which the run's tokenizer {} lacks: a run resumes with the tokens it started with", source.tokenizer.display());
        }
        Some(NewVocabulary { tokenizer: tokenizer.clone(), ids })
    };
    let encoder = TextEncoder::new(tokenizer, cfg.data.max_length)?.refusing_longer(!cfg.data.truncate);
    Ok((encoder, new_vocabulary))
}

impl NewVocabulary {
    /// What adding the tokens did, for a new run's stderr.
    fn note(&self, old_rows: usize, rows: usize, pretrained: bool) -> String {
        let new: Vec<String> = self.ids.iter().filter(|(_, id)| *id as usize >= old_rows).map(|(t, id)| format!("{t:?} {id}")).collect();
        let kept: Vec<String> = self.ids.iter().filter(|(_, id)| (*id as usize) < old_rows).map(|(t, id)| format!("{t:?} {id}")).collect();
        let mut note = format!("added {} token(s) to the tokenizer", self.ids.len());
        if !new.is_empty() {
            note += &format!("; new ids: {}", new.join(", "));
        }
        if !kept.is_empty() {
            note += &format!("; ids the model already has (kept; these now always split off whole): {}", kept.join(", "));
        }
        if rows > old_rows {
            note += &format!(
                "\nnote: token embeddings grow from {old_rows} to {rows} rows{}",
                if pretrained { " (the new rows at the others' mean, as transformers' resize_token_embeddings)" } else { "" }
            );
        }
        note
    }
}

/// Step 4: the splits, tokenized (a note per split that had rows truncated, on a new run).
fn data(cfg: &RunConfig, kind: TargetKind, embedding: bool, encoder: &TextEncoder, new_run: bool) -> Result<Splits> {
    let splits = if embedding { embedding_splits(cfg, &cfg.data, encoder)? } else { load_splits(&cfg.data, encoder, Some(kind))? };
    if new_run {
        for ds in [Some(&splits.train), splits.validation.as_ref(), splits.test.as_ref()].into_iter().flatten() {
            if let Some(note) = encoder.truncation_note(ds.truncated, ds.len(), &format!("{} rows", ds.name), "see [data] max_length; truncate = false refuses them") {
                crate::say!("{note}");
            }
        }
    }
    Ok(splits)
}

/// The run folder's copy of the synonyms file (`synonyms.tsv` or `synonyms.json`), which a resumed
/// run reads, so that it makes the same copies even if the original file changed or moved.
pub(crate) fn synonyms_copy(cfg: &RunConfig, dir: &Path) -> Option<PathBuf> {
    let given = cfg.data.augment.as_ref()?.synonyms.as_ref()?;
    let json = given.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("json"));
    Some(dir.join(if json { "synonyms.json" } else { "synonyms.tsv" }))
}

/// Step 4, masked-LM: unlabelled text, each document with its [CLS] and [SEP]; with `group_texts`
/// (the default) the documents of a split end to end in `max_length` blocks, else one row per
/// document cut at `max_length`.
fn mlm_splits(cfg: &RunConfig, encoder: &TextEncoder, new_run: bool) -> Result<Splits> {
    let group = cfg.data.group_texts.unwrap_or(true);
    let whole = TextEncoder::new(encoder.tokenizer().clone(), usize::MAX / 4)?;
    let mut splits = load_splits(&cfg.data, if group { &whole } else { encoder }, None)?;
    for ds in [Some(&mut splits.train), splits.validation.as_mut(), splits.test.as_mut()].into_iter().flatten() {
        if group {
            ds.tokens = ds.tokens.grouped(cfg.data.max_length);
            ds.truncated = 0;
        } else if let (true, Some(note)) = (new_run, encoder.truncation_note(ds.truncated, ds.len(), &format!("{} documents", ds.name), "see [data] max_length and group_texts")) {
            crate::say!("{note}");
        }
    }
    Ok(splits)
}

/// Step 4b, with `[data.augment]`: the operations (their synonyms file read now, before any
/// work; a resumed run reads the run folder's copy) and epoch 0's rows.
fn augmentation(cfg: &RunConfig, splits: &mut Splits, encoder: &TextEncoder, embedding: bool, dir: &Path, new_run: bool) -> Result<Option<Augmentation>> {
    let Some(config) = &cfg.data.augment else { return Ok(None) };
    let mut config = config.clone();
    if let Some(copy) = synonyms_copy(cfg, dir).filter(|c| !new_run && c.is_file()) {
        config.synonyms = Some(copy);
    }
    let augmenter = Augmenter::new(&config, cfg.training.seed)?;
    let table = splits.train_table.take().context("internal: the training rows as read were not kept for augmentation")?;
    let encoder = encoder.clone().refusing_longer(false);
    let rows = augmenter.epoch_rows(&splits.train, &table, &encoder, embedding, 0)?;
    if new_run {
        let on: Vec<String> = config.operations().iter().filter(|(_, p)| *p > 0.0).map(|(op, p)| format!("{op} {p}")).collect();
        crate::say!(
            "augmenting: {} training rows + {} augmented cop{} each per epoch ({}); validation and test rows as read",
            splits.train.len(),
            config.copies,
            if config.copies == 1 { "y" } else { "ies" },
            on.join(", ")
        );
        if embedding && cfg.training.embedding_loss == crate::tasks::embedding::EmbeddingLoss::Mnrl && cfg.training.batch_sampler != "no_duplicates" {
            crate::say!("note: with in-batch negatives, a row and its augmented copy in one batch are each other's negatives; batch_sampler = \"no_duplicates\" keeps them apart");
        }
    }
    Ok(Some(Augmentation { augmenter, table, encoder, separate_texts: embedding, epoch: 0, rows }))
}

/// Step 5: the model config the run trains and exports: its labels (a resumed run's must match
/// the data's), `problem_type`, architecture, pooling and classifier dropout.
fn model_config(cfg: &RunConfig, mut config: ModernBertConfig, kind: TargetKind, embedding: bool, splits: &Splits, resuming: bool) -> Result<ModernBertConfig> {
    let names = match (&splits.labels, kind) {
        _ if embedding => config.id2label.clone(),
        (_, TargetKind::Regression) => vec!["LABEL_0".to_string()],
        (Some(l), _) => l.names().to_vec(),
        (None, _) => crate::bail!("no labels were read"),
    };
    if resuming && config.id2label != names {
        crate::bail!("the data's labels {:?} differ from the checkpoint's {:?}; resume with the data the run started with", names, config.id2label);
    }
    config.set_labels(names);
    if cfg.task == crate::config::Task::Mlm {
        config.architectures = vec!["ModernBertForMaskedLM".to_string()];
        config.problem_type = None;
    } else if embedding {
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
    if let (Some(dims), true) = (&cfg.training.matryoshka_dims, embedding) {
        if let Some(d) = dims.iter().find(|&&d| d == 0 || d > config.hidden_size) {
            crate::bail!("[training] matryoshka_dims: {d} is not between 1 and the model's hidden size {}", config.hidden_size);
        }
    }
    Ok(config)
}

/// Step 6: the model with its head (a fresh head, or a classifier of another label count, is
/// initialised; a new run says which tensors were).
fn model(cfg: &RunConfig, config: &ModernBertConfig, weights: Option<&Weights>, kind: TargetKind, embedding: bool, device: &Device, new_run: bool) -> Result<Loaded> {
    let opts = LoadOptions { dtype: DType::F32, device: device.clone(), trainable: true, seed: cfg.training.seed, reinit_mismatched_classifier: true, grow_vocab: true };
    let head = match kind {
        _ if cfg.task == crate::config::Task::Mlm => HeadKind::MaskedLm,
        _ if embedding => HeadKind::None,
        TargetKind::Tags => HeadKind::Token,
        _ => HeadKind::Sequence,
    };
    let mut loaded = build(config, weights, head, &opts)?;
    if cfg.training.precision == "bf16" {
        loaded.model.train_in_bf16();
        if new_run {
            crate::say!("{}", bf16_note());
        }
    }
    if !loaded.initialised.is_empty() && new_run {
        if loaded.initialised.len() == loaded.tensors.len() {
            crate::say!("note: training from scratch: all {} tensors are freshly initialised", loaded.initialised.len());
        } else {
            let replaced = weights.is_some_and(|w| w.contains("classifier.weight"));
            let why = if replaced { "the checkpoint's classifier has a different label count; re-initialised" } else { "not in the checkpoint, freshly initialised" };
            crate::say!("note: {why}: {}", loaded.initialised.join(", "));
        }
    }
    Ok(loaded)
}

/// What `precision = "bf16"` runs on this machine (never silently f32).
fn bf16_note() -> String {
    let cpu = if crate::kernels::bf16_supported() { "this CPU has AVX-512 BF16, but the training kernels for it are not built yet" } else { "this CPU has no AVX-512 BF16" };
    format!(
        "note: precision = \"bf16\": the linear layers multiply bf16-rounded operands with f32 sums and bf16 results and gradients, as autocast does (f32 master weights, optimizer, LayerNorm, softmax, loss); {cpu}, so the portable path runs: the numbers of bf16 training, not its speed"
    )
}

/// The batch order over `rows` (seeded, per epoch). `original` rows come first in `rows`; with
/// `no_duplicates`, an augmented copy also carries its source row's keys, so that a row and its
/// copies never share a batch.
fn sampler(cfg: &RunConfig, rows: &Dataset, original: usize, processes: usize) -> Sampler {
    let t = &cfg.training;
    // The global batch: what one process with batch_size × processes would take.
    let sampler = Sampler::new(rows.tokens.lengths(), t.batch_size * processes.max(1), t.shuffle, t.group_by_length, t.seed);
    if t.batch_sampler != "no_duplicates" {
        return sampler;
    }
    let mut keys = crate::data::batch::text_keys(rows);
    for r in original..keys.len() {
        let source = keys[Augmenter::source_row(r, original)].clone();
        keys[r].extend(source);
    }
    sampler.no_duplicates(keys)
}

/// Step 7: the batch order, the number of optimizer steps and the learning-rate schedule over them.
fn schedule(cfg: &RunConfig, rows: &Dataset, original: usize, processes: usize) -> (Sampler, Schedule, usize) {
    let t = &cfg.training;
    let sampler = sampler(cfg, rows, original, processes);
    let steps_per_epoch = sampler.batches_per_epoch().div_ceil(t.gradient_accumulation_steps);
    let total_steps = t.max_steps.unwrap_or_else(|| (t.epochs * steps_per_epoch as f64).ceil() as usize).max(1);
    let schedule = Schedule::new(&t.lr_scheduler, t.learning_rate, t.warmup_steps, t.warmup_ratio, total_steps);
    (sampler, schedule, total_steps)
}

/// Embedding data: training pairs (scores only for CoSENT), validation pairs (scores only for STS);
/// every text column is encoded on its own.
pub(crate) fn embedding_splits(cfg: &RunConfig, data: &crate::data::DataConfig, encoder: &TextEncoder) -> Result<Splits> {
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
            augment: None,
            ..data.clone()
        };
        let mut v = load_splits_as(&as_train, encoder, val_kind, true)?.train;
        v.name = "validation".into();
        splits.validation = Some(v);
    }
    Ok(splits)
}
