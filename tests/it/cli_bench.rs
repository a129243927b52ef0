//! `modernft bench` prints one JSON line per case with the fields the side-by-side script reads.

use crate::common;

use common::Timed;

use serde_json::Value;

fn lines(args: &[&str]) -> Vec<Value> {
    let out = std::process::Command::new(common::binary()).arg("bench").args(args).timed_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn train_and_kernel_modes_print_one_json_line_per_case() {
    let train = lines(&["--size", "tiny", "--mode", "train", "--batch", "4", "--seq", "32", "--steps", "2", "--warmup", "1"]);
    assert_eq!(train.len(), 1);
    let t = &train[0];
    assert_eq!((t["mode"].as_str(), t["layout"].as_str(), t["steps"].as_u64()), (Some("train"), Some("unpadded"), Some(2)));
    assert_eq!(t["device"].as_str(), Some("cpu"), "bench runs on the CPU unless --device says otherwise: {t}");
    for key in ["tokens_per_s", "samples_per_s", "seconds_per_step", "peak_rss_mib"] {
        assert!(t[key].as_f64().unwrap() > 0.0, "{key}: {t}");
    }
    let phases = &t["phase_s"];
    assert!(["fwd", "bwd", "opt"].iter().all(|p| phases[p].as_f64().unwrap() > 0.0), "{t}");
    // bf16 training (autocast's products) runs in train mode too, as hf_bench.py's --dtype bf16.
    let bf16 = lines(&["--size", "tiny", "--mode", "train", "--batch", "4", "--seq", "32", "--steps", "2", "--warmup", "1", "--dtype", "bf16"]);
    assert_eq!((bf16[0]["mode"].as_str(), bf16[0]["dtype"].as_str()), (Some("train"), Some("bf16")), "{}", bf16[0]);
    assert!(bf16[0]["tokens_per_s"].as_f64().unwrap() > 0.0);

    let kernels = lines(&["--mode", "kernels", "--batch", "2", "--seq", "16", "--steps", "1"]);
    let names: Vec<&str> = kernels.iter().map(|k| k["kernel"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["linear-wqkv", "linear-attn-wo", "linear-wi", "linear-mlp-wo", "attention-global", "attention-local", "layer-norm", "geglu"]
    );
    for k in &kernels {
        assert_eq!(k["tokens"].as_u64(), Some(32));
        assert!(k["forward_ms"].as_f64().unwrap() > 0.0 && k["backward_ms"].as_f64().unwrap() > 0.0, "{k}");
        assert_eq!(k["gflops"].is_number(), k["kernel"].as_str().unwrap().starts_with("linear"), "{k}");
    }
    let bad = std::process::Command::new(common::binary()).args(["bench", "--mode", "fly"]).timed_output();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--mode must be train, embed or kernels"));
}
