//! `--device cpu|cuda[:N]|metal`.

use candle_core::Device;

use crate::error::{Context, Result};

pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => {
            let i: usize = i.parse().map_err(|_| crate::err!("--device {spec}: `{i}` is not a device number"))?;
            (k.to_string(), i)
        }
        None => (spec.clone(), 0),
    };
    match kind.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(index).with_context(|| {
            format!("--device {spec}: CUDA is unavailable (build with `cargo build --release --features cuda` on a machine with an NVIDIA driver)")
        }),
        "metal" => Device::new_metal(index).with_context(|| {
            format!("--device {spec}: Metal is unavailable (build with `--features metal` on macOS)")
        }),
        other => crate::bail!("--device {other}: use cpu, cuda, cuda:N or metal"),
    }
}
