//! bytes → verified program description. Must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pteron::format::parse_program(data);
    let _ = pteron::format::parse_ptd(data);
});
