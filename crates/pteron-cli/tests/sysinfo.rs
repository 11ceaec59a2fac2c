//! `pteron sysinfo`: the tier report and the bandwidth probe, as JSON and text.

use std::process::Command;

fn pteron(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pteron"))
        .args(args)
        .output()
        .expect("run pteron")
}

#[test]
fn json_reports_tier_and_a_positive_bandwidth() {
    let out = pteron(&[
        "sysinfo",
        "--json",
        "--bandwidth",
        "--bandwidth-mib",
        "8",
        "--threads",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(
        matches!(v["isa"].as_str(), Some("scalar" | "avx2+fma")),
        "{v}"
    );
    assert_eq!(v["threads"], 2);
    let bw = &v["read_bandwidth_gb_s"];
    assert_eq!(bw["bytes"], 8 << 20);
    let (med, best) = (bw["median"].as_f64().unwrap(), bw["best"].as_f64().unwrap());
    assert!(med > 0.0 && best >= med, "{bw}");
}

#[test]
fn the_cap_turns_avx512_off() {
    let out = Command::new(env!("CARGO_BIN_EXE_pteron"))
        .args(["sysinfo", "--json"])
        .env("PTERON_CPU_CAP", "avx2")
        .output()
        .expect("run pteron");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["avx512"], false);
    assert_eq!(v["avx512_vnni"], false);
    // Capped to AVX2, pteron reproduces XNNPACK's AVX2 arithmetic.
    assert_eq!(v["xnnpack_arith"], "avx2");
    assert!(v.get("read_bandwidth_gb_s").is_none());
}

#[test]
fn zero_sized_probe_is_an_error() {
    let out = pteron(&["sysinfo", "--bandwidth", "--bandwidth-mib", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bandwidth-mib"));
}
