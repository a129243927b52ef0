//! A fine-tuned model with its head and tokenizer: texts in, logits out (sequence heads), or per-token
//! logits with offsets (token heads). `predict` and `eval` use it; a server will.

use candle_core::{DType, Device};

use crate::data::{TargetKind, TextEncoder};
use crate::error::Result;
use crate::inference::{Budget, Lengths};
use crate::model::{load_pretrained, HeadKind, LoadOptions, ModelFiles, ModernBert, ModernBertConfig};
use crate::tasks::kind_of;

pub struct Classifier {
    pub files: ModelFiles,
    pub config: ModernBertConfig,
    pub model: ModernBert,
    pub encoder: TextEncoder,
    pub kind: TargetKind,
}

impl Classifier {
    /// Loads a fine-tuned model (run folder, checkpoint, exported folder or hub id). A model without
    /// a trained head is refused: its predictions would be noise.
    pub fn load(spec: &str, lengths: &Lengths, device: &Device) -> Result<Self> {
        let files = ModelFiles::resolve(spec)?;
        let opts = LoadOptions { dtype: DType::F32, device: device.clone(), ..Default::default() };
        let config = ModernBertConfig::from_file(&files.config)?;
        if crate::inference::fill_mask::FillMask::is_masked_lm(&config) {
            crate::bail!(
                "{} is a masked-LM (ModernBertForMaskedLM): `modernft predict` fills its [MASK] tokens; to classify, fine-tune it first (`[model] name = \"{}\"` in a task config)",
                files.origin,
                spec
            );
        }
        let head = if kind_of(&config) == TargetKind::Tags { HeadKind::Token } else { HeadKind::Sequence };
        let (config, loaded) = load_pretrained(&files, head, &opts)?;
        if !loaded.initialised.is_empty() {
            crate::bail!(
                "{} has no trained classification head (missing: {}); fine-tune it first with `modernft train`, or, for an embedding model, use `modernft embed`",
                files.origin,
                loaded.initialised.join(", ")
            );
        }
        let max_length = files.max_length(&config, lengths.asked().as_ref())?;
        let encoder = TextEncoder::from_file(files.tokenizer()?, max_length)?.refusing_longer(!lengths.truncate);
        Ok(Classifier { kind: kind_of(&config), files, config, model: loaded.model, encoder })
    }

    /// Logits for (text, optional pair) rows, in input order, and how many rows were truncated;
    /// `at(i)` names row i in errors.
    pub fn logits(&self, texts: &[&str], pairs: Option<&[&str]>, budget: Budget, at: &dyn Fn(usize) -> String) -> Result<(Vec<Vec<f32>>, usize)> {
        let encoded = match pairs {
            Some(p) => self.encoder.encode_pair_batch(texts, p)?,
            None => self.encoder.encode_batch(texts)?,
        };
        let cut = self.encoder.count_truncated(encoded.iter().map(|e| e.truncated), at)?;
        let rows: Vec<&[u32]> = encoded.iter().map(|e| e.ids.as_slice()).collect();
        Ok((crate::inference::sequence_logits(&self.model, &rows, budget)?, cut))
    }
}

impl Classifier {
    /// Per-token logits of raw texts, with each token's byte offsets and special-token flags, and how
    /// many texts were truncated; `at(i)` names text i in errors.
    #[allow(clippy::type_complexity)]
    pub fn token_logits(&self, texts: &[&str], budget: Budget, at: &dyn Fn(usize) -> String) -> Result<(Vec<(Vec<Vec<f32>>, Vec<(usize, usize)>, Vec<bool>)>, usize)> {
        let encoded = self.encoder.encode_with_offsets(texts)?;
        let cut = self.encoder.count_truncated(encoded.iter().map(|e| e.truncated), at)?;
        let rows: Vec<&[u32]> = encoded.iter().map(|e| e.ids.as_slice()).collect();
        let logits = crate::inference::token_logits(&self.model, &rows, budget)?;
        Ok((logits.into_iter().zip(encoded).map(|(l, e)| (l, e.offsets, e.special)).collect(), cut))
    }
}

