//! A loaded encoder with its tokenizer and embedding settings: texts in, one vector per text out.

use candle_core::{DType, Device};

use crate::data::TextEncoder;
use crate::error::Result;
use crate::inference::Budget;
use crate::model::{load_pretrained, HeadKind, LoadOptions, ModelFiles, ModernBert, Pooling};

pub struct EmbedderOptions {
    pub model: String,
    /// Explicit settings (flags); what is not given comes from the model folder.
    pub pooling: Option<Pooling>,
    pub normalize: bool,
    pub max_length: Option<usize>,
    /// Cut inputs longer than the max_length (and count them), or refuse them (`--no-truncate`).
    pub truncate: bool,
    pub prefix: Option<String>,
    pub device: Device,
    /// bf16 matrix products (`ModernBert::use_bf16_matmuls`).
    pub bf16: bool,
}

impl EmbedderOptions {
    /// The flags given, as the folder-settings resolver takes them.
    pub fn asked(&self) -> crate::model::Asked {
        crate::model::Asked {
            pooling: self.pooling.map(|p| (p, "--pooling".to_string())),
            normalize: self.normalize.then(|| (true, "--normalize".to_string())),
            prefix: self.prefix.clone().map(|p| (p, "--prefix".to_string())),
            max_length: self.max_length.map(|n| (n, "--max-length".to_string())),
        }
    }
}

/// A loaded encoder with its tokenizer, ready to turn texts into vectors.
pub struct Embedder {
    pub model: ModernBert,
    pub encoder: TextEncoder,
    pub setup: crate::model::EmbeddingSetup,
}

impl Embedder {
    pub fn load(opts: &EmbedderOptions) -> Result<Self> {
        let files = ModelFiles::resolve(&opts.model)?;
        let load = LoadOptions { dtype: DType::F32, device: opts.device.clone(), ..Default::default() };
        let (config, mut loaded) = load_pretrained(&files, HeadKind::None, &load)?;
        if opts.bf16 {
            loaded.model.use_bf16_matmuls()?;
        }
        let setup = files.embedding_setup(&config, &opts.asked())?;
        let encoder = TextEncoder::from_file(files.tokenizer()?, setup.max_length)?.refusing_longer(!opts.truncate);
        Ok(Embedder { setup, model: loaded.model, encoder })
    }

    /// Pooling, normalisation, prefix and length in use.
    pub fn setup(&self) -> &crate::model::EmbeddingSetup {
        &self.setup
    }

    /// The note on stderr when `truncated` of `of` texts (`what`) were cut.
    pub fn truncation_note(&self, truncated: usize, of: usize, what: &str) -> Option<String> {
        self.encoder.truncation_note(truncated, of, what, "see --max-length; --no-truncate refuses them")
    }

    pub fn hidden_size(&self) -> usize {
        self.model.config().hidden_size
    }

    /// Embeds `texts` (each after the setup's prefix); returns the vectors in input order and how
    /// many texts were truncated. `at(i)` names text i in errors.
    pub fn embed(&self, texts: &[&str], budget: Budget, at: &dyn Fn(usize) -> String) -> Result<(Vec<Vec<f32>>, usize)> {
        let encoded = if self.setup.prefix.is_empty() {
            self.encoder.encode_batch(texts)?
        } else {
            let prefixed: Vec<String> = texts.iter().map(|t| format!("{}{t}", self.setup.prefix)).collect();
            self.encoder.encode_batch(&prefixed.iter().map(String::as_str).collect::<Vec<_>>())?
        };
        let truncated = self.encoder.count_truncated(encoded.iter().map(|e| e.truncated), at)?;
        let rows: Vec<&[u32]> = encoded.iter().map(|e| e.ids.as_slice()).collect();
        let vectors = crate::inference::embeddings(&self.model, &rows, self.setup.pooling, self.setup.normalize, budget)?;
        Ok((vectors, truncated))
    }
}

