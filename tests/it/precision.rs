//! `[training] precision = "bf16"`: 200 optimizer steps track the f32 run's loss curve, the
//! weights stay f32, and resume stays byte-exact.

use crate::common;

use std::path::Path;

use common::{binary, rewind, Timed};

fn train(dir: &Path, name: &str, precision: &str, steps: usize) -> (std::path::PathBuf, String) {
    let run = dir.join(name);
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[model]\nconfig = \"examples/quickstart/config.json\"\ntokenizer = \"examples/quickstart/tokenizer.json\"\n\
             [data]\ntrain = \"examples/quickstart/train.jsonl\"\nmax_length = 64\n\
             [training]\nlearning_rate = 5e-4\nbatch_size = 16\nmax_steps = {steps}\nsave_steps = 50\nsave_total_limit = 10\nlogging_steps = 10\n\
             eval_strategy = \"no\"\nwarmup_steps = 10\nweight_decay = 0.01\nprecision = \"{precision}\"\n[output]\ndir = \"{}\"\n",
            run.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(binary()).current_dir(env!("CARGO_MANIFEST_DIR")).args(["train", "--quiet", "--config", cfg.to_str().unwrap()]).timed_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (run, String::from_utf8_lossy(&out.stderr).to_string())
}

/// (step, loss) of every logged training step.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn bf16_training_tracks_f32_for_200_steps_keeps_f32_weights_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (f32_run, _) = train(tmp.path(), "f32", "f32", 200);
    let (bf16_run, notes) = train(tmp.path(), "bf16", "bf16", 200);
    assert!(notes.contains("precision = \"bf16\"") && notes.contains("portable path"), "{notes}");
    let (a, b) = (losses(&f32_run), losses(&bf16_run));
    assert_eq!(a.len(), 20);
    assert_eq!(a.iter().map(|x| x.0).collect::<Vec<_>>(), b.iter().map(|x| x.0).collect::<Vec<_>>());
    // Each logged loss is a mean over 10 steps. bf16 keeps 8 significant bits per product (a
    // relative rounding of at most 2^-9 ≈ 0.002 per operand and result), so the runs drift apart
    // a little with every update but learn alike: measured here, at most 0.0017 apart over the
    // 20 logged losses (1.08 → 0.37); the bound, 0.02, is ten times the rounding scale.
    let worst = a.iter().zip(&b).map(|(x, y)| (x.1 - y.1).abs()).fold(0.0, f64::max);
    eprintln!("largest difference of a logged loss, bf16 vs f32, over 200 steps: {worst:.4}; first {:.4}/{:.4}, last {:.4}/{:.4}", a[0].1, b[0].1, a[19].1, b[19].1);
    assert!(worst < 0.02, "bf16 loss curve strays from f32's by {worst}: {a:?}\n{b:?}");
    assert!(worst > 0.0, "bf16 and f32 logged identical losses: is bf16 applied?");
    assert!(b[19].1 < b[0].1 - 0.1, "bf16 did not learn: {b:?}");
    // The weights and checkpoints stay f32.
    let bytes = std::fs::read(bf16_run.join("model/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensors().iter().all(|(_, t)| t.dtype() == safetensors::Dtype::F32));
    // Resumed from step 100, the bf16 run ends byte-identical.
    let resumed = tmp.path().join("resumed");
    rewind(&bf16_run, &resumed, 100);
    let out = std::process::Command::new(binary()).current_dir(env!("CARGO_MANIFEST_DIR")).args(["train", "--quiet", "--resume", resumed.to_str().unwrap()]).timed_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(resumed.join("model/model.safetensors")).unwrap() == bytes, "resumed bf16 weights differ");
}
