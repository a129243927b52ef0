//! ModernBERT: config, modules, loading.
//!
//! `config` → `modernbert` (the modules, built on `nn`) → `load`/`source` (weights and where they come
//! from). CPU kernels with their own backward: `attention` (unpadded, banded), `kernels` (LayerNorm,
//! GeGLU), `small_matmul` (the attention kernel's products), `product` (the linear layers'
//! products); `bf16` is the AVX-512 BF16 product used for `--precision bf16` inference.

pub mod alloc;
pub mod attention;
pub mod bf16;
pub mod config;
pub mod kernels;
pub mod load;
pub mod loss;
pub mod modernbert;
pub mod nn;
pub mod product;
pub mod small_matmul;
pub mod source;

pub use config::{LayerType, ModernBertConfig, Pooling};
pub use load::{build, load_pretrained, LoadOptions, Loaded, Weights};
pub use modernbert::{HeadKind, ModernBert, ModernBertModel, Output, Packed};
pub use nn::Mode;
pub use source::{Asked, EmbeddingSetup, ModelFiles, SentenceSettings};
