//! What a dataset looks like through the tokenizer (`modernft data`).

use serde::Serialize;

use crate::data::batch::Sampler;
use crate::data::dataset::{Dataset, Splits};
use crate::data::labels::distribution;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SplitStats {
    pub split: String,
    pub source: String,
    pub rows: usize,
    pub tokens: usize,
    pub p50: usize,
    pub p90: usize,
    pub p99: usize,
    pub max: usize,
    pub mean: f64,
    /// Rows longer than `max_length` tokens.
    pub truncated: usize,
    /// (label, count) in label-id order; empty without labels.
    pub labels: Vec<(String, usize)>,
    /// What each label count is a share of: rows, or (token classification) tagged words.
    pub label_unit: String,
    pub label_total: usize,
    /// Fraction of padding tokens per epoch at `batch_size`, shuffled, and grouped by length.
    pub padding_random: f64,
    pub padding_grouped: f64,
    /// With `[model] add_tokens`: what they do to this split (the other figures are the data as
    /// train tokenizes it, with them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_tokens: Option<AddedTokenStats>,
}

/// What added tokens do to a split: the rows that contain each, and the split's tokens (every row
/// whole, not cut at max_length) without and with them.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AddedTokenStats {
    /// (token, id, rows that contain it).
    pub rows_with: Vec<(String, u32, usize)>,
    pub tokens_without: usize,
    pub tokens_with: usize,
}

/// [`AddedTokenStats`] of a split tokenized `with` the added tokens and `without` them.
pub fn added_token_stats(with: &Dataset, without: &Dataset, ids: &[(String, u32)]) -> AddedTokenStats {
    let rows_with = ids
        .iter()
        .map(|(token, id)| (token.clone(), *id, (0..with.len()).filter(|&r| with.tokens.row(r).contains(id)).count()))
        .collect();
    AddedTokenStats { rows_with, tokens_without: without.tokens.lengths().iter().sum(), tokens_with: with.tokens.lengths().iter().sum() }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[usize], p: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Statistics of one split whose rows were tokenized without truncation.
pub fn split_stats(ds: &Dataset, label_names: Option<&[String]>, max_length: usize, batch_size: usize, seed: u64) -> SplitStats {
    let full = ds.tokens.lengths();
    let mut sorted = full.clone();
    sorted.sort_unstable();
    let capped: Vec<usize> = full.iter().map(|&l| l.min(max_length)).collect();
    let labels = match (&ds.targets, label_names) {
        (Some(t), Some(names)) => distribution(t, names.len()).into_iter().map(|(i, c)| (names[i].clone(), c)).collect(),
        _ => Vec::new(),
    };
    // A tag per word: counts are shares of all tagged words, not of sentences.
    let per_word = matches!(ds.targets, Some(crate::data::labels::Targets::Tags(_)));
    let label_total = if per_word { labels.iter().map(|(_, c)| c).sum() } else { ds.len() };
    SplitStats {
        label_unit: if per_word { "tags" } else { "rows" }.to_string(),
        label_total,
        split: ds.name.clone(),
        source: ds.source.clone(),
        rows: ds.len(),
        tokens: capped.iter().sum(),
        p50: percentile(&sorted, 50.0),
        p90: percentile(&sorted, 90.0),
        p99: percentile(&sorted, 99.0),
        max: sorted.last().copied().unwrap_or(0),
        mean: if full.is_empty() { 0.0 } else { full.iter().sum::<usize>() as f64 / full.len() as f64 },
        truncated: full.iter().filter(|&&l| l > max_length).count(),
        labels,
        padding_random: Sampler::new(capped.clone(), batch_size, true, false, seed).padding_waste(0),
        padding_grouped: Sampler::new(capped, batch_size, true, true, seed).padding_waste(0),
        added_tokens: None,
    }
}

pub fn all_stats(splits: &Splits, max_length: usize, batch_size: usize, seed: u64) -> Vec<SplitStats> {
    let names = splits.labels.as_ref().map(|l| l.names());
    splits.all().into_iter().map(|ds| split_stats(ds, names, max_length, batch_size, seed)).collect()
}

/// The human-readable report.
pub fn render(stats: &[SplitStats], max_length: usize, batch_size: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{:<11} {:>8} {:>10} {:>6} {:>6} {:>6} {:>6} {:>7}  {:>14}", "split", "rows", "tokens", "p50", "p90", "p99", "max", "mean", format!("over {max_length}"));
    for st in stats {
        let _ = writeln!(
            s,
            "{:<11} {:>8} {:>10} {:>6} {:>6} {:>6} {:>6} {:>7.1}  {:>7} ({:>4.1}%)",
            st.split, st.rows, st.tokens, st.p50, st.p90, st.p99, st.max, st.mean, st.truncated,
            100.0 * st.truncated as f64 / st.rows.max(1) as f64
        );
    }
    for st in stats.iter().filter(|st| !st.labels.is_empty()) {
        let _ = writeln!(s, "\nlabels ({}, share of {} {}):", st.split, st.label_total, st.label_unit);
        for (name, count) in &st.labels {
            let _ = writeln!(s, "  {:<20} {:>8}  {:>5.1}%", name, count, 100.0 * *count as f64 / st.label_total.max(1) as f64);
        }
    }
    let added: Vec<(&SplitStats, &AddedTokenStats)> = stats.iter().filter_map(|st| Some((st, st.added_tokens.as_ref()?))).collect();
    if let Some((_, first)) = added.first() {
        let _ = write!(s, "\nadded tokens: rows that contain each\n  {:<24} {:>7}", "token", "id");
        for (st, _) in &added {
            let _ = write!(s, "  {:>18}", st.split);
        }
        let _ = writeln!(s);
        for (i, (token, id, _)) in first.rows_with.iter().enumerate() {
            let _ = write!(s, "  {:<24} {:>7}", format!("{token:?}"), id);
            for (st, a) in &added {
                let rows = a.rows_with[i].2;
                let _ = write!(s, "  {:>18}", format!("{rows} ({:.1}%)", 100.0 * rows as f64 / st.rows.max(1) as f64));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "tokens (whole rows) without → with the added tokens:");
        for (st, a) in &added {
            let change = 100.0 * (a.tokens_with as f64 - a.tokens_without as f64) / a.tokens_without.max(1) as f64;
            let _ = writeln!(s, "  {:<11} {:>10} → {:>10} ({change:+.1}%)", st.split, a.tokens_without, a.tokens_with);
        }
        if added.iter().any(|(_, a)| a.tokens_with > a.tokens_without) {
            let _ = writeln!(
                s,
                "  (longer: an added token is matched on its own, so a byte-level tokenizer splits the space before it off as a\n   token of its own, and a word the vocabulary already held whole with its space gains nothing)"
            );
        }
    }
    let _ = writeln!(s, "\npadding at batch size {batch_size} (share of tokens that are padding):");
    for st in stats {
        let _ = writeln!(
            s,
            "  {:<11} shuffled {:>5.1}%   grouped by length {:>5.1}%",
            st.split,
            100.0 * st.padding_random,
            100.0 * st.padding_grouped
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<usize> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
