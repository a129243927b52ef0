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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Var};
use serde_json::{json, Value};

use crate::config::RunConfig;
use crate::data::SamplerState;
use crate::error::{Context, Result};
use crate::model::Mode;
use crate::rng::Rng;
use crate::tasks::Evaluation;
use crate::train::checkpoint::{self, list_checkpoints, read_state, TrainingState};
use crate::train::evaluate::evaluate_and_track;
use crate::train::finish::finish;
use crate::train::setup::{install_tokenizer, prepare, synonyms_copy, Run};
use crate::train::dist::World;
use crate::train::log::Log;
use crate::train::step::step;


pub struct TrainOptions {
    pub device: Device,
    /// Draw progress bars (the CLI sets this when stderr is a terminal).
    pub progress: bool,
    /// The processes training together (`World::single()` unless launched by MPI).
    pub world: Arc<World>,
}

impl TrainOptions {
    /// One process on `device`.
    pub fn new(device: Device, progress: bool) -> TrainOptions {
        TrainOptions { device, progress, world: Arc::new(World::single()) }
    }
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

/// Starts a new run in `cfg.output.dir` (which must not exist, or be empty). Everything that can be
/// checked (files, columns, labels, the model, the best-model metric) is checked before the folder
/// is created; a run that fails before its first checkpoint removes the folder it created, so the
/// corrected rerun is not refused.
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<Summary> {
    let dir = cfg.output.dir.clone();
    let existed = dir.exists();
    let world = &opts.world;
    let mut run = prepare(cfg, &dir, None, &opts.device, world.clone(), world.size())?;
    if !world.is_root() {
        // Rank 0 writes the run folder; the others only train.
        let state = TrainingState::new(cfg.training.seed, world.size());
        return run_loop(run, state, opts);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the run folder {}", dir.display()))?;
    let started = (|| -> Result<()> {
        checkpoint::write_atomic(&dir.join("config.toml"), run.cfg.to_toml()?.as_bytes())?;
        checkpoint::write_atomic(&dir.join("metrics.jsonl"), b"")?;
        if let (Some(copy), Some(from)) = (synonyms_copy(&run.cfg, &dir), run.cfg.data.augment.as_ref().and_then(|a| a.synonyms.as_ref())) {
            let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
            checkpoint::write_atomic(&copy, &bytes)?;
        }
        if run.cfg.output.report_to.iter().any(|r| r == "tensorboard") {
            crate::train::tensorboard::start(&dir, &run.cfg.to_toml()?)?;
        }
        install_tokenizer(&mut run)
    })();
    let state = TrainingState::new(cfg.training.seed, world.size());
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
    let world = &opts.world;
    if world.is_root() {
        checkpoint::remove_partial_writes(dir)?;
    }
    world.barrier();
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
    let global_batch = cfg.training.batch_size * state.processes;
    if world.size() > global_batch {
        crate::bail!(
            "{} trains {global_batch} rows per micro-batch ({} per process × {} processes); {} ranks would leave some without rows: resume it on at most {global_batch} ranks",
            dir.display(),
            cfg.training.batch_size,
            state.processes,
            world.size()
        );
    }
    if world.is_root() && world.size() != state.processes {
        crate::say!(
            "note: the run started on {} processes and resumes on {}: the global batch stays {global_batch} rows per micro-batch (up to {} per rank)",
            state.processes,
            world.size(),
            global_batch.div_ceil(world.size())
        );
    }
    let mut run = prepare(&cfg, dir, Some(&latest), &opts.device, world.clone(), state.processes).map_err(refuse)?;
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
        p.moments = Var::from_tensor(&m.contiguous()?)?;
    }
    run.optimizer.step = state.step as u64;
    if !world.is_root() {
        return run_loop(run, state, opts);
    }
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
    crate::train::tensorboard::truncate_after(dir, state.step as u64)?;
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
            crate::say!("note: {} comes after the chosen checkpoint; moved to {}", ck.display(), to.display());
        }
    }
    crate::say!("resuming {} from {} (step {})", dir.display(), latest.display(), state.step);
    run_loop(run, state, opts)
}

/// The loop, top to bottom: take the step's micro-batches, train on them, then log, evaluate, save
/// and stop as the step calls for. Each epoch's batch order is `sampler.epoch(e)`, so a resumed run
/// sees the same batches as an uninterrupted one, in every epoch.
fn run_loop(mut run: Run, mut state: TrainingState, opts: &TrainOptions) -> Result<Summary> {
    let mut log = Log::new(&run, &state, opts.progress);
    // Every rank starts from rank 0's weights.
    run.world.broadcast_weights(&run.loaded.params)?;
    let mode = Mode::train_sparse(Rng::from_state(state.rng));
    let clock = (Instant::now(), state.train_seconds);
    let mut epoch = Epoch::default();
    let mut stopped_early = false;
    while state.step < run.total_steps && !stopped_early {
        let group = epoch.next_step(&mut run, &mut state.sampler)?;
        log.batches(&run, &state, &group)?;
        let (loss, grad_norm, lr, tokens) = step(&mut run, &group, &mode, state.step, state.sampler.epoch)?;
        state.step += 1;
        state.tokens_seen += tokens as u64;
        state.train_seconds = clock.1 + clock.0.elapsed().as_secs_f64();
        let epoch_done = epoch.advance(&mut state.sampler, group.len());
        let last = state.step == run.total_steps;
        log.step(&run, &state, (loss, grad_norm, lr), last)?;
        let (evaluate_now, save_now) = due(&run, &state, epoch_done, last);
        if evaluate_now {
            // Every rank scores its share and gets the whole metrics; rank 0's decision is the one all follow.
            stopped_early = run.world.root_says(evaluate_and_track(&run, &mut state, &log.bar)?)?;
        }
        state.rng = mode.rng_state();
        // A stop request (Ctrl-C, SIGTERM, SIGUSR1: train::stop) on any rank stops every rank at the same step.
        let interrupted = run.world.any(super::stop::requested().is_some())?;
        if (save_now || evaluate_now || interrupted || stopped_early) && run.world.is_root() {
            checkpoint::save(&run, &state)?;
        }
        if interrupted {
            // The other ranks wait for rank 0's checkpoint before they stop.
            run.world.barrier();
            log.bar.abandon();
            let at = run.dir.join(format!("checkpoint-{}", state.step));
            let by = super::stop::requested().unwrap_or("a signal to another rank");
            return Err(crate::err!("interrupted by {by} at step {}; checkpoint saved in {}; continue with `modernft train --resume {}`", state.step, at.display(), run.dir.display()).with_kind(crate::error::Kind::Stopped));
        }
    }
    log.bar.finish_and_clear();
    finish(run, state, stopped_early)
}

/// The batch order of the epoch the sampler is in, computed once per epoch (after the run enters
/// the epoch: with augmentation, that makes the epoch's copies).
#[derive(Default)]
struct Epoch {
    order: Option<(usize, Vec<Vec<usize>>)>,
}

impl Epoch {
    fn batches(&mut self, run: &mut Run, epoch: usize) -> Result<&[Vec<usize>]> {
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            run.enter_epoch(epoch)?;
            self.order = Some((epoch, run.sampler.epoch(epoch)));
        }
        Ok(&self.order.as_ref().expect("set above").1)
    }

    /// The micro-batches of the next optimizer step: `ga` of them, fewer at the end of an epoch
    /// (moving `at` to the next epoch first when this one is done).
    fn next_step(&mut self, run: &mut Run, at: &mut SamplerState) -> Result<Vec<Vec<usize>>> {
        let ga = run.ga;
        while at.batch >= self.batches(run, at.epoch)?.len() {
            *at = SamplerState { epoch: at.epoch + 1, batch: 0 };
        }
        let batches = self.batches(run, at.epoch)?;
        Ok(batches[at.batch..(at.batch + ga).min(batches.len())].to_vec())
    }

    /// Moves `at` past `micro` micro-batches; returns whether that ended the epoch (then `at` is
    /// the next epoch's first batch).
    fn advance(&mut self, at: &mut SamplerState, micro: usize) -> bool {
        at.batch += micro;
        let done = self.order.as_ref().is_some_and(|(_, b)| at.batch >= b.len());
        if done {
            *at = SamplerState { epoch: at.epoch + 1, batch: 0 };
        }
        done
    }
}

/// What a finished step calls for: (evaluate, save). The end of training is always both (as in
/// transformers' Trainer); an evaluation is always followed by a checkpoint.
fn due(run: &Run, state: &TrainingState, epoch_done: bool, last: bool) -> (bool, bool) {
    let t = &run.cfg.training;
    let evaluate = run.splits.validation.is_some()
        && match t.eval_strategy.as_str() {
            "epoch" => epoch_done || last,
            "steps" => state.step % t.eval_steps.unwrap_or(usize::MAX) == 0 || last,
            _ => false,
        };
    let save = t.save_steps.is_some_and(|n| n > 0 && state.step % n == 0) || (epoch_done && t.eval_strategy == "no") || last;
    (evaluate, save)
}

pub(crate) fn last_checkpoint_hint(dir: &Path) -> String {
    match list_checkpoints(dir).ok().and_then(|mut v| v.pop()) {
        Some((_, p)) => format!("; the last good checkpoint, {}, is intact", p.display()),
        None => String::new(),
    }
}

