//! The one inference path: token ids in, one result per row out, in input order. `embed`, `predict`,
//! `eval` and the trainer's evaluation all run through here.
//!
//! ```text
//! rows of ids → batches (longest first, within a row and token budget) → Packed → forward
//!             → pool (+ L2 normalisation) | sequence logits | token logits → back in input order
//! ```

pub mod classifier;
pub mod embedder;
pub mod fill_mask;

use candle_core::DType;

use crate::data::{Dataset, TargetKind};
use crate::error::{Context, Result};
use crate::model::{l2_normalize, Mode, ModernBert, Packed, Pooling};
use crate::tasks::{RowLogits, Scorer};

/// `--max-length` and `--no-truncate`, as every inference command takes them (see
/// [`crate::model::max_length_rule`] and [`crate::data::TextEncoder::count_truncated`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lengths {
    pub max_length: Option<usize>,
    /// Cut longer inputs (and count them), or refuse them.
    pub truncate: bool,
}

impl Default for Lengths {
    fn default() -> Self {
        Lengths { max_length: None, truncate: true }
    }
}

impl Lengths {
    /// The asked max_length, named as the flag.
    pub fn asked(&self) -> Option<(usize, String)> {
        self.max_length.map(|n| (n, "--max-length".to_string()))
    }
}

/// How much one forward pass may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Rows per batch (at least 1).
    pub rows: usize,
    /// Padded tokens (rows × longest) per batch; a single row longer than this still runs alone.
    pub tokens: Option<usize>,
}

impl Budget {
    pub fn rows(rows: usize) -> Self {
        Budget { rows: rows.max(1), tokens: None }
    }
}

/// Rows (by their lengths) cut into batches: longest first, each batch within `budget`. Equal
/// lengths keep their input order, so the batches are a function of the lengths alone.
pub fn batches(lengths: &[usize], budget: Budget) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted longest first: the batch's first row sets its padded length.
        let longest = current.first().map_or(lengths[i], |&f| lengths[f]);
        let full = current.len() >= budget.rows.max(1) || budget.tokens.is_some_and(|t| !current.is_empty() && longest * (current.len() + 1) > t);
        if full {
            out.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Runs `each` on every batch of `rows` (packed for `model`) and returns its per-row results in
/// input order.
pub fn map_batches<T>(model: &ModernBert, rows: &[&[u32]], budget: Budget, mut each: impl FnMut(&Packed) -> Result<Vec<T>>) -> Result<Vec<T>> {
    let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
    let mut out: Vec<Option<T>> = (0..rows.len()).map(|_| None).collect();
    for batch in batches(&lengths, budget) {
        let seqs: Vec<&[u32]> = batch.iter().map(|&i| rows[i]).collect();
        let packed = Packed::from_rows(&seqs, model.config().pad_token_id, model.model.device())?;
        let results = each(&packed)?;
        if results.len() != batch.len() {
            crate::bail!("internal: {} results for a batch of {} rows", results.len(), batch.len());
        }
        for (i, r) in batch.into_iter().zip(results) {
            out[i] = Some(r);
        }
    }
    out.into_iter().map(|r| r.context("internal: a row left out of every batch")).collect()
}

/// Pooled vectors, one per row (unit length with `normalize`).
pub fn embeddings(model: &ModernBert, rows: &[&[u32]], pooling: Pooling, normalize: bool, budget: Budget) -> Result<Vec<Vec<f32>>> {
    map_batches(model, rows, budget, |batch| {
        let mut pooled = model.pooled(batch, pooling, &Mode::eval())?.to_dtype(DType::F32)?;
        if normalize {
            pooled = l2_normalize(&pooled)?;
        }
        Ok(pooled.to_vec2::<f32>()?)
    })
}

/// A sequence head's logits, one vector per row.
pub fn sequence_logits(model: &ModernBert, rows: &[&[u32]], budget: Budget) -> Result<Vec<Vec<f32>>> {
    map_batches(model, rows, budget, |batch| {
        let logits = model.forward_batch(batch, &Mode::eval())?.logits.context("the model has no classification head")?;
        Ok(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    })
}

/// A token head's logits: per row, one vector per token of the row.
pub fn token_logits(model: &ModernBert, rows: &[&[u32]], budget: Budget) -> Result<Vec<Vec<Vec<f32>>>> {
    map_batches(model, rows, budget, |batch| {
        let logits = model.forward_batch(batch, &Mode::eval())?.logits.context("the model has no token-classification head")?;
        let padded = logits.to_dtype(DType::F32)?.to_vec3::<f32>()?;
        Ok(padded.into_iter().zip(batch.lengths()).map(|(mut l, len)| {
            l.truncate(len);
            l
        })
        .collect())
    })
}

/// Runs `model` over every row of `ds` and records its logits in `scorer`.
pub fn score(scorer: &mut Scorer, model: &ModernBert, ds: &Dataset, budget: Budget) -> Result<()> {
    let rows: Vec<&[u32]> = (0..ds.len()).map(|i| ds.tokens.row(i)).collect();
    let logits = match scorer.kind() {
        TargetKind::Tags => RowLogits::Tokens(token_logits(model, &rows, budget)?),
        _ => RowLogits::Sequence(sequence_logits(model, &rows, budget)?),
    };
    scorer.add(ds, logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_sort_longest_first_and_keep_within_the_budget() {
        let lengths = [3, 9, 1, 9, 4, 2];
        assert_eq!(batches(&lengths, Budget::rows(2)), vec![vec![1, 3], vec![4, 0], vec![5, 2]]);
        // 20 padded tokens: two rows of 9 fit (18), a third would not (27).
        let b = batches(&lengths, Budget { rows: 8, tokens: Some(20) });
        assert_eq!(b, vec![vec![1, 3], vec![4, 0, 5, 2]]);
        // A row longer than the budget runs alone.
        assert_eq!(batches(&[50, 2], Budget { rows: 8, tokens: Some(10) }), vec![vec![0], vec![1]]);
        assert!(batches(&[], Budget::rows(4)).is_empty());
        let all: usize = batches(&lengths, Budget { rows: 1, tokens: Some(1) }).iter().map(Vec::len).sum();
        assert_eq!(all, lengths.len());
    }
}
