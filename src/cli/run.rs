//! Each subcommand run: its flags turned into validated options, the command called, its output
//! printed (`main` calls these).

use std::io::{BufReader, Write};

use crate::cli::{DataArgs, DataFormatArg, EmbedArgs, EvalArgs, ExportFormatArg, InitArgs, InputFormatArg, PoolingArg, PredictArgs, SaveArgs, ServeArgs, SplitArg, TaskArg, TrainArgs};
use crate::data::stats::{all_stats, render};
use crate::data::{load_splits, DataConfig, Format, TargetKind, TextEncoder};
use crate::commands::embed;
use crate::error::{Context, Result};
use crate::model::ModelFiles;

pub fn embed(args: &EmbedArgs) -> Result<()> {
    let opts = args.to_options()?;
    let ext = if opts.format == embed::OutputFormat::Npy { "npy" } else { "jsonl" };
    write_output(&args.part, opts.shard.as_ref(), ext, &mut |out| {
        let mut notes = std::io::stderr();
        match &args.input {
            Some(path) => {
                let file = std::fs::File::open(path).with_context(|| format!("cannot open --input {}", path.display()))?;
                embed::run(&opts, BufReader::new(file), &path.display().to_string(), out, &mut notes)
            }
            None => embed::run(&opts, std::io::stdin().lock(), "stdin", out, &mut notes),
        }
    })
}

/// Runs `body` into stdout, or into `--output` written atomically (the part of `--shard`); with
/// `--skip-existing`, an output already there is left alone and `body` never runs.
fn write_output(part: &crate::cli::PartArgs, shard: Option<&crate::commands::shard::Shard>, ext: &str, body: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<()> {
    use crate::commands::shard::{output, Output};
    match output(part.output.as_deref(), shard, ext, part.overwrite, part.skip_existing)? {
        Output::Skip(path) => {
            eprintln!("note: {} exists: left as it is (--skip-existing)", path.display());
            Ok(())
        }
        Output::Stdout => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            body(&mut out)
        }
        Output::File(mut file) => {
            body(&mut file)?;
            let path = file.path().to_path_buf();
            file.commit()?;
            match shard {
                Some(s) => eprintln!("wrote {} (shard {} of {}, {})", path.display(), s.index, s.count, s.origin),
                None => eprintln!("wrote {}", path.display()),
            }
            Ok(())
        }
    }
}

/// `modernft merge-parts`: the parts checked and concatenated into `--output`, atomically.
pub fn merge_parts(args: &crate::cli::MergePartsArgs) -> Result<()> {
    use crate::commands::shard::{merge, output, Output};
    let Output::File(mut file) = output(Some(&args.output), None, "", args.overwrite, false)? else {
        crate::bail!("--output {}: cannot be written", args.output.display());
    };
    let (parts, rows) = merge(&args.parts, &mut file)?;
    file.commit()?;
    eprintln!("merged {parts} parts, {rows} rows, into {}", args.output.display());
    Ok(())
}

/// Applies `--train`, `--text-column`, ... over a data config.
pub fn apply_source_flags(cfg: &mut DataConfig, src: &crate::cli::DataSourceArgs) {
    if src.train.is_some() {
        cfg.train = src.train.clone().map(Into::into);
        cfg.hub = None;
    }
    if src.hub.is_some() {
        cfg.hub = src.hub.clone();
        cfg.train = None;
    }
    if src.validation.is_some() {
        cfg.validation = src.validation.clone().map(Into::into);
    }
    if src.test.is_some() {
        cfg.test = src.test.clone().map(Into::into);
    }
    if src.subset.is_some() {
        cfg.subset = src.subset.clone();
    }
    apply_column_flags(cfg, &src.columns);
}

/// Applies `--text-column`, `--text-pair-column`, `--label-column`, `--format`, ... over a data config.
pub fn apply_column_flags(cfg: &mut DataConfig, cols: &crate::cli::ColumnArgs) {
    apply_text_flags(cfg, &cols.text);
    apply_read_flags(cfg, &cols.read);
    if let Some(c) = &cols.label_column {
        cfg.label_column = c.clone();
    }
    if let Some(c) = &cols.tokens_column {
        cfg.tokens_column = c.clone();
    }
    if let Some(c) = &cols.tags_column {
        cfg.tags_column = c.clone();
    }
    if let Some(n) = &cols.label_names {
        cfg.label_names = Some(label_names_flag(n));
    }
}

/// `--text-column` (repeated: joined), `--text-separator`, `--text-pair-column`.
fn apply_text_flags(cfg: &mut DataConfig, t: &crate::cli::TextArgs) {
    match t.text_column.as_slice() {
        [] => {}
        [one] => cfg.text_column = crate::data::dataset::TextColumn::One(one.clone()),
        many => cfg.text_column = crate::data::dataset::TextColumn::Joined(many.to_vec()),
    }
    if let Some(s) = &t.text_separator {
        cfg.text_separator = s.clone();
    }
    if t.text_pair_column.is_some() {
        cfg.text_pair_column = t.text_pair_column.clone();
    }
}

/// `--format`, `--header`, `--columns`, `--encoding`, `--pattern`, `--skip-unmatched`.
fn apply_read_flags(cfg: &mut DataConfig, r: &crate::cli::ReadArgs) {
    if let Some(f) = r.format {
        cfg.format = Some(data_format(f));
    }
    if let Some(h) = r.header {
        cfg.header = h;
    }
    if r.columns.is_some() {
        cfg.columns = r.columns.clone();
    }
    if r.encoding.is_some() {
        cfg.encoding = r.encoding.clone();
    }
    if r.pattern.is_some() {
        cfg.pattern = r.pattern.clone();
    }
    if r.skip_unmatched {
        cfg.skip_unmatched = true;
    }
}

/// `--label-names`: `1=World,2=Sports,...`, or a file with one name per line.
fn label_names_flag(value: &str) -> crate::data::LabelNames {
    let path = std::path::Path::new(value);
    match value.contains('=') && !path.exists() {
        true => crate::data::LabelNames::Map(
            value.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect(),
        ),
        false => crate::data::LabelNames::File(path.to_path_buf()),
    }
}

/// The model's `max_position_embeddings`, when a model is named (by `--model`, or the config's
/// `[model]`); `None` when only a tokenizer is.
fn model_positions(model: Option<&str>, run: Option<&crate::config::RunConfig>) -> Result<Option<usize>> {
    let config = match (model, run) {
        (Some(m), _) => ModelFiles::resolve_config(m)?,
        (None, Some(r)) => match (&r.model.config, &r.model.name) {
            (Some(path), _) => path.clone(),
            (None, Some(name)) => ModelFiles::resolve_config(name)?,
            (None, None) => return Ok(None),
        },
        (None, None) => return Ok(None),
    };
    Ok(Some(crate::model::ModernBertConfig::from_file(&config)?.max_position_embeddings))
}

pub fn data(args: &DataArgs) -> Result<()> {
    let run = args.config.as_deref().map(|c| crate::config::RunConfig::from_file_with(c, &args.set)).transpose()?;
    let (mut cfg, model_from_config, task_from_config) = match &run {
        Some(run) => (run.data.clone(), Some(run.model.tokenizer_source()?), Some(run.target_kind())),
        None => (DataConfig::default(), None, None),
    };
    apply_source_flags(&mut cfg, &args.source);
    cfg.columns_from_flags = args.config.is_none();
    // The length train would use: the flag or the config's key, else the model's positions.
    let given = args.max_length.or(run.as_ref().filter(|r| r.max_length_given).map(|r| r.data.max_length));
    cfg.max_length = match given {
        Some(n) => n,
        None => match model_positions(args.model.as_deref(), run.as_ref()) {
            Ok(Some(p)) => p,
            Ok(None) => cfg.max_length,
            Err(e) => {
                eprintln!("note: {}; truncation is counted at {} tokens (pass --max-length)", e.chain(), cfg.max_length);
                cfg.max_length
            }
        },
    };
    cfg.validate()?;
    let augmenter = match (args.augment_preview, &cfg.augment, &run) {
        (None, _, _) => None,
        (Some(_), Some(a), Some(run)) => Some(crate::data::augment::Augmenter::new(a, run.training.seed)?),
        (Some(_), _, _) => crate::bail!("--augment-preview shows what a config's [data.augment] section does: pass --config with one"),
    };
    let kind = match args.task {
        Some(TaskArg::Classification) => Some(TargetKind::Classification),
        Some(TaskArg::MultiLabel) => Some(TargetKind::MultiLabel),
        Some(TaskArg::Regression) => Some(TargetKind::Regression),
        Some(TaskArg::TokenClassification) => Some(TargetKind::Tags),
        Some(TaskArg::None) => None,
        None => task_from_config.unwrap_or(Some(TargetKind::Classification)),
    };
    let tokenizer = match (&args.tokenizer, &args.model, model_from_config) {
        (Some(t), _, _) => t.clone(),
        (None, Some(m), _) => ModelFiles::resolve_tokenizer(m)?,
        (None, None, Some(source)) => source.resolve()?,
        (None, None, None) => crate::bail!("say whose tokenizer to use: --model DIR|HUB_ID or --tokenizer tokenizer.json"),
    };
    // No truncation here: the real lengths are what the report is about.
    let encoder = TextEncoder::from_file(&tokenizer, 1 << 24)?;
    let mut new_tokens = match &run {
        Some(run) => run.model.new_tokens()?,
        None => Vec::new(),
    };
    for t in &args.add_token {
        if !new_tokens.contains(t) {
            new_tokens.push(t.clone());
        }
    }
    // With added tokens, the data as train tokenizes it (and, for the comparison, without them).
    let (splits, without, added_ids) = if new_tokens.is_empty() {
        (load_splits(&cfg, &encoder, kind)?, None, Vec::new())
    } else {
        let mut extended = encoder.tokenizer().clone();
        let ids = crate::model::vocabulary::add_tokens(&mut extended, &new_tokens)?;
        let with = load_splits(&cfg, &TextEncoder::new(extended, 1 << 24)?, kind)?;
        (with, Some(load_splits(&cfg, &encoder, kind)?), ids)
    };
    if let (Some(n), Some(augmenter)) = (args.augment_preview, &augmenter) {
        let table = splits.train_table.as_ref().context("internal: the training rows as read were not kept")?;
        write!(std::io::stdout().lock(), "{}", augmenter.preview(table, n, args.json))?;
        return Ok(());
    }
    let mut stats = all_stats(&splits, cfg.max_length, args.batch_size.max(1), args.seed);
    if let Some(without) = &without {
        for ((st, with), without) in stats.iter_mut().zip(splits.all()).zip(without.all()) {
            st.added_tokens = Some(crate::data::stats::added_token_stats(with, without, &added_ids));
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        for s in &stats {
            writeln!(out, "{}", serde_json::to_string(s)?)?;
        }
    } else {
        writeln!(out, "data: {} (tokenizer {})\n", crate::data::dataset::describe(&cfg), tokenizer.display())?;
        write!(out, "{}", render(&stats, cfg.max_length, args.batch_size.max(1)))?;
    }
    Ok(())
}

pub fn train(args: &TrainArgs) -> Result<()> {
    use std::io::IsTerminal;
    let world = std::sync::Arc::new(crate::train::dist::World::from_launcher()?);
    // Ctrl-C, SIGTERM, SIGUSR1: a checkpoint at the end of the step, then the end (train::stop).
    crate::train::stop::listen(world.is_root())?;
    let opts = crate::train::TrainOptions {
        device: crate::device::parse_device(&args.device)?,
        progress: !args.quiet && std::io::stderr().is_terminal(),
        world: world.clone(),
    };
    if world.size() > 1 {
        // A rank that fails stops every rank (MPI_Abort) with its message: never a silent hang.
        return match train_as(args, &opts) {
            Ok(()) => Ok(()),
            // Every rank stopped at the same step after rank 0's checkpoint: MPI ends cleanly, rank 0 says why.
            Err(e) if e.kind() == Some(&crate::error::Kind::Stopped) => match world.is_root() {
                true => Err(e),
                false => Err(crate::error::Error::msg("stopped with rank 0").with_kind(crate::error::Kind::SaidElsewhere)),
            },
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error (rank {} of {}): {}", world.rank(), world.size(), e.chain());
                world.abort(1)
            }
        };
    }
    train_as(args, &opts)
}

fn train_as(args: &TrainArgs, opts: &crate::train::TrainOptions) -> Result<()> {
    let root = opts.world.is_root();
    let summary = match (&args.resume, &args.config) {
        (Some(target), _) => {
            let (dir, from) = crate::train::trainer::resume_target(target)?;
            if crate::train::trainer::is_complete(&dir) {
                if from.is_some() {
                    crate::bail!(
                        "{} is complete (its model is in {}); training again from {} would replace that model: copy the run folder and resume the copy",
                        dir.display(),
                        dir.join("model").display(),
                        target.display()
                    );
                }
                crate::say!(
                    "{} is complete: training finished and its model is in {}; nothing to resume (start a new run with --config)",
                    dir.display(),
                    dir.join("model").display()
                );
                return Ok(());
            }
            crate::train::resume(&dir, from, opts)?
        }
        (None, Some(path)) => {
            let mut set = args.set.clone();
            if args.no_truncate {
                set.push("data.truncate=false".to_string());
            }
            if !args.report_to.is_empty() {
                set.push(format!("output.report_to={:?}", args.report_to));
            }
            let cfg = crate::config::RunConfig::from_file_with(path, &set)?;
            if !root {
                // Rank 0 prepares the run folder.
                crate::train::train(&cfg, opts)?;
                return Ok(());
            }
            let aside = prepare_output_dir(&cfg.output.dir, args.overwrite)?;
            let result = crate::train::train(&cfg, opts);
            restore_or_drop(&cfg.output.dir, aside, result.is_ok())?;
            result?
        }
        (None, None) => crate::bail!("pass --config run.toml (or --resume RUN_DIR)"),
    };
    if root {
        print!("{}", render_summary(&summary));
    }
    Ok(())
}

/// A run folder is never replaced without --overwrite. With it, the old folder is moved aside
/// (returned) and removed only once the new run has succeeded; a new run that fails before its
/// first checkpoint gets the old folder back.
fn prepare_output_dir(dir: &std::path::Path, overwrite: bool) -> Result<Option<std::path::PathBuf>> {
    if dir.exists() && !dir.is_dir() {
        crate::bail!("output dir {} is a file; set output.dir to a folder (--set output.dir=runs/new)", dir.display());
    }
    let occupied = dir.is_dir() && std::fs::read_dir(dir)?.next().is_some();
    if !occupied {
        return Ok(None);
    }
    if !overwrite {
        crate::bail!(
            "output folder {} already exists; pass --overwrite to replace it, --resume {} to continue it, or set output.dir elsewhere (--set output.dir=runs/new)",
            dir.display(),
            dir.display()
        );
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "run".into());
    let aside = dir.with_file_name(format!(".{name}.replaced-{}", std::process::id()));
    std::fs::rename(dir, &aside).with_context(|| format!("cannot move {} aside to replace it", dir.display()))?;
    Ok(Some(aside))
}

fn restore_or_drop(dir: &std::path::Path, aside: Option<std::path::PathBuf>, succeeded: bool) -> Result<()> {
    let Some(old) = aside else { return Ok(()) };
    if succeeded {
        return std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove the replaced run {}", old.display()));
    }
    if dir.exists() {
        eprintln!("note: the run you asked to replace is kept in {}", old.display());
        Ok(())
    } else {
        std::fs::rename(&old, dir).with_context(|| format!("cannot put {} back in place", old.display()))
    }
}

pub fn render_summary(s: &crate::train::Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "\nrun {}", s.run_dir.display());
    let _ = writeln!(out, "  steps              {} ({:.2} epochs){}", s.steps, s.epochs, if s.stopped_early { ", stopped early" } else { "" });
    let _ = writeln!(out, "  training time      {:.1} s ({:.0} tokens/s)", s.train_seconds, s.tokens_per_second);
    if let Some((metric, value, ck)) = &s.best {
        let _ = writeln!(out, "  best {metric:<13} {value:.4} ({ck}, restored)");
    }
    for (name, ev) in [("validation", &s.validation), ("test", &s.test)] {
        if let Some(ev) = ev {
            let _ = writeln!(out, "  {name:<18} {}", crate::train::evaluate::format_metrics(&ev.metrics));
        }
    }
    let _ = writeln!(out, "  model              {}", s.model_dir.display());
    let _ = writeln!(out, "  metrics, plots     {}/metrics.jsonl, loss.svg{}", s.run_dir.display(), if s.validation.as_ref().is_some_and(|v| v.classification.is_some()) { ", confusion_matrix.svg" } else { "" });
    out
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    let opts = crate::commands::serve::ServeOptions {
        model: args.model.clone(),
        host: args.host.clone(),
        port: args.port,
        max_batch_tokens: args.max_batch_tokens,
        max_client_batch_size: args.max_client_batch_size,
        max_concurrent_requests: args.max_concurrent_requests,
        auto_truncate: args.auto_truncate,
        max_length: args.max_length,
        pooling: args.pooling.map(pooling),
        device: crate::device::parse_device(&args.device)?,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        payload_limit: args.payload_limit,
        bf16: args.precision == crate::cli::PrecisionArg::Bf16,
    };
    crate::commands::serve::run(&opts)
}

pub fn init(args: &InitArgs) -> Result<()> {
    if args.path.exists() && !args.overwrite {
        crate::bail!("{} already exists; pass --overwrite to replace it", args.path.display());
    }
    std::fs::write(&args.path, crate::config::TEMPLATE).with_context(|| format!("cannot write {}", args.path.display()))?;
    eprintln!("wrote {}: edit [model] and [data], then run `modernft train --config {}`", args.path.display(), args.path.display());
    Ok(())
}

fn data_format(f: DataFormatArg) -> Format {
    match f {
        DataFormatArg::Jsonl => Format::Jsonl,
        DataFormatArg::Csv => Format::Csv,
        DataFormatArg::Tsv => Format::Tsv,
        DataFormatArg::Parquet => Format::Parquet,
        DataFormatArg::Conll => Format::Conll,
        DataFormatArg::Text => Format::Text,
        DataFormatArg::Lines => Format::Lines,
    }
}

fn pooling(p: PoolingArg) -> crate::model::Pooling {
    match p {
        PoolingArg::Cls => crate::model::Pooling::Cls,
        PoolingArg::Mean => crate::model::Pooling::Mean,
    }
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    use crate::commands::eval::{evaluate_files, render, to_json, write_plot, EvalOptions};
    let device = crate::device::parse_device(&args.device)?;
    // Files and columns: from --data and flags, or a run config's [data] section.
    let mut cfg = match &args.config {
        Some(path) => crate::config::RunConfig::from_file(path)?.data,
        None => DataConfig::default(),
    };
    apply_column_flags(&mut cfg, &args.columns);
    cfg.columns_from_flags = args.config.is_none();
    let (files, read) = if !args.data.is_empty() || args.corpus.is_some() {
        (args.data.clone(), cfg.read_options()?)
    } else {
        let (train, validation, test) = cfg.split_files()?;
        let chosen = match args.split {
            SplitArg::Train => Some(train),
            SplitArg::Validation => validation,
            SplitArg::Test => test,
        };
        let split = chosen.with_context(|| format!("the config has no {:?} split; pass --data FILE or --split", args.split))?;
        (split.files, split.read)
    };
    // A model without a classification head is an embedding model: STS or retrieval.
    let files_probe = crate::model::ModelFiles::resolve(&args.model)?;
    let masked_lm = crate::inference::fill_mask::FillMask::is_masked_lm(&crate::model::ModernBertConfig::from_file(&files_probe.config)?);
    if masked_lm && cfg.text_pair_column.is_none() && args.corpus.is_none() {
        crate::bail!(
            "{} is a masked-LM (ModernBertForMaskedLM): `modernft predict` fills its [MASK] tokens, and its training run reports the masked-token loss, accuracy and perplexity; to classify, fine-tune it first (`[model] name = \"{}\"` in a task config); pairs (--text-pair-column) evaluate its encoder as embeddings",
            files_probe.origin,
            args.model
        );
    }
    let is_embedding = files_probe.sentence.is_some()
        || !crate::model::Weights::open(&files_probe.weights)?.contains("classifier.weight");
    if is_embedding {
        let opts = crate::inference::embedder::EmbedderOptions {
            model: args.model.clone(),
            pooling: None,
            normalize: false,
            max_length: args.lengths.max_length,
            truncate: !args.lengths.no_truncate,
            prefix: None,
            device: device.clone(),
            bf16: false,
        };
        let batch_size = args.lengths.budget(args.batch_size);
        let embedder = crate::inference::embedder::Embedder::load(&opts)?;
        let ev = match (&args.corpus, &args.queries) {
            (Some(c), Some(q)) => crate::commands::eval::retrieval_files(&embedder, c, q, batch_size)?,
            _ => {
                // A score column named by a flag or the config must exist; the default `label` may
                // be absent (then `score` is tried, as STS-B names it).
                let named = args.columns.label_column.is_some() || (args.config.is_some() && cfg.label_column != DataConfig::default().label_column);
                let how = crate::commands::eval::PairScoring { evaluation: args.evaluation.into(), score_column_named: named };
                crate::commands::eval::pair_files(&embedder, &files, &read, &cfg.columns(true), batch_size, &how)?
            }
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if args.json {
            let mut v = serde_json::json!({"model": args.model, "task": "embedding", "evaluation": ev.kind, "why": ev.why, "rows": ev.rows});
            for (k, m) in &ev.metrics {
                v[k] = serde_json::json!(m);
            }
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "model  {}\nevaluation  {} ({} {}): {}\n",
                args.model,
                ev.kind,
                ev.rows,
                if ev.kind == "sts" { "pairs" } else { "queries" },
                ev.why
            )?;
            for (k, m) in &ev.metrics {
                writeln!(out, "{k:<12} {m:.4}")?;
            }
        }
        return Ok(());
    }
    let classifier = crate::commands::predict::Classifier::load(&args.model, &args.lengths.lengths(), &device)?;
    let scheme = match args.entity_scheme {
        crate::cli::SchemeArg::Default => crate::tasks::EntityScheme::Default,
        crate::cli::SchemeArg::StrictIob2 => crate::tasks::EntityScheme::StrictIob2,
    };
    let opts = EvalOptions {
        files: files.clone(),
        read,
        label_names: cfg.label_names.clone(),
        allow_unknown_labels: args.allow_unknown_labels,
        columns: cfg.columns_for(Some(classifier.kind), false),
        budget: args.lengths.budget(args.batch_size),
        threshold: args.threshold,
        scheme,
    };
    let (ev, labels) = evaluate_files(&classifier, &opts)?;
    let labels = &labels;
    let data_desc = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        writeln!(out, "{}", to_json(&ev, labels, &classifier.files.origin, &data_desc, classifier.kind))?;
    } else {
        write!(out, "{}", render(&ev, labels, &classifier.files.origin, &data_desc))?;
    }
    if let Some(dir) = &args.plot {
        if let Some(p) = write_plot(&ev, labels, dir)? {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(())
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    let opts = crate::commands::predict::PredictOptions {
        model: args.model.clone(),
        input_format: match args.input_format {
            InputFormatArg::Auto => crate::commands::embed::InputFormat::Auto,
            InputFormatArg::Text => crate::commands::embed::InputFormat::Text,
            InputFormatArg::Jsonl => crate::commands::embed::InputFormat::Jsonl,
        },
        all_scores: args.all_scores,
        top_k: args.top_k,
        logits: args.logits,
        threshold: args.threshold,
        budget: args.lengths.budget(args.batch_size),
        lengths: args.lengths.lengths(),
        device: crate::device::parse_device(&args.device)?,
        table: predict_table(args)?,
        shard: args.part.shard()?,
    };
    write_output(&args.part, opts.shard.as_ref(), "jsonl", &mut |out| match &args.input {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open --input {}", path.display()))?;
            crate::commands::predict::run(&opts, BufReader::new(file), &path.display().to_string(), out, &mut std::io::stderr())
        }
        None => crate::commands::predict::run(&opts, std::io::stdin().lock(), "stdin", out, &mut std::io::stderr()),
    })
}

/// `predict --input` as a data file: a .csv, .tsv or .parquet file, or any file read with the data
/// flags (--format, --header, --columns, --encoding, --pattern) or naming its columns.
fn predict_table(args: &PredictArgs) -> Result<Option<crate::commands::predict::TableInput>> {
    let text_flags = !args.text.text_column.is_empty() || args.text.text_pair_column.is_some() || args.text.text_separator.is_some();
    let Some(path) = &args.input else {
        if args.read.any() || text_flags {
            crate::bail!("--format, --header, --columns, --encoding, --pattern and the column flags read a data file: pass it with --input");
        }
        return Ok(None);
    };
    let data_file = matches!(Format::from_path(path), Ok(Format::Csv | Format::Tsv | Format::Parquet | Format::Lines));
    if !(data_file || args.read.any() || text_flags) {
        return Ok(None);
    }
    let mut cfg = DataConfig::default();
    apply_text_flags(&mut cfg, &args.text);
    apply_read_flags(&mut cfg, &args.read);
    cfg.columns_from_flags = true;
    Ok(Some(crate::commands::predict::TableInput { path: path.clone(), read: cfg.read_options()?, columns: cfg.columns(false) }))
}

pub fn save(args: &SaveArgs) -> Result<()> {
    let opts = crate::commands::save::SaveOptions {
        format: match args.format {
            ExportFormatArg::Hf => crate::commands::save::ExportFormat::Hf,
            ExportFormatArg::SentenceTransformers => crate::commands::save::ExportFormat::SentenceTransformers,
        },
        dtype: crate::commands::save::parse_dtype(&args.dtype)?,
        pooling: args.pooling.map(pooling),
        normalize: args.normalize,
        overwrite: args.overwrite,
    };
    crate::commands::save::save(&args.source, &args.out, &opts)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

pub fn bench(args: &crate::cli::BenchArgs) -> Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().map_err(|e| crate::err!("--threads: {e}"))?;
    }
    if args.mode == "kernels" {
        for line in crate::commands::bench_kernels::run(args.batch.max(1), args.seq.unwrap_or(128).max(1), args.steps)? {
            println!("{line}");
        }
        return Ok(());
    }
    if args.mode != "train" && args.mode != "embed" {
        crate::bail!("--mode must be train, embed or kernels");
    }
    let opts = crate::commands::bench::BenchOptions {
        size: args.size.clone().unwrap_or_else(|| if args.data.is_some() { "base".into() } else { "tiny".into() }),
        model_dir: args.model_dir.clone(),
        train: args.mode == "train",
        batch: args.batch.max(1),
        seq: args.seq.unwrap_or(if args.data.is_some() { 512 } else { 128 }),
        steps: args.steps.max(1),
        warmup: args.warmup,
        data: args.data.clone(),
        tokenizer: args.tokenizer.clone(),
        rows: args.rows,
        group_by_length: args.group_by_length,
        group_mult: args.group_mult,
        bf16: args.dtype == "bf16",
        padded: args.padded,
        device: crate::device::parse_device(&args.device)?,
    };
    println!("{}", crate::commands::bench::run(&opts)?);
    Ok(())
}
