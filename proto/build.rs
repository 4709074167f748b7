//! Compiles `strata/v1/*.proto` into Rust without a system `protoc`.
//!
//! `protox` (a pure-Rust protobuf compiler, shipping the Google well-known
//! types) parses the files into a `FileDescriptorSet`; `tonic-prost-build`
//! turns that set into messages plus client and server stubs. The encoded set
//! is also written to `OUT_DIR/strata_v1_descriptor.bin` for gRPC reflection.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

/// The proto files of the `strata.v1` package, relative to the crate root.
const PROTOS: &[&str] = &[
    "strata/v1/streams.proto",
    "strata/v1/errors.proto",
    "strata/v1/operations.proto",
    "strata/v1/persistent.proto",
    "strata/v1/users.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    // Cargo rescans the whole directory, so new .proto files are picked up too.
    println!("cargo:rerun-if-changed=strata");
    println!("cargo:rerun-if-changed=build.rs");

    // `compile` includes imports (the well-known types) and source info, so
    // reflection clients see every file and comment.
    let fds = protox::compile(PROTOS, [&root])?;

    fs::write(
        out_dir.join("strata_v1_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    // compile_well_known_types stays off (the default), so
    // google.protobuf.Timestamp maps to prost_types::Timestamp and
    // google.protobuf.Empty to `()`.
    // Event payloads as `bytes::Bytes`: a server hands stored payloads to
    // the encoder, and a client decodes them, without copying them.
    tonic_prost_build::configure()
        .bytes(".strata.v1.EventData.data")
        .bytes(".strata.v1.EventData.metadata")
        .bytes(".strata.v1.RecordedEvent.data")
        .bytes(".strata.v1.RecordedEvent.metadata")
        .build_client(true)
        .build_server(false)
        .compile_fds(fds.clone())?;

    // The server stubs, generated a second time on their own: every message
    // is the one generated above, except the two streamed answers that the
    // server sends already encoded (`crate::v1::encoded`), so that stored
    // events go from the log's bytes to the wire without per-event work.
    let server_dir = out_dir.join("server");
    fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .out_dir(&server_dir)
        .extern_path(".strata.v1", "crate::v1")
        .extern_path(
            ".strata.v1.ReadResponse",
            "crate::v1::encoded::ReadResponse",
        )
        .extern_path(
            ".strata.v1.SubscribeResponse",
            "crate::v1::encoded::SubscribeResponse",
        )
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)?;

    Ok(())
}
