//! The end of a run: the best weights restored, the model exported, the final evaluation logged,
//! plots written.


use candle_core::Tensor;
use serde_json::{json, Value};

use crate::data::Dataset;
use crate::error::{Context, Result};
use crate::report;
use crate::tasks::Evaluation;
use crate::train::checkpoint::{self, ModelFolder, TrainingState};
use crate::train::setup::Run;
use crate::train::log::{append_metrics, epoch_of};
use crate::train::trainer::Summary;
use crate::train::evaluate::evaluate_on;

pub(crate) fn finish(run: Run, state: TrainingState, stopped_early: bool) -> Result<Summary> {
    let root = run.world.is_root();
    // The best weights replace the last ones: rank 0 reads them, every rank gets them (the run
    // folder need not be on a file system the other ranks see).
    let mut best = None;
    if let (true, Some(name), Some(value)) = (run.cfg.training.load_best_model_at_end, &state.best_checkpoint, state.best_metric) {
        if root {
            let path = run.dir.join(name);
            let tensors = candle_core::safetensors::load(path.join("model.safetensors"), run.loaded.model.model.device())?;
            for (n, var) in &run.loaded.params {
                var.set(tensors.get(n).with_context(|| format!("{}: no tensor {n}", path.display()))?)?;
            }
        }
        run.world.broadcast_weights(&run.loaded.params)?;
        best = Some((run.cfg.training.metric_for_best_model.clone(), value, name.clone()));
    }
    let model_dir = run.dir.join("model");
    if root {
        export(&run, &model_dir)?;
    }
    // Every rank scores its share of each split (sharded evaluation); rank 0 writes.
    let validation = run.splits.validation.as_ref().map(|d| evaluate_on(&run, d)).transpose()?;
    let test = run.splits.test.as_ref().map(|d| evaluate_on(&run, d)).transpose()?;
    let epochs = epoch_of(&run, &state);
    if root {
        write_results(&run, &state, stopped_early, validation.as_ref(), test.as_ref())?;
    }
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

/// The final model, as transformers (or, for embedding runs, sentence-transformers) loads it.
fn export(run: &Run, model_dir: &std::path::Path) -> Result<()> {
    checkpoint::write_folder_atomic(model_dir, |tmp| match &run.embedding {
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
    })
}

/// The final scores in `metrics.jsonl`, the plots, and last `trainer_state.json`.
fn write_results(run: &Run, state: &TrainingState, stopped_early: bool, validation: Option<&Evaluation>, test: Option<&Evaluation>) -> Result<()> {
    for (name, ev) in [("validation", validation), ("test", test)] {
        if let Some(ev) = ev {
            let mut line = json!({"type": "final", "split": name, "step": state.step});
            for (k, v) in &ev.metrics {
                line[k] = json!(v);
            }
            append_metrics(&run.dir, line)?;
        }
    }
    write_plots(run, validation)?;
    // Last: what actually happened, for `is_complete`, `--resume` and the model card.
    let epochs = epoch_of(run, state);
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
    checkpoint::write_atomic(&run.dir.join("trainer_state.json"), serde_json::to_string_pretty(&trainer_state)?.as_bytes())
}

pub(crate) fn write_plots(run: &Run, validation: Option<&Evaluation>) -> Result<()> {
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
