//! The CPU fast paths: AVX-512 where the CPU has it, portable loops otherwise, each op with its own
//! backward.
//!
//! - `attention`: unpadded (varlen) attention with rotary, the banded local window and softmax, over
//!   `cu_seqlens`; `small_matmul` is its small-matrix product.
//! - `kernels`: fused LayerNorm and GeGLU, and the shared SIMD helpers (exp, erf, masks, slices).
//! - `softmax`: softmax over the last dimension (the padded path's attention).
//! - `cross_entropy`: cross-entropy per row (the losses; a masked-LM decoder's 50k classes).
//! - `product`: the linear layers' matrix products through `gemm`, rows split between threads.
//! - `bf16`: the AVX-512 BF16 product behind `--precision bf16` inference.
//! - `adamw`: AdamW's update in one pass over weights, moments and gradient (dense or some rows).
//! - `alloc`: allocator settings that keep tensor-sized buffers on a reused heap.
//! - `mmap`: memory-mapped safetensors.

pub mod adamw;
pub mod alloc;
pub mod attention;
pub mod cross_entropy;
pub mod bf16;
pub mod kernels;
pub mod mmap;
pub mod product;
pub mod small_matmul;
pub mod softmax;
