//! Data: files and hub datasets → columns → labels → splits → token ids → batches.

pub mod augment;
pub mod batch;
pub mod dataset;
pub mod labels;
pub mod read;
pub mod stats;
pub mod tokenize;

pub use batch::{Batch, Sampler, SamplerState};
pub use dataset::{load_splits, DataConfig, Dataset, Splits, TokenStore};
pub use labels::{LabelMap, LabelNames, TargetKind, Targets};
pub use read::{read_table, Columns, Format, RawLabel, Table};
pub use crate::model::pad_batch;
pub use tokenize::{load_tokenizer, Encoded, TextEncoder};
