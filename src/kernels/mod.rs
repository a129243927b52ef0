//! Fused ops for the model, apart from the model files: every `unsafe` block and every
//! `std::arch` intrinsic of the crate lives here. `cpu` holds the CPU fast paths.

pub mod cpu;
