//! Loading a program piece by piece (`Module::from_file`, positioned reads), whole
//! (`Module::from_file_whole`) and memory-mapped (`Module::from_file_mmap`) gives the
//! same outputs; truncated or unreadable files give typed errors, never a panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pteron::npy::read_npy;
use pteron::{Bytes, DataLoader, Error, Module, ModuleError, Program};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run_all(mut m: Module, dir: &Path) -> Vec<Vec<u8>> {
    let mut inputs = Vec::new();
    for i in 0.. {
        let p = dir.join(format!("in_{i}.npy"));
        if !p.exists() {
            break;
        }
        inputs.push(read_npy(&p).unwrap());
    }
    let views: Vec<_> = inputs.iter().map(|a| a.as_tensor().unwrap()).collect();
    m.run("forward", &views)
        .unwrap()
        .into_iter()
        .map(|o| o.data)
        .collect()
}

/// Fixtures with XNNPACK delegates whose weights are named data segments, constants in
/// the constant segment, portable-only programs, and initial mutable data.
const CASES: &[&str] = &[
    "xnn_8da4w",
    "xnn_mobilenet_v2",
    "xnn_q8_cnn",
    "mlp",
    "resnet",
    "mutable_buffer_init",
];

#[test]
fn piecewise_whole_and_mmap_loads_agree() {
    for case in CASES {
        let dir = repo().join("fixtures").join(case);
        let pte = dir.join("program.pte");
        let whole = run_all(Module::from_file_whole(&pte).unwrap(), &dir);
        let piecewise = run_all(Module::from_file(&pte).unwrap(), &dir);
        assert_eq!(whole, piecewise, "{case}: piecewise load differs");
        // SAFETY: fixtures are not modified while the test runs.
        #[allow(unsafe_code)]
        let mapped = run_all(unsafe { Module::from_file_mmap(&pte) }.unwrap(), &dir);
        assert_eq!(whole, mapped, "{case}: memory-mapped load differs");
    }
}

#[test]
fn piecewise_program_keeps_only_the_head_and_constants() {
    let pte = repo().join("fixtures/xnn_8da4w/program.pte");
    let len = std::fs::metadata(&pte).unwrap().len() as usize;
    let p = Program::from_file(&pte).unwrap();
    assert_eq!(p.file_len(), len);
    let head = p.desc().header.expect("segmented file").program_size as usize;
    // The resident leading bytes are the FlatBuffers data, not the segments.
    assert_eq!(p.bytes().len(), head);
    assert!(head < len);
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pteron-loader-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Loads every method of a (possibly broken) file; errors are fine, panics are not.
fn try_load(path: &Path) -> Result<(), String> {
    let mut m = Module::from_file(path).map_err(|e| e.to_string())?;
    let names: Vec<String> = m.program().method_names().map(String::from).collect();
    for n in names {
        m.method(&n).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn truncated_files_are_typed_errors() {
    for case in ["xnn_8da4w", "xnn_q8_cnn", "mlp"] {
        let bytes = std::fs::read(repo().join("fixtures").join(case).join("program.pte")).unwrap();
        let n = bytes.len();
        let mut cuts = vec![0, 1, 8, 63, 64, 100, n / 4, n / 2, n - 17, n - 1];
        if let Ok(p) = Program::load(pteron::bytes_from_vec(bytes.clone())) {
            if let Some(h) = p.desc().header {
                let ps = h.program_size as usize;
                cuts.extend([ps - 1, ps, ps + 1]);
            }
        }
        for cut in cuts {
            if cut >= n {
                continue;
            }
            let path = tmp(&format!("{case}-{cut}.pte"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let r = try_load(&path);
            assert!(r.is_err(), "{case} cut at {cut} of {n} bytes loaded");
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let r = Module::from_file(tmp("does-not-exist.pte"));
    assert!(matches!(r, Err(ModuleError::Io { .. })), "{:?}", r.err());
}

/// Claims the file's full length but fails every read past `fail_from`: the file
/// changed (shrank) after it was opened.
struct Failing {
    bytes: Bytes,
    fail_from: u64,
}

impl DataLoader for Failing {
    fn len(&self) -> u64 {
        self.bytes.bytes().len() as u64
    }
    fn load(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        if offset + len as u64 > self.fail_from {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank",
            ));
        }
        self.bytes.load(offset, len)
    }
}

#[test]
fn read_failures_while_loading_a_method_are_typed_errors() {
    let pte = repo().join("fixtures/xnn_8da4w/program.pte");
    let bytes = pteron::bytes_from_vec(std::fs::read(&pte).unwrap());
    let head = Program::load(bytes.clone())
        .unwrap()
        .desc()
        .header
        .unwrap()
        .program_size;
    // The head reads fine; delegate payloads and named data fail when the method loads.
    let loader = Failing {
        bytes: bytes.clone(),
        fail_from: head + 1,
    };
    let program = Program::from_loader(Arc::new(loader)).unwrap();
    let mut m = Module::from_program(program).unwrap();
    match m.method("forward") {
        Err(ModuleError::Runtime(Error::Read { .. })) => {}
        Err(e) => panic!("expected a read error, got {e}"),
        Ok(_) => panic!("loaded although reads fail"),
    }
    // A failing head read is reported by `from_loader` itself.
    let loader = Failing {
        bytes,
        fail_from: 10,
    };
    assert!(matches!(
        Program::from_loader(Arc::new(loader)),
        Err(Error::Read { .. })
    ));
}

#[test]
fn parsing_the_head_alone_matches_the_whole_file() {
    use pteron::format::{parse_program, parse_program_head, program_head_len, FormatError};
    for case in CASES {
        let bytes = std::fs::read(repo().join("fixtures").join(case).join("program.pte")).unwrap();
        let len = bytes.len() as u64;
        let n = program_head_len(&bytes[..64], len).unwrap();
        assert!(n <= bytes.len());
        let whole = parse_program(&bytes).unwrap();
        assert_eq!(
            parse_program_head(&bytes[..n], len).unwrap(),
            whole,
            "{case}"
        );
        // A head shorter than the FlatBuffers data, or a file shorter than its header
        // says, is refused.
        if n > 64 {
            assert!(matches!(
                parse_program_head(&bytes[..n - 1], len),
                Err(FormatError::TooShort { .. })
            ));
        }
        if whole.header.is_some() {
            assert!(parse_program_head(&bytes[..n], n as u64 - 1).is_err());
        }
        assert!(program_head_len(&bytes[..10], len).is_err());
    }
}
