//! Training: optimizer, schedule, checkpoints and the loop.

pub mod checkpoint;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use optim::{AdamW, AdamWConfig};
pub use trainer::{resume, train, Summary, TrainOptions};
