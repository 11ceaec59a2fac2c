//! Classifies the bundled handwritten-digit samples with the bundled model.
//!
//! `cargo run --release -p pteron --example digits [-- INDEX]`
use std::path::Path;

use pteron::npy::read_npy;
use pteron::Module;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/digits");
    let mut module = Module::from_file(dir.join("digits.pte"))?;
    let samples = read_npy(dir.join("samples.npy"))?;
    let labels = read_npy(dir.join("labels.npy"))?.to_f64();
    let only: Option<usize> = std::env::args().nth(1).map(|s| s.parse()).transpose()?;

    let t = std::time::Instant::now();
    let probs = module.run("forward", &[samples.as_tensor()?])?;
    let elapsed = t.elapsed();
    let probs = probs[0].to_f64();
    let pixels = samples.to_f64();
    let (n, classes) = (labels.len(), probs.len() / labels.len());

    let mut correct = 0;
    for i in 0..n {
        let row = &probs[i * classes..(i + 1) * classes];
        let (pred, p) = row
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f64::MIN),
                |best, (k, v)| if v > best.1 { (k, v) } else { best },
            );
        let truth = labels[i] as usize;
        correct += (pred == truth) as usize;
        if only.is_some_and(|o| o != i) {
            continue;
        }
        // Draw the 8x8 image.
        let img = &pixels[i * 64..(i + 1) * 64];
        for y in 0..8 {
            let line: String = img[y * 8..y * 8 + 8]
                .iter()
                .map(|v| match (v * 4.0) as usize {
                    0 => ' ',
                    1 => '.',
                    2 => '+',
                    3 => '#',
                    _ => '@',
                })
                .flat_map(|c| [c, c])
                .collect();
            println!("    |{line}|");
        }
        println!(
            "sample {i:>2}: predicted {pred} with probability {p:.3}; true label {truth} {}\n",
            if pred == truth {
                "(correct)"
            } else {
                "(WRONG)"
            }
        );
    }
    println!(
        "{correct}/{n} correct; one batched execute of {n} images took {:.3} ms",
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
