//! Library use: embed a few sentences and print their cosine similarities.
//!
//! cargo run --release --example similarity -- tests/fixtures/tiny-v4

use modernft::inference::embedder::{Embedder, EmbedderOptions};

fn main() -> modernft::Result<()> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/tiny-v4".to_string());
    let opts = EmbedderOptions {
        model,
        pooling: None,
        normalize: true,
        max_length: None,
        truncate: true,
        prefix: None,
        device: candle_core::Device::Cpu,
        bf16: false,
    };
    let embedder = Embedder::load(&opts)?;
    let texts = ["a wonderful film", "a brilliant movie", "the plot was predictable and awful"];
    let (vectors, _) = embedder.embed(&texts, modernft::inference::Budget::rows(8), &|i| format!("text {}", i + 1))?;
    for (i, a) in vectors.iter().enumerate() {
        for (j, b) in vectors.iter().enumerate().skip(i + 1) {
            let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            println!("{:.4}  {:?} ~ {:?}", cos, texts[i], texts[j]);
        }
    }
    Ok(())
}
