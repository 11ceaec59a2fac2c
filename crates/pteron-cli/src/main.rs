//! `pteron`: run, inspect and benchmark ExecuTorch `.pte` programs.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pteron::npy::{read_npy, write_npy, NpyArray};
use pteron::{IoInfo, Method, Program, Registry, ScalarType, TensorInfo};

mod generate;

#[derive(Parser)]
#[command(
    name = "pteron",
    version,
    about = "Run ExecuTorch .pte programs in pure Rust"
)]
struct Cli {
    /// Print only results (no progress, no notes).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a method on .npy inputs and write its outputs as .npy files.
    Run {
        program: PathBuf,
        #[arg(long, default_value = "forward")]
        method: String,
        /// Input .npy files, in method-input order (synthetic inputs when none).
        #[arg(long = "input", short = 'i')]
        inputs: Vec<PathBuf>,
        /// Write every output as DIR/output_<i>.npy.
        #[arg(long, short = 'o')]
        output_dir: Option<PathBuf>,
        /// External weight files (.ptd).
        #[arg(long = "data")]
        data: Vec<PathBuf>,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Describe a program: methods, I/O, operators, delegates, memory, and what this build cannot run.
    Inspect {
        program: PathBuf,
        #[arg(long = "data")]
        data: Vec<PathBuf>,
    },
    /// Time loading and executing a method.
    Bench {
        program: PathBuf,
        #[arg(long, default_value = "forward")]
        method: String,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long = "data")]
        data: Vec<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also time every operator and print where the time goes.
        #[arg(long)]
        profile: bool,
    },
    /// Generate text with an LLM program (export_llm) and its tokenizer.
    Generate(generate::GenerateArgs),
    /// Show the kernel tier this machine gets and, with --bandwidth, measure its
    /// memory read bandwidth.
    Sysinfo {
        /// Measure main-memory read bandwidth (reads a large buffer several times).
        #[arg(long)]
        bandwidth: bool,
        /// Buffer size for --bandwidth, MiB (several times the last-level cache).
        #[arg(long, default_value_t = 1024)]
        bandwidth_mib: usize,
        #[arg(long)]
        threads: Option<usize>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

type CliResult<T> = Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run {
            program,
            method,
            inputs,
            output_dir,
            data,
            threads,
        } => cmd_run(
            &program,
            &method,
            &inputs,
            output_dir.as_deref(),
            &data,
            threads,
            cli.quiet,
        ),
        Cmd::Inspect { program, data } => cmd_inspect(&program, &data),
        Cmd::Bench {
            program,
            method,
            warmup,
            iterations,
            threads,
            data,
            json,
            profile,
        } => cmd_bench(
            &program, &method, warmup, iterations, threads, &data, json, profile, cli.quiet,
        ),
        Cmd::Generate(args) => generate::cmd_generate(args, cli.quiet),
        Cmd::Sysinfo {
            bandwidth,
            bandwidth_mib,
            threads,
            json,
        } => cmd_sysinfo(bandwidth, bandwidth_mib, threads, json, cli.quiet),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn note(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("{msg}");
    }
}

/// Loads a program and its data files. When the program needs external data and none
/// was named, `.ptd` files next to it are attached (and this is said).
fn load_program(path: &Path, data: &[PathBuf], quiet: bool) -> CliResult<Program> {
    // Read piece by piece: delegate data is read while its delegate is initialised
    // and freed after (peak memory: what the method keeps plus one delegate's data).
    let mut p = Program::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = data.to_vec();
    let needs_external = p.desc().plans.iter().any(|plan| {
        plan.values.iter().any(|v| {
            matches!(v, pteron::format::ValueDesc::Tensor(t) if t.location == pteron::format::DataLocation::External)
        })
    });
    if needs_external && files.is_empty() {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Ok(rd) = std::fs::read_dir(dir) {
            files = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "ptd"))
                .collect();
            files.sort();
            for f in &files {
                note(
                    quiet,
                    &format!(
                        "note: the program uses external weights; attaching {}",
                        f.display()
                    ),
                );
            }
        }
    }
    for f in files {
        let b = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        p.add_data_file(pteron::bytes_from_vec(b))
            .map_err(|e| format!("{}: {e}", f.display()))?;
    }
    Ok(p)
}

/// Deterministic synthetic input for a tensor input (floats uniform in [-1, 1), ints 0, bools false).
fn synthetic(info: &TensorInfo, seed: u64) -> NpyArray {
    let n: usize = info.sizes.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let data: Vec<u8> = match info.dtype {
        ScalarType::Float => (0..n).flat_map(|_| (next() as f32).to_le_bytes()).collect(),
        ScalarType::Double => (0..n).flat_map(|_| next().to_le_bytes()).collect(),
        ScalarType::Half => (0..n).flat_map(|_| pteron_half(next())).collect(),
        dt => vec![0u8; n * dt.element_size()],
    };
    NpyArray {
        dtype: info.dtype,
        shape: info.sizes.clone(),
        data,
    }
}

fn pteron_half(v: f64) -> [u8; 2] {
    // f64 -> f16 bits via f32 (round-to-nearest in the conversion below is adequate for synthetic data).
    let f = v as f32;
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = (bits >> 13) & 0x3ff;
    let h = if exp <= 0 {
        sign
    } else {
        sign | ((exp as u16) << 10) | mant as u16
    };
    h.to_le_bytes()
}

fn prepare_inputs(
    program: &Program,
    method: &str,
    inputs: &[PathBuf],
    quiet: bool,
) -> CliResult<Vec<NpyArray>> {
    let meta = program.method_meta(method).map_err(|e| e.to_string())?;
    if inputs.is_empty() {
        note(
            quiet,
            &format!(
                "note: no --input given: using {} synthetic input(s) built from the method's metadata (floats uniform in [-1, 1), integers 0, bools false)",
                meta.inputs.len()
            ),
        );
        return meta
            .inputs
            .iter()
            .enumerate()
            .map(|(i, io)| match io {
                IoInfo::Tensor(t) => Ok(synthetic(t, i as u64 + 1)),
                IoInfo::Other(k) => Err(format!(
                    "input {i} is a {k}; synthetic inputs can only be tensors"
                )),
            })
            .collect();
    }
    if inputs.len() != meta.inputs.len() {
        return Err(format!(
            "method '{method}' takes {} input(s), {} given",
            meta.inputs.len(),
            inputs.len()
        ));
    }
    inputs
        .iter()
        .map(|p| read_npy(p).map_err(|e| e.to_string()))
        .collect()
}

fn set_inputs(m: &mut Method, arrays: &[NpyArray]) -> CliResult<()> {
    for (i, a) in arrays.iter().enumerate() {
        let t = a.as_tensor().map_err(|e| format!("input {i}: {e}"))?;
        m.set_input(i, t).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn registry() -> Registry {
    pteron::default_registry()
}

fn summary(a: &NpyArray) -> String {
    let vals = a.to_f64();
    let shown: Vec<String> = vals
        .iter()
        .take(6)
        .map(|v| {
            if a.dtype.is_floating() {
                format!("{v:.6}")
            } else {
                format!("{v}")
            }
        })
        .collect();
    let more = if vals.len() > 6 { ", ..." } else { "" };
    format!("{} {:?} [{}{more}]", a.dtype, a.shape, shown.join(", "))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn cmd_run(
    path: &Path,
    method: &str,
    inputs: &[PathBuf],
    output_dir: Option<&Path>,
    data: &[PathBuf],
    threads: Option<usize>,
    quiet: bool,
) -> CliResult<()> {
    if let Some(t) = threads {
        pteron::set_num_threads(t.max(1));
    }
    let t0 = Instant::now();
    let program = load_program(path, data, quiet)?;
    let mut m = Method::load(&program, method, &registry()).map_err(|e| e.to_string())?;
    let load = t0.elapsed();
    let arrays = prepare_inputs(&program, method, inputs, quiet)?;
    set_inputs(&mut m, &arrays)?;
    let t1 = Instant::now();
    m.execute().map_err(|e| e.to_string())?;
    let exec = t1.elapsed();
    if let Some(dir) = output_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    for i in 0..m.num_outputs() {
        let a = pteron::output_array(&m, i).map_err(|e| e.to_string())?;
        println!("output {i}: {}", summary(&a));
        if let Some(dir) = output_dir {
            let p = dir.join(format!("output_{i}.npy"));
            write_npy(&p, &a).map_err(|e| e.to_string())?;
        }
    }
    println!("load {:.3} ms, execute {:.3} ms", ms(load), ms(exec));
    Ok(())
}

fn io_line(io: &IoInfo) -> String {
    match io {
        IoInfo::Tensor(t) => {
            let dynm = match t.dynamism {
                pteron::ShapeDynamism::Static => "static",
                pteron::ShapeDynamism::DynamicBound => "dynamic (sizes are upper bounds)",
                pteron::ShapeDynamism::DynamicUnbound => "dynamic (unbounded)",
            };
            let order = if t
                .dim_order
                .iter()
                .enumerate()
                .all(|(i, &d)| i == d as usize)
            {
                String::new()
            } else {
                format!(", dim order {:?}", t.dim_order)
            };
            format!(
                "{} {:?}{order}, {dynm}{}",
                t.dtype,
                t.sizes,
                if t.memory_planned {
                    ""
                } else {
                    ", not memory-planned"
                }
            )
        }
        IoInfo::Other(k) => k.to_string(),
    }
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn cmd_inspect(path: &Path, data: &[PathBuf]) -> CliResult<()> {
    let program = load_program(path, data, true)?;
    let d = program.desc();
    let reg = registry();
    println!(
        "{}: {} bytes, schema version {}",
        path.display(),
        program.file_len(),
        d.version
    );
    if let Some(h) = d.header {
        println!(
            "  extended header: program {} bytes, segments at {} ({} bytes)",
            h.program_size, h.segment_base_offset, h.segment_data_size
        );
    }
    let const_bytes: usize = d
        .constant_segment
        .as_ref()
        .and_then(|c| d.segments.get(c.segment_index))
        .map(|r| r.len())
        .unwrap_or(0)
        + d.constant_buffer.iter().map(|r| r.len()).sum::<usize>();
    println!("  constants: {}", human(const_bytes as u64));
    println!("  segments: {}", d.segments.len());
    for (i, s) in d.segments.iter().enumerate() {
        println!("    [{i}] {} at {}", human(s.len() as u64), s.start);
    }
    if !d.named_data.is_empty() {
        println!("  named data: {} blob(s)", d.named_data.len());
    }
    let mut missing_all: Vec<String> = Vec::new();
    for plan in &d.plans {
        let meta = program.method_meta(&plan.name).map_err(|e| e.to_string())?;
        println!(
            "method '{}': {} instructions, {} values",
            meta.name,
            meta.num_instructions,
            plan.values.len()
        );
        for (i, io) in meta.inputs.iter().enumerate() {
            println!("  input {i}: {}", io_line(io));
        }
        for (i, io) in meta.outputs.iter().enumerate() {
            println!("  output {i}: {}", io_line(io));
        }
        println!(
            "  memory plan: {} arena(s): {}",
            meta.planned_buffers.len(),
            meta.planned_buffers
                .iter()
                .map(|b| human(*b))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("  operators ({} distinct):", meta.operators.len());
        for (op, n) in &meta.operators {
            let mark = if reg.has_op(op) {
                ""
            } else {
                "   <- no kernel in this build"
            };
            println!("    {n:>5} x {op}{mark}");
            if !reg.has_op(op) && !missing_all.contains(op) {
                missing_all.push(op.clone());
            }
        }
        if !meta.delegates.is_empty() {
            println!("  delegates:");
            for (i, (id, size)) in meta.delegates.iter().enumerate() {
                let mark = if reg.backend(id).is_some() {
                    ""
                } else {
                    "   <- backend not in this build"
                };
                println!("    [{i}] {id}: payload {}{mark}", human(*size as u64));
                let tag = format!("backend {id}");
                if reg.backend(id).is_none() && !missing_all.contains(&tag) {
                    missing_all.push(tag);
                }
            }
        }
    }
    if missing_all.is_empty() {
        println!("this build can run every operator and delegate of this program");
    } else {
        println!(
            "this build cannot run ({}): {}",
            missing_all.len(),
            missing_all.join(", ")
        );
    }
    Ok(())
}

/// Time per operator, `runs` runs summed in `prof` (most expensive first).
pub(crate) fn print_op_profile(
    w: &mut dyn std::io::Write,
    prof: &[pteron::OpProfile],
    runs: usize,
) -> std::io::Result<()> {
    if prof.is_empty() {
        return Ok(());
    }
    let total: u64 = prof.iter().map(|p| p.nanos).sum();
    writeln!(w, "  time per operator (profiled pass, per run):")?;
    for p in prof {
        writeln!(
            w,
            "    {:>9.3} ms {:>5.1}%  {:>4} x {}",
            p.nanos as f64 / 1e6 / runs.max(1) as f64,
            100.0 * p.nanos as f64 / total.max(1) as f64,
            p.instructions,
            p.op
        )?;
    }
    Ok(())
}

/// Inside one delegate: time per node kind, then the most expensive nodes.
pub(crate) fn print_delegate_profile(
    w: &mut dyn std::io::Write,
    handle: usize,
    id: &str,
    nodes: &[pteron::NodeProfile],
    iterations: usize,
) -> std::io::Result<()> {
    let per_run = |n: u64| n as f64 / 1e6 / iterations.max(1) as f64;
    let total: u64 = nodes.iter().map(|n| n.nanos).sum();
    let mut kinds: Vec<(&str, usize, u64)> = Vec::new();
    for n in nodes {
        match kinds.iter_mut().find(|k| k.0 == n.kind) {
            Some(k) => {
                k.1 += 1;
                k.2 += n.nanos;
            }
            None => kinds.push((&n.kind, 1, n.nanos)),
        }
    }
    kinds.sort_by_key(|k| core::cmp::Reverse(k.2));
    writeln!(w, "  inside delegate {handle} ({id}), per node kind:")?;
    for (kind, count, nanos) in &kinds {
        writeln!(
            w,
            "    {:>9.3} ms {:>5.1}%  {count:>4} x {kind}",
            per_run(*nanos),
            100.0 * *nanos as f64 / total.max(1) as f64
        )?;
    }
    let mut top: Vec<&pteron::NodeProfile> = nodes.iter().collect();
    top.sort_by_key(|n| core::cmp::Reverse(n.nanos));
    writeln!(w, "  most expensive nodes:")?;
    for n in top.iter().take(15) {
        writeln!(
            w,
            "    {:>9.3} ms {:>5.1}%  node {:>4} {} {}",
            per_run(n.nanos),
            100.0 * n.nanos as f64 / total.max(1) as f64,
            n.node,
            n.kind,
            n.detail
        )?;
    }
    Ok(())
}

/// Peak resident set size in bytes (Linux `VmHWM`), if known.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[allow(clippy::too_many_arguments)]
fn cmd_bench(
    path: &Path,
    method: &str,
    warmup: usize,
    iterations: usize,
    threads: Option<usize>,
    data: &[PathBuf],
    json: bool,
    profile: bool,
    quiet: bool,
) -> CliResult<()> {
    if let Some(t) = threads {
        pteron::set_num_threads(t.max(1));
    }
    let iterations = iterations.max(1);
    let t0 = Instant::now();
    let program = load_program(path, data, quiet || json)?;
    let mut m = Method::load(&program, method, &registry()).map_err(|e| e.to_string())?;
    let load = t0.elapsed();
    let arrays = prepare_inputs(&program, method, &[], true)?;
    set_inputs(&mut m, &arrays)?;
    let t1 = Instant::now();
    m.execute().map_err(|e| e.to_string())?;
    let first = t1.elapsed();
    let show = !quiet && !json && std::io::stderr().is_terminal();
    let bar = if show {
        let b = ProgressBar::new((warmup + iterations) as u64);
        b.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b.set_message("benchmarking");
        b
    } else {
        ProgressBar::hidden()
    };
    for _ in 0..warmup {
        set_inputs(&mut m, &arrays)?;
        m.execute().map_err(|e| e.to_string())?;
        bar.inc(1);
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        set_inputs(&mut m, &arrays)?;
        let t = Instant::now();
        m.execute().map_err(|e| e.to_string())?;
        times.push(t.elapsed());
        bar.inc(1);
    }
    bar.finish_and_clear();
    if profile {
        // A separate, profiled pass so the timings above carry no profiling cost.
        m.set_profiling(true);
        for _ in 0..iterations {
            set_inputs(&mut m, &arrays)?;
            m.execute().map_err(|e| e.to_string())?;
        }
    }
    times.sort();
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2
    };
    let min = times[0];
    let rss = peak_rss();
    let mem = m.memory();
    if json {
        let v = serde_json::json!({
            "program": path.display().to_string(),
            "method": method,
            "threads": pteron::num_threads(),
            "load_ms": ms(load),
            "first_run_ms": ms(first),
            "median_ms": ms(median),
            "min_ms": ms(min),
            "iterations": iterations,
            "peak_rss_bytes": rss,
            "planned_bytes": mem.planned,
            "prepared_bytes": mem.prepared,
            "profile": m.profile().iter().map(|p| serde_json::json!({
                "op": p.op, "instructions": p.instructions, "ms_per_run": p.nanos as f64 / 1e6 / iterations as f64,
            })).collect::<Vec<_>>(),
            "delegate_profile": m.delegate_profile().iter().map(|(h, id, nodes)| serde_json::json!({
                "delegate": h, "backend": id,
                "nodes": nodes.iter().map(|n| serde_json::json!({
                    "node": n.node, "kind": n.kind, "detail": n.detail,
                    "ms_per_run": n.nanos as f64 / 1e6 / iterations as f64,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!(
            "{} ({method}), {} thread(s)",
            path.display(),
            pteron::num_threads()
        );
        println!("  load       {:>10.3} ms", ms(load));
        println!("  first run  {:>10.3} ms", ms(first));
        println!(
            "  median     {:>10.3} ms  ({iterations} iterations, {warmup} warm-up)",
            ms(median)
        );
        println!("  min        {:>10.3} ms", ms(min));
        println!(
            "  memory     planned {}, pre-packed {}, peak RSS {}",
            human(mem.planned as u64),
            human(mem.prepared as u64),
            rss.map(human).unwrap_or_else(|| "unknown".into())
        );
        let mut out = std::io::stdout().lock();
        let written = print_op_profile(&mut out, &m.profile(), iterations).and_then(|_| {
            m.delegate_profile().iter().try_for_each(|(h, id, nodes)| {
                print_delegate_profile(&mut out, *h, id, nodes, iterations)
            })
        });
        written.map_err(|e| format!("writing to stdout: {e}"))?;
    }
    Ok(())
}

fn cmd_sysinfo(
    bandwidth: bool,
    mib: usize,
    threads: Option<usize>,
    json: bool,
    quiet: bool,
) -> CliResult<()> {
    use pteron::system;
    if let Some(t) = threads {
        pteron::set_num_threads(t);
    }
    let tier = match system::isa() {
        system::Isa::Scalar => "scalar",
        system::Isa::Avx2Fma => "avx2+fma",
    };
    let bw = if bandwidth {
        if mib == 0 {
            return Err("--bandwidth-mib must be at least 1".into());
        }
        let spinner = (!quiet && !json && std::io::stderr().is_terminal()).then(|| {
            let s = ProgressBar::new_spinner();
            s.set_message(format!("reading {mib} MiB 5 times"));
            s.enable_steady_tick(Duration::from_millis(100));
            s
        });
        let b = system::read_bandwidth(mib << 20, 5);
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        Some(b)
    } else {
        None
    };
    if json {
        let mut o = serde_json::json!({
            "isa": tier,
            "avx512": system::avx512(),
            "avx512_vnni": system::avx512_vnni(),
            "xnnpack_arith": system::xnn_arith().name(),
            "threads": pteron::num_threads(),
        });
        if let Some(b) = bw {
            o["read_bandwidth_gb_s"] = serde_json::json!({
                "median": b.median / 1e9,
                "best": b.best / 1e9,
                "bytes": b.bytes,
                "threads": b.threads,
            });
        }
        println!("{o}");
        return Ok(());
    }
    println!("kernel tier     {tier}");
    println!(
        "avx-512         {}",
        if system::avx512() { "on" } else { "off" }
    );
    println!(
        "avx-512 vnni    {}",
        if system::avx512_vnni() { "on" } else { "off" }
    );
    println!("xnnpack arith   {}", system::xnn_arith().name());
    println!("threads         {}", pteron::num_threads());
    if let Some(b) = bw {
        println!(
            "read bandwidth  {:.1} GB/s median, {:.1} GB/s best ({} MiB, {} thread(s))",
            b.median / 1e9,
            b.best / 1e9,
            b.bytes >> 20,
            b.threads
        );
    }
    Ok(())
}
