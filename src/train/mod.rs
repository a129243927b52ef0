//! Training: the optimizer (the trainer loop lands with `modernft train`).

pub mod optim;

pub use optim::{AdamW, AdamWConfig};
