//! The integration tests, one binary (linked once against candle, arrow and parquet), a module per
//! area. Run one area with `cargo test --test it AREA::` (e.g. `cli_train::`), one test by name.

#[allow(dead_code)]
mod common;

mod augment;
mod cli_bench;
mod cli_embed;
mod cli_eval_predict_save;
mod cli_tasks;
mod cli_train;
mod data;
mod files;
mod fuzz;
mod gradients;
mod layout;
mod loading;
mod mlm;
mod mpi;
mod parity;
mod precision;
mod roundtrip;
mod serve;
mod shard;
mod shared_modernbert;
mod sparse;
mod tasks_parity;
mod trainer_parity;
mod unpadded;
mod vocabulary;
