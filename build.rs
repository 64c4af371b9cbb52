//! Generates the WebSocket gateway's protobuf types from `src/edge/gateway.proto` with a
//! protobuf compiler written in Rust (protox), so no system `protoc` is needed.

fn main() {
    let proto = "src/edge/gateway.proto";
    println!("cargo:rerun-if-changed={proto}");
    let files = match protox::compile([proto], ["src/edge"]) {
        Ok(f) => f,
        Err(e) => panic!("{proto}: {e}"),
    };
    if let Err(e) = prost_build::Config::new().compile_fds(files) {
        panic!("generating Rust from {proto}: {e}");
    }
}
