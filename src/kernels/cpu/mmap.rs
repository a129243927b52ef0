//! Memory-mapped safetensors: weights are read in place, not copied into memory first.

use std::path::PathBuf;

use candle_core::safetensors::MmapedSafetensors;

/// Maps `files` (one checkpoint, possibly sharded) for reading.
pub fn safetensors(files: &[PathBuf]) -> candle_core::Result<MmapedSafetensors> {
    // modernft never writes a checkpoint in place while mapping it (checkpoints are written to a
    // temporary file and renamed).
    // SAFETY: the files are only read, and by the above their mapped bytes do not change under us.
    unsafe { MmapedSafetensors::multi(files) }
}
