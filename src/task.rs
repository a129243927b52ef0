//! Per task: targets as tensors, the loss, predictions, and evaluation over a dataset.
//!
//! | task | head output | loss (as transformers) | metrics |
//! |---|---|---|---|
//! | classification | logits [b, labels] | cross-entropy | accuracy, precision/recall/F1, MCC |
//! | multi-label | logits [b, labels] | BCE with logits | subset accuracy, micro/macro F1 |
//! | regression | [b, 1] | MSE | MSE, MAE, Pearson, Spearman |

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use crate::data::{Batch, Dataset, Sampler, TargetKind, Targets};
use crate::error::Result;
use crate::metrics::{self, Classification, MultiLabel, Regression};
use crate::model::loss::{cross_entropy, mse};
use crate::model::{Mode, ModernBert};

/// `problem_type` as transformers names it.
pub fn problem_type(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Classification => "single_label_classification",
        TargetKind::MultiLabel => "multi_label_classification",
        TargetKind::Regression => "regression",
    }
}

/// The targets of `rows` as a tensor the loss takes.
pub fn target_tensor(targets: &Targets, rows: &[usize], num_labels: usize, dev: &Device) -> Result<Tensor> {
    Ok(match targets {
        Targets::Class(v) => Tensor::from_vec(rows.iter().map(|&i| v[i]).collect::<Vec<u32>>(), rows.len(), dev)?,
        Targets::Regression(v) => Tensor::from_vec(rows.iter().map(|&i| v[i]).collect::<Vec<f32>>(), rows.len(), dev)?,
        Targets::MultiLabel(v) => {
            let mut hot = vec![0f32; rows.len() * num_labels];
            for (r, &i) in rows.iter().enumerate() {
                v[i].iter().for_each(|&c| hot[r * num_labels + c as usize] = 1.0);
            }
            Tensor::from_vec(hot, (rows.len(), num_labels), dev)?
        }
    })
}

/// `BCEWithLogitsLoss()` (mean): max(x, 0) - x·y + log(1 + exp(-|x|)).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(((logits.relu()? - (logits * targets)?)? + softplus)?.mean_all()?)
}

/// The task's loss of a batch; `logits` in the model dtype.
pub fn loss(kind: TargetKind, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    match kind {
        TargetKind::Classification => cross_entropy(&logits, targets),
        TargetKind::MultiLabel => bce_with_logits(&logits, targets),
        TargetKind::Regression => mse(&logits.flatten_all()?, targets),
    }
}

/// Predictions of a whole dataset, in row order.
#[derive(Clone, Debug, PartialEq)]
pub enum Predictions {
    Class(Vec<u32>),
    MultiLabel(Vec<Vec<u32>>),
    Regression(Vec<f32>),
}

#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f64,
    /// Flat metrics by name (`accuracy`, `f1`, `mse`, ...), as logged with an `eval_` prefix.
    pub metrics: BTreeMap<String, f64>,
    pub classification: Option<Classification>,
    pub multi_label: Option<MultiLabel>,
    pub regression: Option<Regression>,
    pub predictions: Predictions,
    /// Raw logits in row order, [rows][labels].
    pub logits: Vec<Vec<f32>>,
}

/// Runs the model over `ds` in batches (memory bounded by the batch) and scores it.
pub fn evaluate(
    model: &ModernBert,
    ds: &Dataset,
    kind: TargetKind,
    batch_size: usize,
    pad_id: u32,
    threshold: f32,
) -> Result<Evaluation> {
    let targets = ds.targets.as_ref().ok_or_else(|| crate::err!("{}: no labels to evaluate against", ds.source))?;
    let num_labels = model.config().num_labels();
    let dev = model.model.device().clone();
    // Length-sorted batches pad little; results are put back in row order.
    let sampler = Sampler::new(ds.tokens.lengths(), batch_size, false, true, 0);
    let mut logits_rows = vec![Vec::new(); ds.len()];
    let (mut loss_sum, mut count) = (0f64, 0usize);
    for rows in sampler.epoch(0) {
        let batch = Batch::new(ds, &rows, pad_id, &dev)?;
        let logits = model
            .forward(&batch.input_ids, Some(&batch.attention_mask), &Mode::eval())?
            .logits
            .ok_or_else(|| crate::err!("the model has no classification head"))?
            .to_dtype(DType::F32)?;
        let t = target_tensor(targets, &rows, num_labels, &dev)?;
        loss_sum += loss(kind, &logits, &t)?.to_scalar::<f32>()? as f64 * rows.len() as f64;
        count += rows.len();
        for (&r, l) in rows.iter().zip(logits.to_vec2::<f32>()?) {
            logits_rows[r] = l;
        }
    }
    let mean_loss = loss_sum / count.max(1) as f64;
    let mut metrics = BTreeMap::from([("loss".to_string(), mean_loss)]);
    let mut ev = Evaluation {
        loss: mean_loss,
        metrics: BTreeMap::new(),
        classification: None,
        multi_label: None,
        regression: None,
        predictions: Predictions::Class(Vec::new()),
        logits: Vec::new(),
    };
    match (kind, targets) {
        (TargetKind::Classification, Targets::Class(truth)) => {
            let pred: Vec<u32> = logits_rows.iter().map(|l| argmax(l)).collect();
            let m = metrics::classification(truth, &pred, num_labels);
            metrics.extend(metrics::flat(&[
                ("accuracy", m.accuracy),
                ("f1", m.f1_macro),
                ("f1_macro", m.f1_macro),
                ("f1_micro", m.f1_micro),
                ("precision", m.precision_macro),
                ("recall", m.recall_macro),
                ("mcc", m.mcc),
            ]));
            ev.classification = Some(m);
            ev.predictions = Predictions::Class(pred);
        }
        (TargetKind::MultiLabel, Targets::MultiLabel(truth)) => {
            let pred: Vec<Vec<u32>> = logits_rows
                .iter()
                .map(|l| l.iter().enumerate().filter(|(_, &x)| sigmoid(x) >= threshold).map(|(i, _)| i as u32).collect())
                .collect();
            let m = metrics::multi_label(truth, &pred, num_labels);
            metrics.extend(metrics::flat(&[
                ("subset_accuracy", m.subset_accuracy),
                ("accuracy", m.subset_accuracy),
                ("f1", m.f1_micro),
                ("f1_micro", m.f1_micro),
                ("f1_macro", m.f1_macro),
            ]));
            ev.multi_label = Some(m);
            ev.predictions = Predictions::MultiLabel(pred);
        }
        (TargetKind::Regression, Targets::Regression(truth)) => {
            let pred: Vec<f32> = logits_rows.iter().map(|l| l[0]).collect();
            let m = metrics::regression(truth, &pred);
            metrics.extend(metrics::flat(&[("mse", m.mse), ("mae", m.mae), ("pearson", m.pearson), ("spearman", m.spearman)]));
            ev.regression = Some(m);
            ev.predictions = Predictions::Regression(pred);
        }
        _ => crate::bail!("{}: the targets do not match the task", ds.source),
    }
    ev.metrics = metrics;
    ev.logits = logits_rows;
    Ok(ev)
}

pub fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0 as u32
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bce_matches_the_definition() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[2f32, -1.0], [0.5, 30.0]], &dev).unwrap();
        let y = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev).unwrap();
        let got = bce_with_logits(&x, &y).unwrap().to_scalar::<f32>().unwrap() as f64;
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let want = -((s(2.0)).ln() + (1.0 - s(-1.0)).ln() + (1.0 - s(0.5)).ln() + s(30.0).ln()) / 4.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
