//! Batches: seeded, resumable batch order and dynamic padding.
//!
//! The order of an epoch is a pure function of (seed, epoch), so a sampler's position is just
//! (epoch, batch index) and a resumed run continues with exactly the batches an uninterrupted run
//! would have seen. With `group_by_length`, rows are shuffled, cut into mega-batches of 50 batches
//! and sorted longest-first inside each, as transformers' `LengthGroupedSampler` does, so batches
//! hold rows of similar length and pad little.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::data::dataset::Dataset;
use crate::model::Packed;
use crate::error::Result;
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct Sampler {
    lengths: Vec<usize>,
    batch_size: usize,
    shuffle: bool,
    group_by_length: bool,
    seed: u64,
    /// `batch_sampler = "no_duplicates"`: per row, a key per text it holds; no key twice in a batch.
    distinct: Option<Vec<Vec<u64>>>,
}

/// Where a sampler stands: the next batch is `batch` of `epoch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub epoch: usize,
    pub batch: usize,
}

impl Sampler {
    pub fn new(lengths: Vec<usize>, batch_size: usize, shuffle: bool, group_by_length: bool, seed: u64) -> Self {
        Sampler { lengths, batch_size: batch_size.max(1), shuffle, group_by_length, seed, distinct: None }
    }

    /// Batches in which no text appears twice, as sentence-transformers' `NoDuplicatesBatchSampler`
    /// builds them: rows are taken in the epoch's order, a row that shares a text with the batch so
    /// far is passed over for a later batch (keeping its place), and a batch that cannot be filled
    /// is emitted as it is. `keys[row]` holds one key per text of the row (its columns' token ids).
    pub fn no_duplicates(mut self, keys: Vec<Vec<u64>>) -> Self {
        self.distinct = Some(keys);
        self
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.lengths.len().div_ceil(self.batch_size)
    }

    /// The batches (row indices) of `epoch`.
    pub fn epoch(&self, epoch: usize) -> Vec<Vec<usize>> {
        let n = self.lengths.len();
        let mut order: Vec<usize> = (0..n).collect();
        if self.shuffle || self.group_by_length {
            let mut rng = Rng::new(self.seed.wrapping_mul(0x9E37_79B9).wrapping_add(epoch as u64));
            rng.shuffle(&mut order);
        }
        if let Some(keys) = &self.distinct {
            return distinct_batches(order, keys, self.batch_size);
        }
        if self.group_by_length {
            // transformers: megabatch = min(n / (4 * batch), 50) batches, at least 1.
            let mult = (n / (self.batch_size * 4)).clamp(1, 50);
            let mega = mult * self.batch_size;
            for chunk in order.chunks_mut(mega) {
                chunk.sort_by_key(|&i| std::cmp::Reverse(self.lengths[i]));
            }
            // The longest row of all goes first, so a too-large batch fails at once, not hours in.
            if let Some(longest) = (0..order.len()).step_by(mega).max_by_key(|&s| self.lengths[order[s]]) {
                order.swap(0, longest);
            }
        }
        order.chunks(self.batch_size).map(<[usize]>::to_vec).collect()
    }

    /// Batches from `state` to the end of its epoch.
    pub fn remaining(&self, state: SamplerState) -> Vec<Vec<usize>> {
        self.epoch(state.epoch).into_iter().skip(state.batch).collect()
    }

    /// Fraction of padding tokens over an epoch when each batch is padded to its longest row.
    pub fn padding_waste(&self, epoch: usize) -> f64 {
        let (mut real, mut padded) = (0usize, 0usize);
        for b in self.epoch(epoch) {
            let max = b.iter().map(|&i| self.lengths[i]).max().unwrap_or(0);
            real += b.iter().map(|&i| self.lengths[i]).sum::<usize>();
            padded += max * b.len();
        }
        if padded == 0 {
            0.0
        } else {
            1.0 - real as f64 / padded as f64
        }
    }
}

/// One batch of training rows, packed (the rows' real tokens and their boundaries) as the model
/// takes it.
pub struct Batch {
    pub rows: Vec<usize>,
    pub packed: Packed,
}

impl Batch {
    /// `pad_token_id`: the model's, for the embedding's pad-row rule.
    pub fn new(ds: &Dataset, rows: &[usize], pad_token_id: Option<u32>, dev: &Device) -> Result<Self> {
        let seqs: Vec<&[u32]> = rows.iter().map(|&i| ds.tokens.row(i)).collect();
        Ok(Batch { rows: rows.to_vec(), packed: Packed::from_rows(&seqs, pad_token_id, dev)? })
    }

    pub fn real_tokens(&self) -> usize {
        self.packed.tokens()
    }
}

/// Cuts `order` into batches of `size` rows with no key shared inside a batch (see
/// [`Sampler::no_duplicates`]).
fn distinct_batches(order: Vec<usize>, keys: &[Vec<u64>], size: usize) -> Vec<Vec<usize>> {
    let mut batches = Vec::new();
    let mut remaining = order;
    while !remaining.is_empty() {
        let (mut batch, mut passed) = (Vec::with_capacity(size), Vec::new());
        let mut seen = std::collections::HashSet::new();
        let mut rest = remaining.into_iter();
        for row in rest.by_ref() {
            if keys[row].iter().any(|k| seen.contains(k)) {
                passed.push(row);
                continue;
            }
            seen.extend(keys[row].iter().copied());
            batch.push(row);
            if batch.len() == size {
                break;
            }
        }
        passed.extend(rest);
        remaining = passed;
        batches.push(batch);
    }
    batches
}

/// One key per text of a row: a hash of its token ids (equal texts give equal keys).
pub fn text_keys(ds: &Dataset) -> Vec<Vec<u64>> {
    use std::hash::{Hash, Hasher};
    let key = |ids: &[u32]| {
        // SipHash with fixed keys: the same key on every run, so batches stay reproducible.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ids.hash(&mut h);
        h.finish()
    };
    (0..ds.len())
        .map(|r| std::iter::once(&ds.tokens).chain(ds.extra.iter()).map(|store| key(store.row(r))).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(n: usize) -> Vec<usize> {
        let mut r = Rng::new(3);
        (0..n).map(|_| 2 + r.below(60)).collect()
    }

    #[test]
    fn same_seed_same_batches_other_seed_other_batches() {
        let s = Sampler::new(lengths(100), 8, true, false, 1);
        assert_eq!(s.epoch(0), Sampler::new(lengths(100), 8, true, false, 1).epoch(0));
        assert_ne!(s.epoch(0), Sampler::new(lengths(100), 8, true, false, 2).epoch(0));
        assert_ne!(s.epoch(0), s.epoch(1), "each epoch reshuffles");
        let all: Vec<usize> = {
            let mut v: Vec<usize> = s.epoch(0).into_iter().flatten().collect();
            v.sort_unstable();
            v
        };
        assert_eq!(all, (0..100).collect::<Vec<_>>(), "every row once per epoch");
        assert_eq!(s.batches_per_epoch(), 13);
    }

    #[test]
    fn restored_state_continues_with_the_uninterrupted_batches() {
        let s = Sampler::new(lengths(50), 4, true, true, 9);
        let uninterrupted: Vec<Vec<usize>> = (0..3).flat_map(|e| s.epoch(e)).collect();
        // Stop after 5 batches of epoch 1, save, restore in a fresh sampler, go on.
        let saved = SamplerState { epoch: 1, batch: 5 };
        let json = serde_json::to_string(&saved).unwrap();
        let restored: SamplerState = serde_json::from_str(&json).unwrap();
        let fresh = Sampler::new(lengths(50), 4, true, true, 9);
        let mut resumed: Vec<Vec<usize>> = s.epoch(0);
        resumed.extend(s.epoch(1).into_iter().take(5));
        resumed.extend(fresh.remaining(restored));
        resumed.extend(fresh.epoch(2));
        assert_eq!(resumed, uninterrupted);
    }

    #[test]
    fn every_randomised_order_differs_per_epoch_and_covers_every_row() {
        // (shuffle, group_by_length): grouping shuffles too (as transformers' length-grouped sampler,
        // with its per-epoch seed), so its groups and their order change every epoch.
        for (shuffle, group) in [(true, false), (true, true), (false, true)] {
            let s = Sampler::new(lengths(300), 8, shuffle, group, 4);
            let epochs: Vec<Vec<Vec<usize>>> = (0..4).map(|e| s.epoch(e)).collect();
            for (e, batches) in epochs.iter().enumerate() {
                let mut rows: Vec<usize> = batches.iter().flatten().copied().collect();
                rows.sort_unstable();
                assert_eq!(rows, (0..300).collect::<Vec<_>>(), "shuffle {shuffle}, group {group}: epoch {e} sees every row once");
                for (f, other) in epochs.iter().enumerate().skip(e + 1) {
                    assert_ne!(batches, other, "shuffle {shuffle}, group {group}: epoch {f} replays epoch {e}");
                }
            }
        }
        // Without either, every epoch is the file's order.
        let s = Sampler::new(lengths(30), 8, false, false, 4);
        assert_eq!(s.epoch(0), s.epoch(3));
        assert_eq!(s.epoch(0).concat(), (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn no_duplicates_keeps_texts_apart_covers_every_row_and_is_seeded() {
        // 40 rows over 6 distinct first texts and unique second texts: many duplicates.
        let keys: Vec<Vec<u64>> = (0..40).map(|r| vec![(r % 6) as u64, 1000 + r as u64]).collect();
        let s = Sampler::new(lengths(40), 4, true, false, 5).no_duplicates(keys.clone());
        for e in 0..3 {
            let batches = s.epoch(e);
            let mut rows: Vec<usize> = batches.iter().flatten().copied().collect();
            rows.sort_unstable();
            assert_eq!(rows, (0..40).collect::<Vec<_>>(), "epoch {e}: every row once");
            for b in &batches {
                let mut k: Vec<u64> = b.iter().flat_map(|&r| keys[r].clone()).collect();
                let n = k.len();
                k.sort_unstable();
                k.dedup();
                assert_eq!(k.len(), n, "epoch {e}: a text twice in batch {b:?}");
                assert!(!b.is_empty() && b.len() <= 4);
            }
            // The same seed gives the same batches (resume replays them); epochs differ.
            assert_eq!(batches, Sampler::new(lengths(40), 4, true, false, 5).no_duplicates(keys.clone()).epoch(e));
        }
        assert_ne!(s.epoch(0), s.epoch(1));
        // Without duplicates the batches are the plain shuffled ones.
        let unique: Vec<Vec<u64>> = (0..40).map(|r| vec![r as u64]).collect();
        assert_eq!(Sampler::new(lengths(40), 4, true, false, 5).no_duplicates(unique).epoch(2), Sampler::new(lengths(40), 4, true, false, 5).epoch(2));
        // A passed-over row keeps its place: rows 0 and 1 share a text, so 1 waits for batch 2.
        let keys = vec![vec![7], vec![7], vec![8], vec![9]];
        assert_eq!(distinct_batches(vec![0, 1, 2, 3], &keys, 2), vec![vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn length_grouping_reduces_padding() {
        let l = lengths(2000);
        let random = Sampler::new(l.clone(), 16, true, false, 0).padding_waste(0);
        let grouped = Sampler::new(l, 16, true, true, 0).padding_waste(0);
        assert!(grouped < random / 3.0, "grouped {grouped} vs random {random}");
    }
}
