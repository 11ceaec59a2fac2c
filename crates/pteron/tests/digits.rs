//! The bundled README model gives the reference runtime's probabilities.
use std::path::Path;

#[test]
fn bundled_digits_model_matches_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/digits");
    let mut m = pteron::Module::from_file(dir.join("digits.pte")).unwrap();
    let x = pteron::npy::read_npy(dir.join("samples.npy")).unwrap();
    let want = pteron::npy::read_npy(dir.join("expected_probs.npy"))
        .unwrap()
        .to_f64();
    let labels = pteron::npy::read_npy(dir.join("labels.npy"))
        .unwrap()
        .to_f64();
    let out = m.run("forward", &[x.as_tensor().unwrap()]).unwrap();
    assert_eq!(out[0].shape, vec![16, 10]);
    let got = out[0].to_f64();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5,
            "probability {i}: {g} vs reference {w}"
        );
    }
    // A smaller batch through the dynamic batch dimension.
    let first4 = pteron::npy::NpyArray {
        dtype: x.dtype,
        shape: vec![4, 1, 8, 8],
        data: x.data[..4 * 64 * 4].to_vec(),
    };
    let out4 = m.run("forward", &[first4.as_tensor().unwrap()]).unwrap();
    assert_eq!(out4[0].shape, vec![4, 10]);
    for (g, w) in out4[0].to_f64().iter().zip(&want[..40]) {
        assert!((g - w).abs() <= 1e-5);
    }
    let correct = (0..16)
        .filter(|&i| {
            let row = &got[i * 10..i * 10 + 10];
            let arg = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            arg as f64 == labels[i]
        })
        .count();
    assert!(correct >= 15, "{correct}/16 correct");
}
