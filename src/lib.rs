//! modernft: fine-tune ModernBERT encoders and serve what they learn.
//!
//! The modules follow the pipeline: `model` (config → modules → loading) → `data` (text → token ids)
//! → `train` (optimizer) → `embed` (vectors out). `cli` turns raw arguments into validated options.

// Every unsafe operation sits in its own `unsafe` block with a `SAFETY:` comment, also inside
// `unsafe fn`s (all of them live with the kernels).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use kernels::cpu::alloc;
pub mod bench;
pub mod bench_kernels;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod embed;
pub mod error;
pub mod evaluate;
pub mod inference;
pub mod kernels;
pub mod export;
pub mod model;
pub mod predict;
pub mod report;
pub mod rng;
pub mod tasks;
pub mod train;

pub use error::{Context, Error, Result};
