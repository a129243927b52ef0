//! Evaluation during training: the validation split scored, the best checkpoint tracked, early
//! stopping decided.

use std::collections::BTreeMap;

use indicatif::ProgressBar;
use serde_json::json;

use crate::data::{Dataset, TokenStore};
use crate::error::{Context, Result};
use crate::tasks::{self, Evaluation};
use crate::train::checkpoint::TrainingState;
use crate::train::setup::{EmbeddingRun, Run};
use crate::train::log::{append_metrics, epoch_of};

/// Evaluates on the validation split, logs it, tracks the best checkpoint; returns whether early
/// stopping ends the run.
pub(crate) fn evaluate_and_track(run: &Run, state: &mut TrainingState, bar: &ProgressBar) -> Result<bool> {
    let t = &run.cfg.training;
    let metric = t.metric_for_best_model.trim_start_matches("eval_");
    let ev = evaluate(run)?;
    let mut line = json!({"type": "eval", "step": state.step, "epoch": epoch_of(run, state)});
    for (k, v) in &ev.metrics {
        line[format!("eval_{k}")] = json!(v);
    }
    // Every rank has the same numbers (sharded, then gathered: the same early stopping); rank 0 reports.
    if run.world.is_root() {
        append_metrics(&run.dir, line)?;
        bar.suspend(|| crate::say!("eval at step {}: {}", state.step, format_metrics(&ev.metrics)));
    }
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
    if stop && run.world.is_root() {
        bar.suspend(|| crate::say!("early stopping: no improvement in {metric} for {} evaluations", state.evals_without_improvement));
    }
    Ok(stop)
}

pub(crate) fn evaluate(run: &Run) -> Result<Evaluation> {
    let ds = run.splits.validation.as_ref().context("no validation split")?;
    evaluate_on(run, ds)
}

pub(crate) fn evaluate_on(run: &Run, ds: &Dataset) -> Result<Evaluation> {
    if let Some(e) = &run.embedding {
        return evaluate_embeddings(run, e, ds);
    }
    if let Some(m) = &run.mlm {
        return evaluate_masked_lm(run, m, ds);
    }
    let mut scorer = tasks::Scorer::new(run.kind, run.config.num_labels(), 0.5).with_tags(&run.config.id2label, run.cfg.training.entity_scheme);
    let (model, budget) = (&run.loaded.model, crate::inference::Budget::rows(run.cfg.training.eval_batch_size));
    let rows = shard(run, &ds.tokens);
    let logits = match scorer.kind() {
        crate::data::TargetKind::Tags => tasks::RowLogits::Tokens(run.world.gather_nested(crate::inference::token_logits(model, &rows, budget)?)?),
        _ => tasks::RowLogits::Sequence(run.world.gather_rows(crate::inference::sequence_logits(model, &rows, budget)?)?),
    };
    scorer.add(ds, logits)?;
    scorer.finish()
}

/// Evaluation is sharded: each rank runs the model over its contiguous share of the split's rows
/// (all of them for one process); what comes out is gathered whole, in row order, on every rank,
/// which then scores it as one process does (the same metrics everywhere, so the same decisions).
fn shard<'a>(run: &Run, store: &'a TokenStore) -> Vec<&'a [u32]> {
    let all: Vec<usize> = (0..store.len()).collect();
    run.world.part(&all).iter().map(|&i| store.row(i)).collect()
}

/// Masked-token loss, accuracy and perplexity on a split, each row masked the same way at every
/// evaluation.
pub(crate) fn evaluate_masked_lm(run: &Run, masking: &crate::tasks::mlm::Masking, ds: &Dataset) -> Result<Evaluation> {
    let model = &run.loaded.model;
    let mut score = crate::tasks::mlm::MlmScore::default();
    let all: Vec<usize> = (0..ds.len()).collect();
    let rows = run.world.part(&all);
    for chunk in rows.chunks(run.cfg.training.eval_batch_size.max(1)) {
        let (batch, at, targets) = crate::train::step::masked_batch(masking, &ds.tokens, chunk, crate::tasks::mlm::EVALUATION, run.config.pad_token_id, model.model.device())?;
        if at.is_empty() {
            continue;
        }
        let hidden = model.masked_hidden(&batch, &at, &crate::model::Mode::eval())?;
        // Logits a few hundred targets at a time: [targets, vocab] of a whole batch can be gigabytes.
        for start in (0..at.len()).step_by(256) {
            let n = 256.min(at.len() - start);
            let logits = model.mlm_decode(&hidden.narrow(0, start, n)?)?;
            let vocab = logits.dim(1)?;
            score.add(&logits.flatten_all()?.to_vec1::<f32>()?, vocab, &targets[start..start + n]);
        }
    }
    // The ranks' sums added up (one process: the same numbers).
    let mut sums = [score.loss_sum, score.correct as f64, score.targets as f64];
    run.world.sum_f64(&mut sums)?;
    let score = crate::tasks::mlm::MlmScore { loss_sum: sums[0], correct: sums[1] as usize, targets: sums[2] as usize };
    let metrics = score.metrics();
    Ok(Evaluation::of_metrics(ds.len(), metrics["loss"], metrics))
}

/// STS or retrieval scores of the current encoder on a split of pairs.
pub(crate) fn evaluate_embeddings(run: &Run, e: &EmbeddingRun, ds: &Dataset) -> Result<Evaluation> {
    let bs = run.cfg.training.eval_batch_size;
    let all = |store: &TokenStore| run.world.gather_rows(crate::inference::embeddings(&run.loaded.model, &shard(run, store), e.pooling, false, crate::inference::Budget::rows(bs))?);
    let a = all(&ds.tokens)?;
    let b = all(ds.extra.first().context("pairs need a second text column")?)?;
    let metrics = match (e.eval.as_str(), &ds.targets) {
        ("sts", Some(crate::data::Targets::Regression(gold))) => crate::tasks::embedding::sts(&a, &b, gold),
        ("sts", _) => crate::bail!("{}: STS evaluation needs a score per pair (label_column)", ds.source),
        _ => crate::tasks::embedding::retrieval(&a, &b, &(0..a.len()).map(|i| vec![i]).collect::<Vec<_>>()),
    };
    Ok(Evaluation::of_metrics(ds.len(), f64::NAN, metrics))
}

pub fn format_metrics(m: &BTreeMap<String, f64>) -> String {
    m.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join(" · ")
}
