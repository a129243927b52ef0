//! Data-parallel training over MPI, in the design Horovod made standard: `mpirun -np N modernft
//! train` starts N processes (ranks); MPI does the rendezvous and the collectives.
//!
//! ```text
//! every global batch (batch_size × N rows, the batch one process with batch_size × N would take)
//!   → rank r trains on its contiguous share of it
//!   → gradients summed over the ranks in fusion buffers (64 MiB, parameters in one fixed order)
//!   → every rank clips and steps AdamW on the same sums: the weights stay equal everywhere
//! ```
//! Rank 0 broadcasts its weights before the first step and alone writes (checkpoints, metrics,
//! plots, progress). A build without the `mpi` feature refuses to run as one of several ranks.

use candle_core::{DType, Tensor, Var};

#[cfg(feature = "mpi")]
use crate::error::Context;
use crate::error::Result;
use crate::train::grads::Grads;

/// Gradients travel in buffers of this many f32 (64 MiB): few collectives, bounded extra memory.
pub const FUSION_FLOATS: usize = 16 << 20;

/// The processes training together: one, or the ranks of an MPI job.
pub struct World {
    rank: usize,
    size: usize,
    #[cfg(feature = "mpi")]
    mpi: Option<Mpi>,
    /// NCCL's communicator, made at the first sum of gradients on GPUs.
    #[cfg(feature = "nccl")]
    nccl: std::cell::OnceCell<crate::kernels::nccl::Nccl>,
}

#[cfg(feature = "mpi")]
struct Mpi {
    world: mpi::topology::SimpleCommunicator,
    // Dropped last: finalizes MPI.
    _universe: mpi::environment::Universe,
}

/// The launcher variables that say "you are one of N processes": Open MPI's, PMI's (MPICH, Intel
/// MPI, Slurm's `srun --mpi=pmi2`), PMIx's (`srun --mpi=pmix`, which names the rank; Slurm the
/// count). Returns (rank, count, the variable that gave the count).
pub fn launched_ranks() -> Option<(usize, usize, &'static str)> {
    let parse = |v: &str| std::env::var(v).ok().and_then(|s| s.trim().parse::<usize>().ok());
    for (rank, size) in [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"), ("PMIX_RANK", "SLURM_STEP_NUM_TASKS"), ("PMIX_RANK", "SLURM_NTASKS")] {
        if let (Some(r), Some(n)) = (parse(rank), parse(size)) {
            return Some((r, n, size));
        }
    }
    None
}

impl World {
    /// One process.
    pub fn single() -> World {
        World {
            rank: 0,
            size: 1,
            #[cfg(feature = "mpi")]
            mpi: None,
            #[cfg(feature = "nccl")]
            nccl: Default::default(),
        }
    }

    /// The world this process was launched into: MPI's when a launcher started several ranks (a
    /// build without the `mpi` feature refuses), else one process.
    pub fn from_launcher() -> Result<World> {
        let Some((rank, size, var)) = launched_ranks().filter(|&(_, n, _)| n > 1) else { return Ok(World::single()) };
        #[cfg(feature = "mpi")]
        {
            let world = World::init_mpi()?;
            if world.size != size || world.rank != rank {
                // E.g. MPICH's mpiexec starting an Open MPI build: each process would be a world of
                // its own, training alone into the same folder.
                crate::bail!(
                    "the launcher says rank {rank} of {size} ({var}) but MPI says rank {} of {}: launch modernft with the mpirun of the MPI it was built against",
                    world.rank,
                    world.size
                );
            }
            if world.rank > 0 {
                // Rank 0 speaks for the job.
                crate::error::quiet();
            }
            Ok(world)
        }
        #[cfg(not(feature = "mpi"))]
        crate::bail!(
            "this process is rank {rank} of {size} ({var}={size}), but this modernft was built without MPI: every rank would train alone and all would write the same run folder; build with `cargo build --release --features mpi` (README: \"Training on a cluster\"), or run one process"
        )
    }

    #[cfg(feature = "mpi")]
    fn init_mpi() -> Result<World> {
        use mpi::traits::Communicator;
        // Only the main thread calls MPI; candle's worker threads never do.
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).context("MPI is already initialized in this process")?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(World {
            rank,
            size,
            mpi: Some(Mpi { world, _universe: universe }),
            #[cfg(feature = "nccl")]
            nccl: Default::default(),
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The rank that writes.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// This rank's share of a global batch: a contiguous range, the first `len % size` ranks one
    /// row more.
    pub fn part<'a>(&self, rows: &'a [usize]) -> &'a [usize] {
        let (n, k) = (rows.len(), self.size);
        let at = |r: usize| r * (n / k) + r.min(n % k);
        &rows[at(self.rank)..at(self.rank + 1)]
    }

    /// Element-wise sum over the ranks, in place (every rank gets the same values).
    pub fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            use mpi::traits::CommunicatorCollectives;
            let send = values.to_vec();
            m.world.all_reduce_into(&send[..], values, mpi::collective::SystemOperation::sum());
        }
        let _ = values;
        Ok(())
    }

    /// Whether `flag` is set on any rank (every rank gets the same answer).
    pub fn any(&self, flag: bool) -> Result<bool> {
        let mut v = [f64::from(flag as u8)];
        self.sum_f64(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// Rank 0's `flag`, on every rank (decisions rank 0 makes: early stopping).
    pub fn root_says(&self, flag: bool) -> Result<bool> {
        let mut v = [if self.is_root() { f64::from(flag as u8) } else { 0.0 }];
        self.sum_f64(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// `recv` = the element-wise sum over the ranks of `send`.
    fn sum_f32_into(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            use mpi::traits::CommunicatorCollectives;
            m.world.all_reduce_into(send, recv, mpi::collective::SystemOperation::sum());
            return Ok(());
        }
        recv.copy_from_slice(send);
        Ok(())
    }

    fn broadcast_f32(&self, values: &mut [f32]) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            use mpi::traits::{Communicator, Root};
            m.world.process_at_rank(0).broadcast_into(values);
        }
        let _ = values;
        Ok(())
    }

    /// Every rank's `local` values, concatenated in rank order, on every rank.
    pub fn gather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            return all_gather(&m.world, self.size, local);
        }
        Ok(local.to_vec())
    }

    /// [`Self::gather_f32`] for counts.
    pub fn gather_u64(&self, local: &[u64]) -> Result<Vec<u64>> {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            return all_gather(&m.world, self.size, local);
        }
        Ok(local.to_vec())
    }

    /// Every rank's rows (vectors of any length), in rank order, on every rank: what a split
    /// evaluated in shards gives back whole.
    pub fn gather_rows(&self, local: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        if self.size == 1 {
            return Ok(local);
        }
        let lengths = self.gather_u64(&local.iter().map(|r| r.len() as u64).collect::<Vec<_>>())?;
        let values = self.gather_f32(&local.concat())?;
        let mut at = 0;
        Ok(lengths
            .into_iter()
            .map(|n| {
                let row = values[at..at + n as usize].to_vec();
                at += n as usize;
                row
            })
            .collect())
    }

    /// [`Self::gather_rows`] for rows of vectors (a token head's logits: per row, per token).
    pub fn gather_nested(&self, local: Vec<Vec<Vec<f32>>>) -> Result<Vec<Vec<Vec<f32>>>> {
        if self.size == 1 {
            return Ok(local);
        }
        let counts = self.gather_u64(&local.iter().map(|r| r.len() as u64).collect::<Vec<_>>())?;
        let mut inner = self.gather_rows(local.into_iter().flatten().collect())?.into_iter();
        Ok(counts.into_iter().map(|n| inner.by_ref().take(n as usize).collect()).collect())
    }

    /// Waits until every rank is here.
    pub fn barrier(&self) {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            use mpi::traits::CommunicatorCollectives;
            m.world.barrier();
        }
    }

    /// Stops every rank of the job (MPI_Abort): a failed rank never leaves the others waiting.
    /// One process just exits.
    pub fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            use mpi::traits::Communicator;
            m.world.abort(code);
        }
        std::process::exit(code)
    }

    /// Makes every rank's weights rank 0's (before the first step: a fresh head is drawn the same
    /// way everywhere, but nothing then depends on that).
    pub fn broadcast_weights(&self, params: &[(String, Var)]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        for chunk in fused(params.iter().map(|(_, v)| v.elem_count())) {
            let mut buffer = Vec::with_capacity(chunk.iter().map(|&(_, n)| n).sum());
            for &(i, _) in &chunk {
                append(&mut buffer, params[i].1.as_tensor())?;
            }
            self.broadcast_f32(&mut buffer)?;
            let mut at = 0;
            for &(i, n) in &chunk {
                let var = &params[i].1;
                var.set(&Tensor::from_slice(&buffer[at..at + n], var.shape(), var.device())?.to_dtype(var.dtype())?)?;
                at += n;
            }
        }
        Ok(())
    }

    /// Sums every parameter's gradient over the ranks, in place. A parameter without a gradient on
    /// this rank adds zeros; one without a gradient on any rank keeps none (AdamW skips it, as one
    /// process would). Sparse embedding gradients travel dense.
    pub fn sum_gradients(&self, grads: &mut Grads, params: &[(String, Var)]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let mut present: Vec<f64> = params.iter().map(|(_, v)| f64::from(grads.has(v.as_tensor()) as u8)).collect();
        // And how many ranks train on a GPU (NCCL needs all of them there).
        let device = params.first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
        present.push(f64::from(device.is_cuda() as u8));
        self.sum_f64(&mut present)?;
        let gpus = present.pop().unwrap_or(0.0) as usize;
        let wanted: Vec<usize> = (0..params.len()).filter(|&i| present[i] > 0.0).collect();
        #[cfg(feature = "nccl")]
        if gpus > 0 {
            if gpus < self.size {
                crate::bail!("{gpus} of {} ranks train on a GPU: with NCCL every rank must (give each rank `--device cuda` or `auto`)", self.size);
            }
            return self.sum_on_gpus(grads, params, &wanted, &device);
        }
        let _ = gpus;
        // Two buffers reused for every chunk: this rank's gradients in, the sums out.
        let largest = fused(wanted.iter().map(|&i| params[i].1.elem_count())).iter().map(|c| c.iter().map(|&(_, n)| n).sum::<usize>()).max().unwrap_or(0);
        let (mut send, mut sums) = (Vec::with_capacity(largest), vec![0f32; largest]);
        for chunk in fused(wanted.iter().map(|&i| params[i].1.elem_count())) {
            let chunk: Vec<(usize, usize)> = chunk.into_iter().map(|(j, n)| (wanted[j], n)).collect();
            send.clear();
            for &(i, n) in &chunk {
                match grads.take_dense(params[i].1.as_tensor())? {
                    Some(g) => append(&mut send, &g)?,
                    None => send.resize(send.len() + n, 0.0),
                }
            }
            let sums = &mut sums[..send.len()];
            self.sum_f32_into(&send, sums)?;
            let mut at = 0;
            for &(i, n) in &chunk {
                let t = params[i].1.as_tensor();
                let g = Tensor::from_slice(&sums[at..at + n], t.shape(), t.device())?.to_dtype(t.dtype())?;
                grads.dense.insert(t, g);
                at += n;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "nccl")]
impl World {
    /// [`World::sum_gradients`] on GPUs: each fusion buffer assembled on the device and summed by
    /// NCCL in place of MPI, the host never touched.
    fn sum_on_gpus(&self, grads: &mut Grads, params: &[(String, Var)], wanted: &[usize], device: &candle_core::Device) -> Result<()> {
        use crate::kernels::nccl::{new_id, Nccl};
        let candle_core::Device::Cuda(cuda) = device else { crate::bail!("internal: NCCL sums on a GPU, not on {device:?}") };
        if self.nccl.get().is_none() {
            // Rank 0's id, to every rank over MPI; then all join at once.
            let mut id = if self.is_root() { new_id()? } else { [0; 128] };
            if let Some(m) = &self.mpi {
                use mpi::traits::{Communicator, Root};
                m.world.process_at_rank(0).broadcast_into(&mut id[..]);
            }
            let _ = self.nccl.set(Nccl::join(cuda, self.rank, self.size, id)?);
        }
        let nccl = self.nccl.get().context("internal: no NCCL communicator")?;
        for chunk in fused(wanted.iter().map(|&i| params[i].1.elem_count())) {
            let mut parts = Vec::with_capacity(chunk.len());
            for &(j, n) in &chunk {
                parts.push(match grads.take_dense(params[wanted[j]].1.as_tensor())? {
                    Some(g) => g.to_dtype(DType::F32)?.flatten_all()?,
                    None => Tensor::zeros(n, DType::F32, device)?,
                });
            }
            let sums = nccl.sum(&Tensor::cat(&parts, 0)?)?;
            let mut at = 0;
            for &(j, n) in &chunk {
                let t = params[wanted[j]].1.as_tensor();
                grads.dense.insert(t, sums.narrow(0, at, n)?.reshape(t.shape())?.to_dtype(t.dtype())?);
                at += n;
            }
        }
        Ok(())
    }
}

/// MPI_Allgatherv: every rank's `local`, concatenated in rank order.
#[cfg(feature = "mpi")]
fn all_gather<T: mpi::datatype::Equivalence + Copy + Default>(world: &mpi::topology::SimpleCommunicator, size: usize, local: &[T]) -> Result<Vec<T>> {
    use mpi::traits::CommunicatorCollectives;
    let count = |n: usize| mpi::Count::try_from(n).map_err(|_| crate::err!("{n} values are too many for one MPI gather (at most {})", mpi::Count::MAX));
    let mut counts = vec![0 as mpi::Count; size];
    world.all_gather_into(&count(local.len())?, &mut counts[..]);
    let total: usize = counts.iter().map(|&c| c as usize).sum();
    count(total)?;
    let displs: Vec<mpi::Count> = counts.iter().scan(0, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
    let mut all = vec![T::default(); total];
    {
        let mut partition = mpi::datatype::PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
        world.all_gather_varcount_into(local, &mut partition);
    }
    Ok(all)
}

/// Appends a tensor's values as f32, row-major: straight from a contiguous CPU tensor's memory,
/// else through a copy off the device.
fn append(buffer: &mut Vec<f32>, t: &Tensor) -> Result<()> {
    let t = t.to_dtype(DType::F32)?;
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            buffer.extend_from_slice(&cpu.as_slice::<f32>()?[start..end]);
            return Ok(());
        }
    }
    buffer.extend(t.flatten_all()?.to_vec1::<f32>()?);
    Ok(())
}

/// Consecutive tensors grouped into buffers of at most [`FUSION_FLOATS`] (a larger tensor alone):
/// (index, element count) per buffer, in order.
fn fused(counts: impl Iterator<Item = usize>) -> Vec<Vec<(usize, usize)>> {
    let mut chunks: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut size = 0;
    for (i, n) in counts.enumerate() {
        match chunks.last_mut() {
            Some(last) if size + n <= FUSION_FLOATS => {
                last.push((i, n));
                size += n;
            }
            _ => {
                chunks.push(vec![(i, n)]);
                size = n;
            }
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_in_order() {
        let rows: Vec<usize> = (100..111).collect();
        for size in 1..=13 {
            let parts: Vec<Vec<usize>> = (0..size)
                .map(|rank| World { rank, size, ..World::single() }.part(&rows).to_vec())
                .collect();
            assert_eq!(parts.concat(), rows, "{size} ranks");
            let (lo, hi) = (parts.iter().map(Vec::len).min().unwrap(), parts.iter().map(Vec::len).max().unwrap());
            assert!(hi - lo <= 1, "{size} ranks: shares {lo}..{hi}");
        }
    }

    #[test]
    fn fusion_buffers_keep_order_and_bound() {
        let counts = [10, FUSION_FLOATS - 10, 1, FUSION_FLOATS + 5, 3, 4];
        let chunks = fused(counts.iter().copied());
        assert_eq!(chunks, vec![vec![(0, 10), (1, FUSION_FLOATS - 10)], vec![(2, 1)], vec![(3, FUSION_FLOATS + 5)], vec![(4, 3), (5, 4)]]);
    }
}
