//! Load time and peak memory of loading a program's methods, per loading path.
//!
//! `cargo run --release -p pteron --example load_memory -- PROGRAM.pte piecewise|whole|mmap [METHOD...]`
//!
//! Loads the program (`Module::from_file`, `from_file_whole` or `from_file_mmap`), then each
//! method (default: `forward`), and prints the load time, the process's peak RSS
//! (`VmHWM`) and its RSS after loading (`VmRSS`), from `/proc/self/status` (Linux).
//! Run each path in its own process: the peak is the process's.

use std::time::Instant;

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(how)) = (args.first(), args.get(1)) else {
        return Err("usage: load_memory PROGRAM.pte piecewise|whole|mmap [METHOD...]".into());
    };
    let methods: Vec<&str> = if args.len() > 2 {
        args[2..].iter().map(String::as_str).collect()
    } else {
        vec!["forward"]
    };
    let t0 = Instant::now();
    let mut m = match how.as_str() {
        "piecewise" => pteron::Module::from_file(path)?,
        "whole" => pteron::Module::from_file_whole(path)?,
        // SAFETY: the program file is not modified while this process runs.
        #[allow(unsafe_code)]
        "mmap" => unsafe { pteron::Module::from_file_mmap(path)? },
        other => return Err(format!("unknown loading path {other}").into()),
    };
    for name in &methods {
        m.method(name)?;
    }
    let load = t0.elapsed();
    let mib = |k: Option<u64>| k.map_or(f64::NAN, |k| k as f64 / 1024.0);
    println!(
        "{how}: load {:.1} ms, peak RSS {:.1} MiB, RSS after load {:.1} MiB",
        load.as_secs_f64() * 1e3,
        mib(status_kib("VmHWM:")),
        mib(status_kib("VmRSS:"))
    );
    Ok(())
}
