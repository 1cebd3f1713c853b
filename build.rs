//! Compiles the gRPC contract in `proto/` with protox (no `protoc` binary needed) and writes the
//! encoded file descriptor set for server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTO: &str = "proto/voiceprint/v1/voiceprint.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile([PROTO], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("voiceprint_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
