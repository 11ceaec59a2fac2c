mod common;

use common::{assert_close, lock, Rng};
use pteron_linalg::{
    num_threads, parallel_for, set_num_threads, sgemm, Activation, Bias, Conv2d, Conv2dParams,
    GemmArgs,
};
use std::sync::atomic::{AtomicUsize, Ordering};

fn gemm_with_threads(t: usize) -> Vec<f32> {
    set_num_threads(t);
    let mut rng = Rng::new(3);
    let (m, n, k) = (150, 333, 700);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let mut c = vec![0.0; m * n];
    sgemm(GemmArgs {
        m,
        n,
        k,
        a: &a,
        lda: k,
        a_trans: false,
        b: &b,
        ldb: n,
        b_trans: false,
        c: &mut c,
        ldc: n,
        beta: 0.0,
        alpha: 1.0,
        bias: Bias::None,
        act: Activation::None,
    });
    c
}

fn conv_with_threads(t: usize) -> Vec<f32> {
    set_num_threads(t);
    let mut rng = Rng::new(4);
    let p = Conv2dParams {
        batch: 1,
        in_c: 16,
        in_h: 30,
        in_w: 30,
        out_c: 16,
        k_h: 3,
        k_w: 3,
        stride: (1, 1),
        padding: (1, 1),
        dilation: (1, 1),
        groups: 16,
    };
    let x = rng.vec(16 * 900);
    let w = rng.vec(16 * 9);
    let conv = Conv2d::new(p, &w, None, Activation::None).unwrap();
    let mut y = vec![0.0; 16 * 900];
    conv.run(&x, &mut y, &mut []);
    y
}

#[test]
fn results_identical_across_thread_counts() {
    let _g = lock();
    let before = num_threads();
    let g1 = gemm_with_threads(1);
    let c1 = conv_with_threads(1);
    for t in [2, 3, 4] {
        assert!(gemm_with_threads(t) == g1, "sgemm differs with {t} threads");
        assert!(
            conv_with_threads(t) == c1,
            "dwconv differs with {t} threads"
        );
    }
    assert_close(&g1, &g1, 0.0, "self");
    set_num_threads(before);
}

#[test]
fn every_task_runs_exactly_once() {
    let _g = lock();
    set_num_threads(3);
    for n in [0usize, 1, 2, 3, 7, 100, 1000] {
        let counts: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        parallel_for(n, |i| {
            counts[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(
            counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
            "n={n}"
        );
    }
}

#[test]
fn nested_parallel_for_runs_inline() {
    let _g = lock();
    set_num_threads(4);
    let total = AtomicUsize::new(0);
    parallel_for(8, |_| {
        parallel_for(8, |_| {
            parallel_for(2, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
    });
    assert_eq!(total.load(Ordering::Relaxed), 128);
}

#[test]
fn panic_in_task_propagates_and_pool_survives() {
    let _g = lock();
    set_num_threads(2);
    for victim in [0usize, 5, 63] {
        let r = std::panic::catch_unwind(|| {
            parallel_for(64, |i| {
                if i == victim {
                    panic!("boom {i}");
                }
            });
        });
        let err = r.expect_err("panic must propagate");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(msg, format!("boom {victim}"));
    }
    // Still usable.
    let s = AtomicUsize::new(0);
    parallel_for(10, |i| {
        s.fetch_add(i, Ordering::Relaxed);
    });
    assert_eq!(s.load(Ordering::Relaxed), 45);
}

#[test]
fn concurrent_dispatch_from_many_threads() {
    let _g = lock();
    set_num_threads(2);
    std::thread::scope(|sc| {
        for t in 0..4 {
            sc.spawn(move || {
                for _ in 0..50 {
                    let s = AtomicUsize::new(0);
                    parallel_for(17, |i| {
                        s.fetch_add(i + t, Ordering::Relaxed);
                    });
                    assert_eq!(s.load(Ordering::Relaxed), 136 + 17 * t);
                }
            });
        }
    });
}

#[test]
fn pool_wakes_after_parking() {
    let _g = lock();
    set_num_threads(2);
    let s = AtomicUsize::new(0);
    for _ in 0..3 {
        // Longer than the spin window so workers park in between.
        std::thread::sleep(std::time::Duration::from_millis(5));
        parallel_for(4, |_| {
            s.fetch_add(1, Ordering::Relaxed);
        });
    }
    assert_eq!(s.load(Ordering::Relaxed), 12);
}

#[test]
fn stalled_participant_loses_its_tasks_to_the_others() {
    // Task 0 is the front of the caller's range; whoever runs it stalls while the
    // others finish their ranges and steal the rest from the back. Every task
    // still runs exactly once.
    let _g = lock();
    for threads in [2usize, 3, 5] {
        set_num_threads(threads);
        for n in [2usize, 9, 64, 301] {
            let counts: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            parallel_for(n, |i| {
                if i == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                "threads={threads} n={n}"
            );
        }
    }
}

#[test]
fn contiguous_ranges_keep_neighbouring_tasks_together() {
    // Equal tasks on two threads: each runs one contiguous block of indices (its own
    // range, then what it steals from the back of the other's), so the owners form
    // few runs. Task 0 (the front of the caller's range) holds the caller until the
    // worker has run a task, so both threads take part even on a loaded machine
    // where the worker is scheduled late; from then on they run side by side. A
    // shared counter handing out indices in order would interleave them.
    let _g = lock();
    set_num_threads(2);
    let n = 64;
    let caller = std::thread::current().id();
    let owner: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    let worker_ran = std::sync::atomic::AtomicBool::new(false);
    parallel_for(n, |i| {
        let on_caller = std::thread::current().id() == caller;
        if !on_caller {
            worker_ran.store(true, Ordering::Release);
        }
        if i == 0 {
            let t = std::time::Instant::now();
            while !worker_ran.load(Ordering::Acquire) && t.elapsed().as_secs() < 10 {
                std::thread::yield_now();
            }
        }
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_micros(50) {
            std::hint::spin_loop();
        }
        owner[i].store(if on_caller { 1 } else { 2 }, Ordering::Relaxed);
    });
    let ids: Vec<usize> = owner.iter().map(|o| o.load(Ordering::Relaxed)).collect();
    assert!(ids.contains(&2), "the worker never ran a task (10 s)");
    let runs = 1 + ids.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        runs <= 4,
        "tasks interleave between threads: {runs} runs: {ids:?}"
    );
}
