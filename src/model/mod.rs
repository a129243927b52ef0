//! ModernBERT: config, modules, loading.
//!
//! `config` → `modernbert` (the modules, built on `nn`) → `load`/`source` (weights and where they come
//! from). The fused ops they call live in `crate::kernels`.

pub mod config;
pub mod load;
pub mod modernbert;
pub mod nn;
pub mod packed;
pub mod save;
pub mod source;
pub mod tokenizer;
pub mod vocabulary;

pub use config::{LayerType, ModernBertConfig, Pooling};
pub use load::{build, load_pretrained, LoadOptions, Loaded, Weights};
pub use modernbert::{HeadKind, ModernBert, ModernBertModel, Output};
pub use packed::{pad_batch, Packed};
pub use nn::{l2_normalize, Mode};
pub use tokenizer::load_tokenizer;
pub use source::{max_length_rule, Asked, EmbeddingSetup, ModelFiles, SentenceSettings};
