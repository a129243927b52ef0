//! A step's gradients: candle's dense `GradStore`, and the token-embedding gradients kept to the
//! rows the step read ([`SparseGrad`], from `Mode::train_sparse`'s lookups).
//!
//! A dense embedding gradient is a zero-filled `[vocab, hidden]` matrix per micro-batch (51 MB for
//! ModernBERT's vocabulary at hidden 256), added up, squared for the norm and scaled for clipping,
//! though only the batch's few hundred rows are not zero. Here those rows travel alone; AdamW still
//! moves every row (`optim`), so the update is exactly the dense one.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::Result;
use crate::model::Mode;

/// The gradient of an embedding matrix on some of its rows (zero on every other row).
#[derive(Clone, Debug)]
pub struct SparseGrad {
    /// Ascending, distinct.
    pub rows: Vec<u32>,
    /// `[rows.len(), hidden]`: row `i` is the gradient of the matrix's row `rows[i]`.
    pub values: Tensor,
}

impl SparseGrad {
    /// The sum of two gradients of the same matrix, over the union of their rows. Each value is
    /// `0 + a + b` in that order, the bits a dense accumulation gives.
    pub fn add(&self, other: &SparseGrad) -> Result<SparseGrad> {
        let mut rows = Vec::with_capacity(self.rows.len() + other.rows.len());
        rows.extend_from_slice(&self.rows);
        rows.extend_from_slice(&other.rows);
        rows.sort_unstable();
        rows.dedup();
        let dev = self.values.device();
        let at = |part: &[u32]| Tensor::new(part.iter().map(|r| rows.binary_search(r).unwrap_or_else(|i| i) as u32).collect::<Vec<u32>>(), dev);
        let hidden = self.values.dim(1)?;
        let values = Tensor::zeros((rows.len(), hidden), self.values.dtype(), dev)?
            .index_add(&at(&self.rows)?, &self.values, 0)?
            .index_add(&at(&other.rows)?, &other.values, 0)?;
        Ok(SparseGrad { rows, values })
    }

    /// The whole matrix's gradient, `shape` like the parameter.
    pub fn dense(&self, like: &Tensor) -> Result<Tensor> {
        let rows = Tensor::new(self.rows.as_slice(), self.values.device())?;
        Ok(like.zeros_like()?.index_add(&rows, &self.values.to_dtype(like.dtype())?, 0)?)
    }
}

pub struct Grads {
    pub dense: GradStore,
    /// By parameter; a parameter is here or in `dense`, never in both.
    pub sparse: Vec<(Tensor, SparseGrad)>,
}

impl Grads {
    /// Backward from `loss`, taking `mode`'s sparse lookups: each lookup's leaf gradient becomes its
    /// matrix's sparse gradient (lookups of the same matrix added up). A matrix that also has a dense
    /// gradient (a masked-LM decoder tied to the embeddings) gets one dense gradient.
    pub fn backward(loss: &Tensor, mode: &Mode) -> Result<Grads> {
        let mut dense = loss.backward()?;
        let mut sparse: Vec<(Tensor, SparseGrad)> = Vec::new();
        for lookup in mode.take_sparse_lookups() {
            let Some(values) = dense.remove(lookup.leaf.as_tensor()) else { continue };
            let g = SparseGrad { rows: lookup.rows, values };
            match sparse.iter_mut().find(|(w, _)| w.id() == lookup.weight.id()) {
                Some((_, acc)) => *acc = acc.add(&g)?,
                None => sparse.push((lookup.weight, g)),
            }
        }
        let mut grads = Grads { dense, sparse: Vec::new() };
        for (weight, g) in sparse {
            grads.add_sparse(weight, g)?;
        }
        Ok(grads)
    }

    fn add_sparse(&mut self, weight: Tensor, g: SparseGrad) -> Result<()> {
        if let Some(d) = self.dense.get(&weight) {
            let sum = (d + g.dense(d)?)?;
            self.dense.insert(&weight, sum);
        } else if let Some((_, acc)) = self.sparse.iter_mut().find(|(w, _)| w.id() == weight.id()) {
            *acc = acc.add(&g)?;
        } else {
            self.sparse.push((weight, g));
        }
        Ok(())
    }

    pub fn sparse_of(&self, param: &Tensor) -> Option<&SparseGrad> {
        self.sparse.iter().find(|(w, _)| w.id() == param.id()).map(|(_, g)| g)
    }

    /// Whether `param` has a gradient (dense or sparse).
    pub fn has(&self, param: &Tensor) -> bool {
        self.dense.get(param).is_some() || self.sparse_of(param).is_some()
    }

    /// Removes `param`'s gradient and returns it dense (a sparse one filled out with zeros).
    pub fn take_dense(&mut self, param: &Tensor) -> Result<Option<Tensor>> {
        if let Some(g) = self.dense.remove(param) {
            return Ok(Some(g));
        }
        match self.sparse.iter().position(|(w, _)| w.id() == param.id()) {
            Some(i) => {
                let (_, s) = self.sparse.remove(i);
                Ok(Some(s.dense(param)?))
            }
            None => Ok(None),
        }
    }

    /// Adds another micro-batch's gradients (the accumulation of one optimizer step).
    pub fn accumulate(&mut self, other: Grads, params: &[(String, Var)]) -> Result<()> {
        for (_, var) in params {
            let t = var.as_tensor();
            let Some(g) = other.dense.get(t) else { continue };
            let sum = match (self.dense.get(t), self.sparse.iter().position(|(w, _)| w.id() == t.id())) {
                (Some(a), _) => (a + g)?,
                (None, Some(i)) => {
                    let (_, s) = self.sparse.remove(i);
                    (s.dense(g)? + g)?
                }
                (None, None) => g.clone(),
            };
            self.dense.insert(t, sum);
        }
        for (weight, g) in other.sparse {
            self.add_sparse(weight, g)?;
        }
        Ok(())
    }

    /// Σ g² over every parameter's gradient, in f64.
    pub fn sum_sq(&self, params: &[(String, Var)]) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in params {
            let g = match (self.dense.get(var.as_tensor()), self.sparse_of(var.as_tensor())) {
                (Some(g), _) => g,
                (None, Some(s)) => &s.values,
                (None, None) => continue,
            };
            sq += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        }
        Ok(sq)
    }

    /// Multiplies every gradient by `coef` (clipping).
    pub fn scale(&mut self, coef: f64, params: &[(String, Var)]) -> Result<()> {
        for (_, var) in params {
            if let Some(g) = self.dense.remove(var.as_tensor()) {
                self.dense.insert(var.as_tensor(), (g * coef)?);
            }
        }
        for (_, g) in &mut self.sparse {
            g.values = (&g.values * coef)?;
        }
        Ok(())
    }
}

impl From<GradStore> for Grads {
    fn from(dense: GradStore) -> Self {
        Grads { dense, sparse: Vec::new() }
    }
}
