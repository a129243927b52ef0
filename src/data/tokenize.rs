//! Tokenization with the model's own `tokenizer.json` (Hugging Face `tokenizers`).
//!
//! Special tokens are added by the tokenizer's post-processor (`[CLS] text [SEP]` for ModernBERT);
//! truncation keeps them and cuts the text; nothing is padded at encode time: batches are packed (or
//! padded to their own longest row) by `model::Packed`.

use std::path::Path;

pub use crate::model::load_tokenizer;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Context, Result};

/// One encoded text.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Whether the text was cut to `max_length`.
    pub truncated: bool,
}

#[derive(Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_length: usize,
    /// `--no-truncate` / `[data] truncate = false`: an input longer than `max_length` is an error.
    refuse_longer: bool,
}

impl TextEncoder {
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        Self::new(load_tokenizer(path)?, max_length)
    }

    pub fn new(mut tokenizer: Tokenizer, max_length: usize) -> Result<Self> {
        if max_length < 2 {
            crate::bail!("max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}");
        }
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .context("cannot configure truncation")?;
        tokenizer.with_padding(None);
        Ok(TextEncoder { tokenizer, max_length, refuse_longer: false })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// With `refuse`, [`Self::count_truncated`] refuses inputs longer than `max_length` instead of
    /// counting them.
    pub fn refusing_longer(mut self, refuse: bool) -> Self {
        self.refuse_longer = refuse;
        self
    }

    /// The one truncation rule, for every command: inputs longer than `max_length` were cut (the
    /// tokenizer does it) and are counted here, for a note on stderr; when refusing (`--no-truncate`,
    /// `[data] truncate = false`), the first one is an error that `at(i)` names (file and row).
    pub fn count_truncated(&self, truncated: impl IntoIterator<Item = bool>, at: impl Fn(usize) -> String) -> Result<usize> {
        let mut n = 0;
        for (i, cut) in truncated.into_iter().enumerate() {
            if cut && self.refuse_longer {
                crate::bail!(
                    "{}: longer than max_length ({} tokens) and truncation is off; raise the max_length (at most the model's positions) or allow truncation (leave out --no-truncate, or set [data] truncate = true)",
                    at(i),
                    self.max_length
                );
            }
            n += cut as usize;
        }
        Ok(n)
    }

    /// The note that says how many of `of` inputs (`what`) were truncated, if any; `how` says which
    /// settings change that.
    pub fn truncation_note(&self, truncated: usize, of: usize, what: &str, how: &str) -> Option<String> {
        (truncated > 0).then(|| format!("note: {truncated} of {of} {what} were longer than {} tokens and were truncated ({how})", self.max_length))
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Encodes texts in parallel, with special tokens, truncated to `max_length`.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).context("tokenization failed")?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded { truncated: !e.get_overflowing().is_empty(), ids: e.get_ids().to_vec() })
            .collect())
    }
}

impl TextEncoder {
    /// Encodes (text, pair) rows: `[CLS] a [SEP] b [SEP]` for ModernBERT, truncating the longer side first.
    pub fn encode_pair_batch(&self, texts: &[&str], pairs: &[&str]) -> Result<Vec<Encoded>> {
        let inputs: Vec<tokenizers::EncodeInput> =
            texts.iter().zip(pairs).map(|(a, b)| (*a, *b).into()).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).context("tokenization failed")?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded { truncated: !e.get_overflowing().is_empty(), ids: e.get_ids().to_vec() })
            .collect())
    }
}

/// An encoded text with what alignment needs: byte offsets per token and which tokens are special.
#[derive(Clone, Debug)]
pub struct EncodedSpans {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
    pub special: Vec<bool>,
    pub truncated: bool,
}

impl TextEncoder {
    /// Encodes texts keeping each token's byte offsets into its text.
    pub fn encode_with_offsets(&self, texts: &[&str]) -> Result<Vec<EncodedSpans>> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).context("tokenization failed")?;
        Ok(encodings
            .into_iter()
            .map(|e| EncodedSpans {
                truncated: !e.get_overflowing().is_empty(),
                ids: e.get_ids().to_vec(),
                offsets: e.get_offsets().to_vec(),
                special: e.get_special_tokens_mask().iter().map(|&m| m == 1).collect(),
            })
            .collect())
    }
}

/// For words joined by single spaces into one text, the index of each word's first token (words cut
/// off by truncation are left out). Byte-level BPE folds the space before a word into the word's
/// first token (`Ġword`, offsets starting at the space), or emits it as a token of its own: a token
/// belongs to the word holding its first non-space byte, and space-only tokens belong to none.
pub fn first_subwords(words: &[String], enc: &EncodedSpans) -> Vec<u32> {
    let mut spans = Vec::with_capacity(words.len());
    let mut at = 0;
    for w in words {
        spans.push((at, at + w.len()));
        at += w.len() + 1;
    }
    let is_space = |pos: usize| spans.iter().all(|&(s, e)| pos < s || pos >= e);
    let mut firsts: Vec<u32> = Vec::new();
    for (t, (&(start, end), &special)) in enc.offsets.iter().zip(&enc.special).enumerate() {
        if special || end <= start {
            continue;
        }
        let Some(first) = (start..end).find(|&p| !is_space(p)) else { continue };
        let Some(word) = spans.iter().position(|&(s, e)| first >= s && first < e) else { continue };
        if word == firsts.len() {
            firsts.push(t as u32);
        } else if word > firsts.len() {
            // A word without any token of its own: tags and tokens no longer line up.
            break;
        }
    }
    firsts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(offsets: &[(usize, usize)]) -> EncodedSpans {
        let n = offsets.len();
        EncodedSpans {
            ids: vec![0; n],
            offsets: offsets.to_vec(),
            special: (0..n).map(|i| i == 0 || i == n - 1).collect(),
            truncated: false,
        }
    }

    #[test]
    fn first_subwords_handle_spaces_folded_into_tokens() {
        let words: Vec<String> = ["John", "Smith", "visited"].iter().map(|s| s.to_string()).collect();
        // ModernBERT: [CLS] John ĠSmith Ġvis ited [SEP], where ĠSmith's offsets start at the space.
        let e = spans(&[(0, 0), (0, 4), (4, 10), (10, 14), (14, 18), (0, 0)]);
        assert_eq!(first_subwords(&words, &e), vec![1, 2, 3]);
        // A space emitted as its own token belongs to no word.
        let e = spans(&[(0, 0), (0, 4), (4, 5), (5, 10), (10, 11), (11, 18), (0, 0)]);
        assert_eq!(first_subwords(&words, &e), vec![1, 3, 5]);
        // Truncation: only the words that still have tokens.
        let e = spans(&[(0, 0), (0, 4), (4, 7), (0, 0)]);
        assert_eq!(first_subwords(&words, &e), vec![1, 2]);
    }
}
