//! ModernBERT: config, modules, loading.

pub mod attention;
pub mod bf16;
pub mod config;
pub mod kernels;
pub mod load;
pub mod loss;
pub mod modernbert;
pub mod nn;
pub mod source;

pub use config::{LayerType, ModernBertConfig, Pooling};
pub use load::{build, load_pretrained, LoadOptions, Loaded, Weights};
pub use modernbert::{HeadKind, ModernBert, ModernBertModel, Output, Packed};
pub use nn::Mode;
pub use source::ModelFiles;
