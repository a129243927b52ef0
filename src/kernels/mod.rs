//! Fused ops for the model, apart from the model files: every `unsafe` block and every
//! `std::arch` intrinsic of the crate lives here. `cpu` holds the CPU fast paths, `portable` the
//! same functions from candle primitives (fallback and test oracle), `activation` the activation
//! type both sides share. Nothing here imports from `crate::model`.

pub mod activation;
pub mod cpu;
pub mod portable;

pub use activation::Activation;
