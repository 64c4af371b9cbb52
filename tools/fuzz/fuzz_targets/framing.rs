//! Fuzzes the stream framing decoders (len32, SLIP, auto) under arbitrary chunkings.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| oscgate::wire::framing::fuzz_check(data));
