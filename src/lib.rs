//! modernft: fine-tune ModernBERT encoders and serve what they learn.
//!
//! Dependencies run one way (tests/it/layout.rs checks it):
//!
//! ```text
//! cli → commands → {train, inference} → config → {tasks, data} → model → kernels
//! ```
//! `model` (config → modules → loading and saving folders), `data` (files → token ids → batches),
//! `tasks` (per task its loss, predictions and metrics), `inference` (the one path from token ids to
//! vectors, logits and scores), `train` (the loop, optimizer, checkpoints), `commands` (what each
//! subcommand does), `cli` (flags turned into validated options). `error`, `rng`, `device` and
//! `report` are leaves anyone may use.

// Every unsafe operation sits in its own `unsafe` block with a `SAFETY:` comment, also inside
// `unsafe fn`s (all of them live with the kernels).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use kernels::cpu::alloc;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod inference;
pub mod kernels;
pub mod model;
pub mod report;
pub mod rng;
pub mod tasks;
pub mod train;

pub use error::{Context, Error, Result};
