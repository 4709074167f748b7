//! Strata's gRPC wire contract.
//!
//! This crate owns the `strata.v1` protobuf package (`proto/strata/v1/*.proto`):
//! the generated messages, the `Streams` client and server stubs, the encoded
//! descriptor set for gRPC reflection, and small helpers that only concern the
//! wire form (UUID parsing, constructors for `oneof` wrappers).
//!
//! Next to it, [`kurrentdb`] holds KurrentDB's public protocol
//! (`event_store.client.*`, `proto/kurrentdb/*.proto`), generated the same way,
//! for the server's compatibility layer and for tests that use KurrentDB's
//! own message shapes.
//!
//! It must never know about storage or the server: conversions to the server's
//! domain types live in the server, on top of what is exported here.
//!
//! The build needs no system `protoc`: `build.rs` compiles the `.proto` files
//! with `protox`.

pub mod kurrentdb;
pub mod v1;

pub use kurrentdb::KURRENTDB_FILE_DESCRIPTOR_SET;

/// The encoded `google.protobuf.FileDescriptorSet` of `strata.v1` and every
/// file it imports (the well-known types), with source comments. Feed it to
/// `tonic-reflection` so tools such as `grpcurl` work without the `.proto` files.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("strata_v1_descriptor");

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost_types::FileDescriptorSet;

    use super::FILE_DESCRIPTOR_SET;

    #[test]
    fn descriptor_set_decodes_and_contains_the_streams_service() {
        let fds = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        let streams = fds
            .file
            .iter()
            .find(|file| file.package() == "strata.v1")
            .expect("strata.v1 file present");
        let service = streams
            .service
            .iter()
            .find(|service| service.name() == "Streams")
            .expect("service strata.v1.Streams present");
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(
            methods,
            [
                "Append",
                "MultiAppend",
                "PipelinedAppend",
                "Read",
                "Subscribe",
                "Stats",
                "Delete",
                "Tombstone",
                "GetStreamMetadata",
                "SetStreamMetadata"
            ]
        );
        assert_eq!(
            crate::v1::streams_server::SERVICE_NAME,
            format!("{}.{}", streams.package(), service.name())
        );
    }

    #[test]
    fn descriptor_set_includes_imported_well_known_types() {
        // Reflection clients resolve imports from the same set.
        let fds = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        let names: Vec<&str> = fds.file.iter().map(|f| f.name()).collect();
        for wanted in [
            "google/protobuf/empty.proto",
            "google/protobuf/timestamp.proto",
            "strata/v1/streams.proto",
        ] {
            assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
        }
    }
}
