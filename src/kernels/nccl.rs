//! Gradients summed across GPUs with NCCL (the `nccl` feature: `cuda` + `mpi`), as Horovod and
//! PyTorch's DDP sum them: MPI starts the ranks and carries NCCL's 128-byte id from rank 0 to the
//! others; each rank's communicator then all-reduces device memory on the CUDA stream candle
//! computes on, so the sum is ordered after the backward pass that wrote the gradients, without a
//! copy through the host.

use std::ffi::c_char;

use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaDevice, CudaStorage, CustomOp1, Layout, Shape, Tensor};

use crate::error::Result;

/// NCCL's rendezvous token: rank 0 makes it, every rank joins with it.
pub type NcclId = [c_char; 128];

/// A new id (rank 0 only; it travels to the other ranks over MPI).
pub fn new_id() -> Result<NcclId> {
    Ok(*Id::new().map_err(|e| crate::err!("NCCL could not make its id (is libnccl installed and a GPU visible?): {e:?}"))?.internal())
}

/// One rank's NCCL communicator, on the GPU it trains on.
pub struct Nccl {
    comm: Comm,
}

impl Nccl {
    /// Joins rank `rank` of `size` (every rank calls this at the same time, with rank 0's id).
    pub fn join(device: &CudaDevice, rank: usize, size: usize, id: NcclId) -> Result<Nccl> {
        let comm = Comm::from_rank(device.cuda_stream(), rank, size, Id::uninit(id))
            .map_err(|e| crate::err!("NCCL: rank {rank} of {size} could not join the communicator (one GPU per rank; NCCL_DEBUG=INFO says more): {e:?}"))?;
        Ok(Nccl { comm })
    }

    /// The element-wise sum over the ranks of `t` (f32, on this rank's GPU), every rank alike.
    pub fn sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.contiguous()?.apply_op1_no_bwd(&AllReduce { comm: &self.comm })?)
    }
}

struct AllReduce<'a> {
    comm: &'a Comm,
}

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("NCCL sums tensors on GPUs; ranks on the CPU sum with MPI")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let src = storage.as_cuda_slice::<f32>()?;
        match layout.contiguous_offsets() {
            Some((0, end)) if end == src.len() => {}
            _ => candle_core::bail!("the NCCL all-reduce takes a whole contiguous tensor"),
        }
        let device = storage.device.clone();
        let mut dst = device.alloc_zeros::<f32>(src.len())?;
        self.comm.all_reduce(src, &mut dst, &ReduceOp::Sum).map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
        Ok((CudaStorage::wrap_cuda_slice(dst, device), layout.shape().clone()))
    }
}
