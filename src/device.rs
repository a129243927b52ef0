//! `--device auto|cpu|cuda[:N]|metal`.

use std::sync::Once;

use candle_core::Device;

use crate::error::{Context, Result};

/// What `--device` names: `auto` is the default of every command.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "auto" {
        let (device, why) = auto()?;
        static SAID: Once = Once::new();
        SAID.call_once(|| crate::say!("device: {} (--device auto{why})", describe(&device)));
        return Ok(device);
    }
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
        other => crate::bail!("--device {other}: use auto, cpu, cuda, cuda:N or metal"),
    }
}

/// The first of CUDA, Metal and the CPU that this build and machine have, with what was passed
/// over when that is not obvious. GPU 0, or under an MPI launcher the GPU of the process's local
/// rank (`cuda:LOCAL_RANK`: one rank per GPU of a node).
fn auto() -> Result<(Device, String)> {
    if candle_core::utils::cuda_is_available() {
        let (gpu, whose) = match local_rank() {
            Some((r, var)) => (r, format!("; local rank {r} ({var})")),
            None => (0, String::new()),
        };
        match Device::new_cuda(gpu) {
            Ok(d) => return Ok((d, whose)),
            Err(_) if gpu > 0 => crate::bail!("--device auto{whose}: cuda:{gpu} did not answer; start at most one rank per GPU on a node, or pass --device"),
            Err(_) => return Ok((Device::Cpu, "; built with CUDA but no GPU answered".into())),
        }
    }
    if candle_core::utils::metal_is_available() {
        match Device::new_metal(0) {
            Ok(d) => return Ok((d, String::new())),
            Err(_) => return Ok((Device::Cpu, "; built with Metal but no GPU answered".into())),
        }
    }
    Ok((Device::Cpu, "; this build has neither CUDA nor Metal".into()))
}

/// This process's index among the ranks on its node, from the launcher (Open MPI, MPICH's Hydra,
/// Slurm's srun).
pub fn local_rank() -> Option<(usize, &'static str)> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().and_then(|v| v.trim().parse().ok()).map(|r| (r, var)))
}

/// `cpu`, `cuda:N` or `metal:N`, as `--device` would name it.
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_what_the_build_has_and_names_are_checked() {
        let d = parse_device("auto").unwrap();
        if !candle_core::utils::cuda_is_available() && !candle_core::utils::metal_is_available() {
            assert!(d.is_cpu());
        }
        assert!(parse_device(" CPU ").unwrap().is_cpu());
        assert_eq!(describe(&Device::Cpu), "cpu");
        let e = parse_device("tpu").unwrap_err().to_string();
        assert!(e.contains("use auto, cpu, cuda, cuda:N or metal"), "{e}");
        let e = parse_device("cuda:x").unwrap_err().to_string();
        assert!(e.contains("`x` is not a device number"), "{e}");
        if !candle_core::utils::cuda_is_available() {
            let e = parse_device("cuda:1").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
