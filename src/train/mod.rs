//! Training: optimizer, schedule, checkpoints and the loop.

pub mod checkpoint;
pub mod dist;
pub mod evaluate;
pub mod finish;
pub mod grads;
pub mod log;
pub mod optim;
pub mod schedule;
pub mod setup;
pub mod step;
pub mod stop;
pub mod tensorboard;
pub mod trainer;

pub use optim::{AdamW, AdamWConfig};
pub use trainer::{resume, train, Summary, TrainOptions};
