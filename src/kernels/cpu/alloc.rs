//! Allocator settings for tensor-sized buffers.
//!
//! glibc serves every allocation above 32 MiB (its largest mmap threshold) with a fresh `mmap`, and
//! returns it with `munmap` on free. A ModernBERT-base training step allocates and frees thousands of
//! such buffers (activations, gradients), so each one is page-faulted in again, zeroed by the kernel:
//! measured with `perf`, 12% of an embedding pass and 40% of a training step went to page faults.
//! Serving them from the heap instead, and never trimming it, keeps the pages mapped for reuse.
//! (`modernft bench --size base --mode train --batch 16 --seq 128`: 23.4 s → 14.2 s per step, same
//! peak RSS.) Set `MODERNFT_SYSTEM_MALLOC=1` to keep glibc's defaults.

/// Applies the settings; call once at start-up, before other threads exist. No-op off glibc.
pub fn tune() {
    if std::env::var_os("MODERNFT_SYSTEM_MALLOC").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        // glibc <malloc.h>: M_TRIM_THRESHOLD = -1, M_MMAP_MAX = -4, M_ARENA_MAX = -8.
        // SAFETY: mallopt only changes allocator parameters; called before any other thread runs.
        unsafe {
            mallopt(-4, 0); // no mmap-backed chunks: big buffers come from the heap and are reused
            mallopt(-1, i32::MAX); // do not hand freed heap memory back to the kernel
            mallopt(-8, 1); // one arena: with mmap off, the main (brk) heap is the one that can grow to any size
        }
    }
}
