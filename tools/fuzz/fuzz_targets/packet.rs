//! Fuzzes the OSC packet check, every accessor, peek and re-encoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| oscgate::wire::invariants::packet(data));
