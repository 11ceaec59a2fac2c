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

#[test]
fn execute_does_not_allocate() {
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
