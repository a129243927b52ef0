//! Learning-rate schedules as transformers' `get_scheduler` defines them. The rate used by optimizer
//! step `s` (0-based) is `base_lr * factor(s)`; warm-up rises linearly from 0.

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Warm-up, then linear decay to 0 at the last step.
    Linear,
    /// Warm-up, then half a cosine down to 0.
    Cosine,
    /// Warm-up, then constant.
    Constant,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: Kind,
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    pub fn new(name: &str, base_lr: f64, warmup_steps: usize, warmup_ratio: f64, total_steps: usize) -> Self {
        let kind = match name {
            "cosine" => Kind::Cosine,
            "constant" => Kind::Constant,
            _ => Kind::Linear,
        };
        // transformers: warmup_steps if set, else ceil(warmup_ratio * total).
        let warmup_steps =
            if warmup_steps > 0 { warmup_steps } else { (warmup_ratio * total_steps as f64).ceil() as usize };
        Schedule { kind, base_lr, warmup_steps, total_steps }
    }

    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / span;
        match self.kind {
            Kind::Constant => 1.0,
            Kind::Linear => ((self.total_steps.saturating_sub(step)) as f64 / span).max(0.0),
            Kind::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }

    pub fn lr(&self, step: usize) -> f64 {
        self.base_lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warmup_then_decay_hits_the_boundaries() {
        let s = Schedule::new("linear", 1e-3, 3, 0.0, 30);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(1) - 1e-3 / 3.0).abs() < 1e-15);
        assert_eq!(s.lr(3), 1e-3);
        assert!((s.lr(4) - 1e-3 * 26.0 / 27.0).abs() < 1e-15);
        assert_eq!(s.lr(30), 0.0);
        assert_eq!(s.lr(40), 0.0);
    }

    #[test]
    fn ratio_cosine_and_constant() {
        let s = Schedule::new("linear", 1.0, 0, 0.1, 95);
        assert_eq!(s.warmup_steps, 10, "ceil(0.1 * 95)");
        let c = Schedule::new("cosine", 1.0, 10, 0.0, 110);
        assert_eq!(c.lr(10), 1.0);
        assert!((c.lr(60) - 0.5).abs() < 1e-12);
        assert!(c.lr(110).abs() < 1e-12);
        let k = Schedule::new("constant", 2.0, 4, 0.0, 100);
        assert_eq!((k.lr(2), k.lr(4), k.lr(99)), (1.0, 2.0, 2.0));
        let none = Schedule::new("linear", 1.0, 0, 0.0, 10);
        assert_eq!(none.lr(0), 1.0);
    }
}
