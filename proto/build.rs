//! Compiles `strata/v1/*.proto` and `kurrentdb/*.proto` into Rust without a
//! system `protoc`.
//!
//! `protox` (a pure-Rust protobuf compiler, shipping the Google well-known
//! types) parses the files into a `FileDescriptorSet`; `tonic-prost-build`
//! turns that set into messages plus client and server stubs. The encoded sets
//! are also written to `OUT_DIR/strata_v1_descriptor.bin` and
//! `OUT_DIR/kurrentdb_descriptor.bin` for gRPC reflection.

use std::{
    env,
    error::Error,
    fs,
    path::{Path, PathBuf},
};

use prost::Message as _;

/// The proto files of the `strata.v1` package, relative to the crate root.
const PROTOS: &[&str] = &[
    "strata/v1/streams.proto",
    "strata/v1/errors.proto",
    "strata/v1/operations.proto",
    "strata/v1/persistent.proto",
    "strata/v1/users.proto",
];

/// The proto files of KurrentDB's public protocol (`event_store.client.*` and
/// the `google.rpc` status it uses), relative to the crate root.
const KURRENTDB_PROTOS: &[&str] = &[
    "kurrentdb/shared.proto",
    "kurrentdb/code.proto",
    "kurrentdb/status.proto",
    "kurrentdb/streams.proto",
    "kurrentdb/persistent.proto",
    "kurrentdb/gossip.proto",
    "kurrentdb/serverfeatures.proto",
    "kurrentdb/users.proto",
];

/// The event payloads of KurrentDB's protocol, generated as `bytes::Bytes`.
const KURRENTDB_BYTES: &[&str] = &[
    ".event_store.client.streams.ReadResp.ReadEvent.RecordedEvent.data",
    ".event_store.client.streams.ReadResp.ReadEvent.RecordedEvent.custom_metadata",
    ".event_store.client.streams.AppendReq.ProposedMessage.data",
    ".event_store.client.streams.AppendReq.ProposedMessage.custom_metadata",
    ".event_store.client.streams.BatchAppendReq.ProposedMessage.data",
    ".event_store.client.streams.BatchAppendReq.ProposedMessage.custom_metadata",
    ".event_store.client.persistent_subscriptions.ReadResp.ReadEvent.RecordedEvent.data",
    ".event_store.client.persistent_subscriptions.ReadResp.ReadEvent.RecordedEvent.custom_metadata",
];

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    // Cargo rescans the whole directory, so new .proto files are picked up too.
    println!("cargo:rerun-if-changed=strata");
    println!("cargo:rerun-if-changed=kurrentdb");
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

    compile_kurrentdb(&root, &out_dir)
}

/// KurrentDB's protocol, on its own: messages, client and server stubs in
/// `OUT_DIR/kurrentdb/` (one file per package, `crate::kurrentdb` nests them
/// as the packages nest), the `Streams` server stub with encoded read answers
/// in `OUT_DIR/kurrentdb_server/`, and its own descriptor set.
fn compile_kurrentdb(root: &Path, out_dir: &Path) -> Result<(), Box<dyn Error>> {
    let fds = protox::compile(KURRENTDB_PROTOS, [root])?;
    fs::write(
        out_dir.join("kurrentdb_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    let kurrentdb_dir = out_dir.join("kurrentdb");
    fs::create_dir_all(&kurrentdb_dir)?;
    let builder = KURRENTDB_BYTES
        .iter()
        .fold(tonic_prost_build::configure(), |builder, path| {
            builder.bytes(path)
        });
    builder
        .out_dir(&kurrentdb_dir)
        .build_client(true)
        .build_server(true)
        .compile_fds(fds.clone())?;

    // The `Streams` server stub once more, on its own (as for `strata.v1`):
    // every message is the one generated above except `ReadResp`, which the
    // server sends already encoded, one event per message, straight from the
    // log's bytes. Only `event_store.client.streams.rs` of this directory is
    // used.
    let server_dir = out_dir.join("kurrentdb_server");
    fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .out_dir(&server_dir)
        .extern_path(".event_store", "crate::kurrentdb::generated::event_store")
        .extern_path(".google.rpc", "crate::kurrentdb::generated::google::rpc")
        .extern_path(
            ".event_store.client.streams.ReadResp",
            "crate::v1::encoded::Encoded",
        )
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
