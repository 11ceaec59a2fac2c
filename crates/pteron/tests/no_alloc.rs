//! `Method::execute` allocates nothing: a counting global allocator watches real
//! fixture programs run (after one warm-up run, which may start the thread pool).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is process-wide: tests run one at a time so that one test's loading
/// is never counted as another's execution.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn execute_does_not_allocate() {
    let _serial = serial();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let cases = [
        "mlp",
        "mobilenet_v2",
        "resnet",
        "dynamic_seq",
        "transformer_encoder_padmask",
        "zoo_shape",
        "lstm",
        "xnn_mobilenet_v2",
        "xnn_q8_cnn",
        "xnn_8da4w",
        "xnn_8da4w_batch",
        "xnn_dynamic",
    ];
    for case in cases {
        let dir = fixtures.join(case);
        let mut module = pteron::Module::from_file(dir.join("program.pte")).unwrap();
        let inputs: Vec<_> = (0..)
            .map(|i| dir.join(format!("in_{i}.npy")))
            .take_while(|p| p.exists())
            .map(|p| pteron::npy::read_npy(p).unwrap())
            .collect();
        let m = module.method("forward").unwrap();
        for (i, a) in inputs.iter().enumerate() {
            m.set_input(i, a.as_tensor().unwrap()).unwrap();
        }
        m.execute().unwrap(); // warm-up
        ALLOCS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            m.execute().unwrap();
        }
        COUNTING.store(false, Ordering::SeqCst);
        let n = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(n, 0, "{case}: execute allocated {n} time(s) in 3 runs");
    }
}

/// The LLM programs of `pteron-llm`'s tests (int8 KV cache, no KV cache, XNNPACK 8da8w,
/// prefill/decode pair): prefill, then decode steps, none of whose executions allocate.
#[test]
fn llm_steps_do_not_allocate() {
    let _serial = serial();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pteron-llm/tests/data");
    for (case, method, kv) in [
        ("llm_qkv", "forward", true),
        ("llm_nokv", "forward", false),
        ("llm_xnn8da8w", "forward", true),
        ("llm_prefill_decode", "decode", true),
    ] {
        let mut module = pteron::Module::from_file(data.join(case).join("program.pte")).unwrap();
        let m = module.method(method).unwrap();
        let mut seq: Vec<i64> = vec![1, 40, 7, 300, 12];
        let mut pos = 0i64;
        let mut n = 0;
        for step in 0..4 {
            let toks: &[i64] = if kv && step > 0 {
                &seq[seq.len() - 1..]
            } else {
                &seq
            };
            let tb: Vec<u8> = toks.iter().flat_map(|t| t.to_le_bytes()).collect();
            let t = pteron::TensorRef::new(pteron::ScalarType::Long, &[1, toks.len()], None, &tb)
                .unwrap();
            m.set_input(0, t).unwrap();
            let pb = pos.to_le_bytes();
            if kv {
                let p = pteron::TensorRef::new(pteron::ScalarType::Long, &[1], None, &pb).unwrap();
                m.set_input(1, p).unwrap();
            }
            ALLOCS.store(0, Ordering::SeqCst);
            COUNTING.store(step > 0, Ordering::SeqCst);
            m.execute().unwrap();
            COUNTING.store(false, Ordering::SeqCst);
            n += ALLOCS.load(Ordering::SeqCst);
            pos += toks.len() as i64;
            seq.push(100 + step);
        }
        assert_eq!(
            n, 0,
            "{case}: execute allocated {n} time(s) in 3 decode steps"
        );
    }
}
