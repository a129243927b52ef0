//! Masked-LM: which tokens are masked, as transformers' `DataCollatorForLanguageModeling` masks them,
//! and the masked-token metrics.
//!
//! Each non-special token is chosen with probability `probability` (ModernBERT's 30%); a chosen
//! token becomes the mask token (80%), a random token of the vocabulary (10%) or stays (10%), and is
//! a target. The choice for a row is a pure function of (seed, epoch, row): every epoch masks anew,
//! a resumed run masks as the uninterrupted one did, and validation rows are masked the same way at
//! every evaluation.

use std::collections::{BTreeMap, HashSet};

use tokenizers::Tokenizer;

use crate::error::Result;
use crate::rng::Rng;

/// The masking rule of a run.
#[derive(Clone, Debug)]
pub struct Masking {
    pub probability: f64,
    pub mask_id: u32,
    /// Random replacements are drawn from `0..vocab` (the tokenizer's size, added tokens included).
    pub vocab: u32,
    /// Never masked: the tokenizer's special tokens ([CLS], [SEP], [PAD], [MASK], ...).
    special: HashSet<u32>,
    seed: u64,
}

/// One row as the model sees it, and its targets: (position, original id).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskedRow {
    pub ids: Vec<u32>,
    pub targets: Vec<(usize, u32)>,
}

/// The epoch value that validation rows are masked with (the same at every evaluation).
pub const EVALUATION: usize = usize::MAX;

impl Masking {
    /// The mask token (`[MASK]` or `<mask>`) and the special tokens of `tokenizer`.
    pub fn new(tokenizer: &Tokenizer, probability: f64, seed: u64) -> Result<Self> {
        let mask_id = ["[MASK]", "<mask>"]
            .iter()
            .find_map(|t| tokenizer.token_to_id(t))
            .ok_or_else(|| crate::err!("the tokenizer has no mask token ([MASK] or <mask>); masked-LM training needs one"))?;
        let special: HashSet<u32> = tokenizer.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id).chain([mask_id]).collect();
        Ok(Masking { probability, mask_id, vocab: tokenizer.get_vocab_size(true) as u32, special, seed })
    }

    pub fn with_special(probability: f64, mask_id: u32, vocab: u32, special: impl IntoIterator<Item = u32>, seed: u64) -> Self {
        Masking { probability, mask_id, vocab, special: special.into_iter().chain([mask_id]).collect(), seed }
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains(&id)
    }

    /// Row `row` of `epoch` (or [`EVALUATION`]) masked.
    pub fn row(&self, ids: &[u32], epoch: usize, row: usize) -> MaskedRow {
        let mut h = self.seed ^ 0x4D4C_4D00;
        for part in [epoch as u64, row as u64] {
            h = Rng::new(h ^ part).next_u64();
        }
        let mut rng = Rng::new(h);
        let mut out = ids.to_vec();
        let mut targets = Vec::new();
        for (p, &id) in ids.iter().enumerate() {
            // One draw per token, special or not: a token's fate does not depend on its neighbours.
            let chosen = rng.uniform() < self.probability;
            if !chosen || self.is_special(id) {
                continue;
            }
            targets.push((p, id));
            let how = rng.uniform();
            if how < 0.8 {
                out[p] = self.mask_id;
            } else if how < 0.9 {
                out[p] = rng.below(self.vocab as usize) as u32;
            }
        }
        MaskedRow { ids: out, targets }
    }
}

/// Masked-token metrics, summed over batches: cross-entropy, correct predictions, targets.
#[derive(Clone, Debug, Default)]
pub struct MlmScore {
    pub loss_sum: f64,
    pub correct: usize,
    pub targets: usize,
}

impl MlmScore {
    /// `logits` [targets, vocab] (row-major) of the masked tokens with their `targets`.
    pub fn add(&mut self, logits: &[f32], vocab: usize, targets: &[u32]) {
        for (row, &t) in logits.chunks(vocab).zip(targets) {
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            self.loss_sum += lse - row[t as usize] as f64;
            let best = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0;
            self.correct += (best == t as usize) as usize;
            self.targets += 1;
        }
    }

    /// `loss` (mean cross-entropy over the masked tokens), `accuracy`, `perplexity` (e^loss).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let n = self.targets.max(1) as f64;
        let loss = self.loss_sum / n;
        BTreeMap::from([("loss".to_string(), loss), ("accuracy".to_string(), self.correct as f64 / n), ("perplexity".to_string(), loss.exp())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masking() -> Masking {
        Masking::with_special(0.3, 4, 1000, [0, 1, 2, 3], 7)
    }

    #[test]
    fn thirty_percent_of_ordinary_tokens_eighty_ten_ten_specials_never() {
        let m = masking();
        let ids: Vec<u32> = (0..200_000u32).map(|i| if i % 10 == 0 { 1 } else { 5 + i % 900 }).collect();
        let r = m.row(&ids, 0, 0);
        let ordinary = ids.iter().filter(|&&i| !m.is_special(i)).count() as f64;
        let share = r.targets.len() as f64 / ordinary;
        assert!((share - 0.3).abs() < 0.005, "{share}");
        assert!(r.targets.iter().all(|&(p, id)| ids[p] == id && !m.is_special(id)));
        let (mut masked, mut kept, mut random) = (0, 0, 0);
        for &(p, id) in &r.targets {
            match r.ids[p] {
                4 => masked += 1,
                x if x == id => kept += 1,
                _ => random += 1,
            }
        }
        let n = r.targets.len() as f64;
        // A random token may equal the original (1 in 1000): counted as kept.
        assert!((masked as f64 / n - 0.8).abs() < 0.01 && (kept as f64 / n - 0.1).abs() < 0.01 && (random as f64 / n - 0.1).abs() < 0.01, "{masked} {kept} {random}");
        // Untouched where not a target.
        let at: HashSet<usize> = r.targets.iter().map(|t| t.0).collect();
        assert!((0..ids.len()).filter(|p| !at.contains(p)).all(|p| r.ids[p] == ids[p]));
    }

    #[test]
    fn masks_are_a_function_of_seed_epoch_and_row() {
        let m = masking();
        let ids: Vec<u32> = (5..105).collect();
        assert_eq!(m.row(&ids, 3, 9), m.row(&ids, 3, 9));
        assert_ne!(m.row(&ids, 3, 9), m.row(&ids, 4, 9), "every epoch masks anew");
        assert_ne!(m.row(&ids, 3, 9), m.row(&ids, 3, 10));
        assert_ne!(m.row(&ids, 3, 9), Masking::with_special(0.3, 4, 1000, [0, 1, 2, 3], 8).row(&ids, 3, 9));
        // A row's mask does not depend on its length beyond its own tokens.
        let short = m.row(&ids[..50], 3, 9);
        let long = m.row(&ids, 3, 9);
        assert_eq!(short.ids[..], long.ids[..50]);
    }

    #[test]
    fn scores_are_cross_entropy_accuracy_and_perplexity() {
        let mut s = MlmScore::default();
        // Two targets over a vocabulary of 3: uniform logits (loss ln 3), and a confident right answer.
        s.add(&[0.0, 0.0, 0.0, 0.0, 10.0, 0.0], 3, &[2, 1]);
        let m = s.metrics();
        let second = -(10f64.exp() / (10f64.exp() + 2.0)).ln();
        assert!((m["loss"] - (3f64.ln() + second) / 2.0).abs() < 1e-9);
        assert!((m["perplexity"] - m["loss"].exp()).abs() < 1e-12);
        // The first row's argmax (a tie) is token 0: wrong; the second is right.
        assert_eq!(m["accuracy"], 0.5);
    }
}
