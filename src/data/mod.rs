//! Text to model inputs: tokenization and padded batches.

pub mod tokenize;

pub use tokenize::{pad_batch, Encoded, TextEncoder};
