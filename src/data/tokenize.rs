//! Tokenization with the model's own `tokenizer.json` (Hugging Face `tokenizers`).
//!
//! Special tokens are added by the tokenizer's post-processor (`[CLS] text [SEP]` for ModernBERT);
//! truncation keeps them and cuts the text; nothing is padded at encode time: batches are padded to
//! their own longest row by [`pad_batch`].

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Context, Result};

/// One encoded text.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Whether the text was cut to `max_length`.
    pub truncated: bool,
}

pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_length: usize,
}

impl TextEncoder {
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path).with_context(|| format!("cannot load tokenizer {}", path.display()))?;
        Self::new(tokenizer, max_length)
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
        Ok(TextEncoder { tokenizer, max_length })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
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

/// Pads rows to the longest one: u32 `input_ids` and `attention_mask` (1 = token, 0 = pad), [rows, len].
pub fn pad_batch(rows: &[&[u32]], pad_id: u32, dev: &Device) -> Result<(Tensor, Tensor)> {
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(pad_id, len - r.len()));
        mask.extend(std::iter::repeat_n(1u32, r.len()));
        mask.extend(std::iter::repeat_n(0u32, len - r.len()));
    }
    Ok((Tensor::from_vec(ids, (rows.len(), len), dev)?, Tensor::from_vec(mask, (rows.len(), len), dev)?))
}
