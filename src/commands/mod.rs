//! What each subcommand does, on validated options (`cli::run` turns the flags into them): `embed`,
//! `predict`, `eval`, `save`, `serve` and `bench`; `shard`: `--shard`, the parts and `merge-parts`. `train`, `data` and `init` are thin enough to live in
//! `cli::run` over `train` and `data`.

pub mod bench;
pub mod bench_kernels;
pub mod embed;
pub mod eval;
pub mod predict;
pub mod save;
pub mod serve;
pub mod shard;
