//! Types and service stubs generated from `proto/voiceprint/v1/voiceprint.proto`.
#![allow(missing_docs, clippy::all)]

/// `voiceprint.v1`: the gRPC contract.
pub mod v1 {
    tonic::include_proto!("voiceprint.v1");
}

/// Encoded file descriptor set of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/voiceprint_descriptor.bin"));
