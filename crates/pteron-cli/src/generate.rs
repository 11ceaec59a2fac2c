//! `pteron generate`: text generation with an `export_llm` program and a tokenizer.
//! Text streams to stdout as it is produced; statistics go to stderr.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;

use pteron_llm::{GenerationConfig, LoadOptions, Runner, StopReason};

/// Arguments of `pteron generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The LLM program (.pte) exported by export_llm.
    #[arg(long)]
    model: PathBuf,
    /// Tokenizer file (tokenizer.json, tokenizer.model, tiktoken, llama2.c .bin).
    #[arg(long)]
    tokenizer: PathBuf,
    /// The prompt text.
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Most tokens to generate per turn (default: until EOS or the context is full).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Nucleus sampling threshold (values outside (0, 1) disable it).
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    /// Sample among the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// RNG seed (default: the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the prompt before the generated text.
    #[arg(long)]
    echo: bool,
    /// Interactive: after the first answer, read further turns from stdin (one per
    /// line), keeping the KV cache; an empty line or EOF ends.
    #[arg(long)]
    chat: bool,
    /// Drop the oldest prompt tokens when the prompt does not fit the context.
    #[arg(long)]
    truncate: bool,
    /// Extra external weights (.ptd).
    #[arg(long = "data")]
    data: Vec<PathBuf>,
    #[arg(long)]
    threads: Option<usize>,
    /// Time the decode steps per operator and per delegate node; printed to stderr at
    /// the end (the last turn's decode steps).
    #[arg(long)]
    profile: bool,
}

pub fn cmd_generate(a: GenerateArgs, quiet: bool) -> Result<(), String> {
    let opts = LoadOptions {
        threads: a.threads,
        data_files: a.data.clone(),
    };
    let mut runner = Runner::load_with(&a.model, &a.tokenizer, &opts).map_err(|e| e.to_string())?;
    runner.set_profiling(a.profile);
    if !quiet {
        let m = runner.metadata();
        eprintln!(
            "loaded {} in {:.1} ms: vocab {}, context {}, {} prefill, eos {:?}",
            a.model.display(),
            runner.load_time().as_secs_f64() * 1e3,
            m.vocab_size,
            m.max_context_len,
            if runner.parallel_prefill() {
                "parallel"
            } else {
                "sequential"
            },
            m.eos_ids
        );
    }
    let first = match (&a.prompt, &a.prompt_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => {
            Some(std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?)
        }
        (None, None) if a.chat => None,
        (None, None) => {
            return Err(
                "give --prompt or --prompt-file (or --chat to read turns from stdin)".into(),
            )
        }
    };
    let cfg = GenerationConfig {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
        echo: a.echo,
        truncate_prompt: a.truncate,
        ..GenerationConfig::default()
    };
    let turn = |runner: &mut Runner, prompt: &str| -> Result<(), String> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut io_err = None;
        let g = runner
            .generate(prompt, &cfg, |ev| {
                match out.write_all(ev.text.as_bytes()).and_then(|_| out.flush()) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        io_err = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let _ = writeln!(out);
        if let Some(e) = io_err {
            return Err(format!("writing to stdout: {e}"));
        }
        if !quiet {
            let why = match g.stop {
                StopReason::Eos(t) => format!("end of sequence (token {t})"),
                StopReason::MaxNewTokens => "max new tokens reached".into(),
                StopReason::ContextFull => format!(
                    "context full ({} positions)",
                    runner.metadata().max_context_len
                ),
                StopReason::Cancelled => "cancelled".into(),
            };
            eprintln!("[{why}] {}", g.stats);
        }
        Ok(())
    };
    if let Some(p) = first {
        turn(&mut runner, &p)?;
    }
    if a.chat {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line.map_err(|e| format!("reading stdin: {e}"))?;
            if line.trim().is_empty() {
                break;
            }
            turn(&mut runner, &line)?;
        }
    }
    if a.profile {
        print_decode_profile(&mut runner)?;
    }
    Ok(())
}

/// `--profile`: where the last turn's decode steps spent their time, per step.
fn print_decode_profile(runner: &mut Runner) -> Result<(), String> {
    let p = runner.decode_profile().map_err(|e| e.to_string())?;
    let mut err = std::io::stderr().lock();
    let written = writeln!(err, "decode profile ({} steps, per step):", p.steps)
        .and_then(|_| crate::print_op_profile(&mut err, &p.ops, p.steps))
        .and_then(|_| {
            p.delegates.iter().try_for_each(|(h, id, nodes)| {
                crate::print_delegate_profile(&mut err, *h, id, nodes, p.steps)
            })
        });
    written.map_err(|e| format!("writing to stderr: {e}"))
}
