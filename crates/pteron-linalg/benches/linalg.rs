//! `cargo bench -p pteron-linalg` runs the same suite as the `linalg-bench` binary.
fn main() {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "--release",
            "-p",
            "pteron-linalg",
            "--bin",
            "linalg-bench",
        ])
        .status()
        .expect("failed to launch linalg-bench");
    std::process::exit(status.code().unwrap_or(1));
}
