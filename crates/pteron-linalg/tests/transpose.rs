//! `transpose_f32` against an index oracle on every tier (scalar, AVX2, and the
//! uncapped AVX-512 tier, which uses the AVX2 kernels) and 1..=3 threads.

mod common;

use common::{for_each_tier, Rng};
use proptest::prelude::*;
use pteron_linalg::{num_threads, set_num_threads, transpose_f32};

fn check(batch: usize, rows: usize, cols: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let n = batch * rows * cols;
    let x = rng.vec(n);
    let mut want = vec![0.0f32; n];
    for b in 0..batch {
        for r in 0..rows {
            for c in 0..cols {
                want[(b * cols + c) * rows + r] = x[(b * rows + r) * cols + c];
            }
        }
    }
    for_each_tier(|tier| {
        let before = num_threads();
        for t in [1, 2, 3] {
            set_num_threads(t);
            // One float past the end must stay untouched.
            let mut got = vec![f32::NAN; n + 1];
            transpose_f32(&x, batch, rows, cols, &mut got);
            assert!(got[n].is_nan(), "{tier} threads {t}: wrote past the end");
            for (i, (g, w)) in got[..n].iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{tier} threads {t}: batch {batch} rows {rows} cols {cols} at {i}"
                );
            }
        }
        set_num_threads(before);
    });
}

#[test]
fn transpose_edge_shapes() {
    // NCHW -> NHWC of an RGB image (3 rows, whole and ragged 8-column blocks), NHWC
    // -> NCHW of a 7x7x1280 map, large maps split over threads, single row/column,
    // ragged 8x8 blocks, empty.
    for (i, &(b, r, c)) in [
        (1, 3, 224 * 224),
        (2, 3, 61),
        (1, 3, 5),
        (1, 49, 1280),
        (1, 12544, 96),
        (1, 96, 12544),
        (1, 1, 9),
        (2, 9, 1),
        (3, 17, 33),
        (1, 8, 8),
        (1, 5, 3),
        (0, 4, 4),
        (1, 0, 4),
    ]
    .iter()
    .enumerate()
    {
        check(b, r, c, 900 + i as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn transpose_random(b in 1usize..3, rows in 1usize..70, cols in 1usize..70, seed: u64) {
        check(b, rows, cols, seed);
    }

    #[test]
    fn transpose_three_rows(b in 1usize..3, cols in 1usize..3000, seed: u64) {
        check(b, 3, cols, seed);
    }
}
