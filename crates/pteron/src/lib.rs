//! # pteron
//!
//! Brief overview: run ExecuTorch `.pte` programs in pure Rust.
//!
//! ```no_run
//! use pteron::{Module, npy};
//! let mut m = Module::from_file("model.pte")?;
//! let x = npy::read_npy("input.npy")?;
//! let outputs = m.run("forward", &[x.as_tensor()?])?;
//! println!("{:?}", outputs[0].shape);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! * [`Module`] is the convenience API: load a file (read, or memory-mapped with
//!   [`Module::from_file_mmap`]), attach `.ptd` data files, run methods by name.
//! * Lower-level control: [`Program`], [`Method`], [`Registry`] (re-exported from
//!   `pteron-runtime`), file formats in [`format`].
//! * [`default_registry`] holds every kernel and backend this build has.
//!
//! Safety: no `unsafe` except the memory-map edge ([`Module::from_file_mmap`]), whose
//! contract is documented there.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use pteron_format as format;
pub use pteron_runtime::*;

pub mod npy;

use npy::NpyArray;

/// Errors of the convenience API: runtime errors plus file I/O.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] pteron_runtime::Error),
    #[error("input {index}: {source}")]
    Input {
        index: usize,
        source: pteron_runtime::KernelError,
    },
}

/// Every kernel and backend compiled into this build.
pub fn default_registry() -> Registry {
    let mut r = Registry::new();
    pteron_ops::register_all(&mut r);
    r
}

/// Sets the number of threads used by kernels (including the caller). Default: all cores.
pub fn set_num_threads(n: usize) {
    pteron_linalg::set_num_threads(n)
}

/// The number of kernel threads.
pub fn num_threads() -> usize {
    pteron_linalg::num_threads()
}

fn read_file(path: &Path) -> Result<Bytes, ModuleError> {
    let v = std::fs::read(path).map_err(|source| ModuleError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(bytes_from_vec(v))
}

#[cfg(feature = "mmap")]
#[allow(unsafe_code)]
mod mmap {
    use super::*;

    struct MapSource(memmap2::Mmap);
    impl ByteSource for MapSource {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
    }

    /// # Safety
    /// The file must not be modified or truncated while the returned bytes are alive.
    pub(crate) unsafe fn map(path: &Path) -> Result<Bytes, ModuleError> {
        let io = |source| ModuleError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the caller upholds this function's contract (no concurrent
        // modification of the file); the map is read-only and page-aligned.
        let m = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
        Ok(Arc::new(MapSource(m)))
    }
}

/// A program with its methods, loaded on first use.
pub struct Module {
    program: Program,
    registry: Arc<Registry>,
    methods: HashMap<String, Method>,
}

impl Module {
    /// Reads and verifies a `.pte` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Module, ModuleError> {
        let bytes = read_file(path.as_ref())?;
        Self::from_source(bytes)
    }

    /// Memory-maps and verifies a `.pte` file (no copy of weights).
    ///
    /// # Safety
    /// The file must not be modified or truncated while the module (or anything
    /// loaded from it) is alive: the bytes are read in place, and a concurrent change
    /// is undefined behaviour (as with any memory map). Verification happens at load
    /// and is not repeated.
    #[cfg(feature = "mmap")]
    #[allow(unsafe_code)]
    pub unsafe fn from_file_mmap(path: impl AsRef<Path>) -> Result<Module, ModuleError> {
        // SAFETY: forwarded contract, see above.
        let bytes = unsafe { mmap::map(path.as_ref())? };
        Self::from_source(bytes)
    }

    /// Verifies a program held in memory (copied once into aligned storage).
    pub fn from_bytes(bytes: &[u8]) -> Result<Module, ModuleError> {
        Self::from_source(bytes_from_slice(bytes))
    }

    fn from_source(bytes: Bytes) -> Result<Module, ModuleError> {
        Ok(Module {
            program: Program::load(bytes)?,
            registry: Arc::new(default_registry()),
            methods: HashMap::new(),
        })
    }

    /// Uses `registry` (e.g. with extra kernels or backends) for methods loaded from now on.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Arc::new(registry);
        self
    }

    /// Attaches an external weights file (`.ptd`).
    pub fn add_data_file(&mut self, path: impl AsRef<Path>) -> Result<(), ModuleError> {
        let bytes = read_file(path.as_ref())?;
        self.program.add_data_file(bytes)?;
        Ok(())
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn method_meta(&self, name: &str) -> Result<MethodMeta, ModuleError> {
        Ok(self.program.method_meta(name)?)
    }

    /// Loads (once) and returns method `name`.
    pub fn method(&mut self, name: &str) -> Result<&mut Method, ModuleError> {
        if !self.methods.contains_key(name) {
            let m = Method::load(&self.program, name, &self.registry)?;
            self.methods.insert(name.to_string(), m);
        }
        Ok(self.methods.get_mut(name).expect("inserted above"))
    }

    /// Sets `inputs`, executes `name` and copies every tensor output out (C order).
    pub fn run(&mut self, name: &str, inputs: &[TensorRef<'_>]) -> Result<Vec<NpyArray>, ModuleError> {
        let m = self.method(name)?;
        if inputs.len() != m.num_inputs() {
            return Err(pteron_runtime::Error::Input {
                method: name.to_string(),
                index: inputs.len().min(m.num_inputs()),
                reason: format!("the method takes {} inputs, {} given", m.num_inputs(), inputs.len()),
            }
            .into());
        }
        for (i, t) in inputs.iter().enumerate() {
            m.set_input(i, *t)?;
        }
        m.execute()?;
        let mut outs = Vec::with_capacity(m.num_outputs());
        for i in 0..m.num_outputs() {
            outs.push(output_array(m, i)?);
        }
        Ok(outs)
    }
}

/// Copies output `i` of `m` into an owned C-order array; scalar outputs become 0-d arrays.
pub fn output_array(m: &Method, i: usize) -> Result<NpyArray, pteron_runtime::Error> {
    match m.output_value(i)? {
        Value::Tensor(_) => Ok(NpyArray::from_tensor(&m.output(i)?)),
        Value::Scalar(s) => Ok(match s.get() {
            Scalar::Int(v) => NpyArray {
                dtype: ScalarType::Long,
                shape: vec![],
                data: v.to_le_bytes().to_vec(),
            },
            Scalar::Double(v) => NpyArray {
                dtype: ScalarType::Double,
                shape: vec![],
                data: v.to_le_bytes().to_vec(),
            },
            Scalar::Bool(v) => NpyArray {
                dtype: ScalarType::Bool,
                shape: vec![],
                data: vec![v as u8],
            },
        }),
        other => Err(pteron_runtime::Error::Output {
            method: m.name().to_string(),
            index: i,
            reason: format!("a {} output cannot be converted to an array", other.kind()),
        }),
    }
}
