//! bytes → Program → every Method loaded and executed on zeroed inputs. Must never panic.
#![no_main]
use std::sync::OnceLock;

static REG: OnceLock<pteron::Registry> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let reg = REG.get_or_init(pteron::default_registry);
    let Ok(p) = pteron::Program::load(pteron::bytes_from_slice(data)) else { return };
    let names: Vec<String> = p.method_names().map(String::from).collect();
    for name in names {
        let Ok(mut m) = pteron::Method::load(&p, &name, reg) else { continue };
        let Ok(meta) = p.method_meta(&name) else { continue };
        let mut ok = true;
        for (i, io) in meta.inputs.iter().enumerate() {
            if let pteron::IoInfo::Tensor(t) = io {
                let data = vec![0u8; t.nbytes];
                let Ok(v) = pteron::TensorRef::new(t.dtype, &t.sizes, None, &data) else { ok = false; break };
                ok &= m.set_input(i, v).is_ok();
            }
        }
        if ok {
            let _ = m.execute();
        }
    }
});
