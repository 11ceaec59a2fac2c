//! Golden end-to-end tests: every `fixtures/<case>/` was exported by the stock
//! ExecuTorch 1.5.1 exporter and run by its runtime (`conformance/export_fixtures.py`).
//! We load the same `.pte`, feed the same inputs and compare with the reference
//! runtime's outputs (`ref_<i>.npy`) within the case's tolerances.
//!
//! `PTERON_CASE=<substring>` runs matching cases only. Cases listed in
//! `tests/conformance_xfail.txt` (with a reason) must fail; if one passes, the test
//! fails too, so the list stays true.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pteron::npy::{read_npy, NpyArray};
use pteron::system::{set_xnn_arith, XnnArith};
use pteron::Module;
use serde_json::Value as J;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn xfail() -> BTreeMap<String, String> {
    listed("tests/conformance_xfail.txt")
}

/// Cases compared with eager PyTorch (`eager_<i>.npy`) instead of the reference
/// runtime, because the reference runtime is wrong there (each line says how).
fn eager_cases() -> BTreeMap<String, String> {
    listed("tests/conformance_eager.txt")
}

fn listed(file: &str) -> BTreeMap<String, String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(p).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (c, r) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (c.to_string(), r.trim().to_string())
        })
        .collect()
}

fn compare(
    what: &str,
    got: &NpyArray,
    want: &NpyArray,
    atol: f64,
    rtol: f64,
) -> Result<f64, String> {
    if got.dtype != want.dtype {
        return Err(format!(
            "{what}: dtype {} != reference {}",
            got.dtype, want.dtype
        ));
    }
    if got.shape != want.shape {
        return Err(format!(
            "{what}: shape {:?} != reference {:?}",
            got.shape, want.shape
        ));
    }
    let (g, w) = (got.to_f64(), want.to_f64());
    let mut max_err = 0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        if a.is_nan() && b.is_nan() || a == b {
            continue;
        }
        let err = (a - b).abs();
        max_err = max_err.max(err);
        if err.is_nan() || err > atol + rtol * b.abs() {
            return Err(format!("{what}: element {i}: {a} vs reference {b} (|diff| {err:.3e} > atol {atol} + rtol {rtol})"));
        }
    }
    Ok(max_err)
}

/// Sets the XNNPACK arithmetic for one case (methods may load lazily) and
/// reverts to the CPU's default when the case is done, however it ends.
struct ArithGuard;

impl ArithGuard {
    fn set(a: Option<XnnArith>) -> ArithGuard {
        set_xnn_arith(a);
        ArithGuard
    }
}

impl Drop for ArithGuard {
    fn drop(&mut self) {
        set_xnn_arith(None);
    }
}

fn run_case(dir: &Path, expected: &str) -> Result<String, String> {
    let meta: J = serde_json::from_str(
        &std::fs::read_to_string(dir.join("meta.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let method = meta["method"].as_str().unwrap_or("forward");
    let program = dir.join(meta["program"].as_str().unwrap_or("program.pte"));
    let atol = meta["atol"].as_f64().unwrap_or(1e-4);
    let rtol = meta["rtol"].as_f64().unwrap_or(1e-4);
    let runs = meta["runs"].as_u64().unwrap_or(1) as usize;
    // XNNPACK's dynamically quantized arithmetic depends on the CPU that recorded the
    // reference outputs; reproduce that one (weights are packed for it at load).
    let arith = match meta["xnnpack_arith"].as_str() {
        Some(a) => Some(XnnArith::parse(a).ok_or_else(|| format!("unknown xnnpack_arith {a:?}"))?),
        None => None,
    };
    let _arith = ArithGuard::set(arith);
    let mut module = Module::from_file(&program).map_err(|e| format!("load: {e}"))?;
    if let Some(ptd) = meta["ptd"].as_str() {
        module
            .add_data_file(dir.join(ptd))
            .map_err(|e| format!("ptd: {e}"))?;
    }
    let mut worst = 0f64;
    for r in 0..runs {
        let rd = if r == 0 {
            dir.to_path_buf()
        } else {
            dir.join(format!("run{r}"))
        };
        let mut inputs = Vec::new();
        for i in 0.. {
            let p = rd.join(format!("in_{i}.npy"));
            if !p.exists() {
                break;
            }
            inputs.push(read_npy(&p).map_err(|e| e.to_string())?);
        }
        let views: Vec<_> = inputs
            .iter()
            .map(|a| a.as_tensor().expect("npy view"))
            .collect();
        let outs = module
            .run(method, &views)
            .map_err(|e| format!("run {r}: {e}"))?;
        let mut n_ref = 0;
        for (i, o) in outs.iter().enumerate() {
            let p = rd.join(format!("{expected}_{i}.npy"));
            if !p.exists() {
                return Err(format!("run {r}: output {i} has no reference file"));
            }
            n_ref += 1;
            let want = read_npy(&p).map_err(|e| e.to_string())?;
            worst = worst.max(compare(
                &format!("run {r} output {i}"),
                o,
                &want,
                atol,
                rtol,
            )?);
        }
        if rd.join(format!("{expected}_{n_ref}.npy")).exists() {
            return Err(format!(
                "run {r}: reference has more outputs than the {n_ref} we produced"
            ));
        }
    }
    Ok(format!("max |diff| {worst:.2e}"))
}

#[test]
fn fixtures_match_reference_runtime() {
    let filter = std::env::var("PTERON_CASE").ok();
    let xf = xfail();
    let eager = eager_cases();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let (mut passed, mut xfailed) = (0, 0);
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let expected = if eager.contains_key(&name) {
            "eager"
        } else {
            "ref"
        };
        let res = run_case(dir, expected);
        match (&res, xf.get(&name)) {
            (Ok(msg), None) => {
                passed += 1;
                eprintln!("ok     {name}: {msg}");
            }
            (Err(e), Some(reason)) => {
                xfailed += 1;
                eprintln!("xfail  {name}: {e} [{reason}]");
            }
            (Ok(_), Some(reason)) => failures.push(format!("{name}: passes but is listed as expected to fail ({reason}); remove it from conformance_xfail.txt")),
            (Err(e), None) => {
                eprintln!("FAIL   {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    eprintln!(
        "{passed} passed, {xfailed} expected failures, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} fixture case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
