//! The descriptor set against KurrentDB's public definitions: service and
//! method names (they are the gRPC paths) and the field numbers, types and
//! oneofs the official clients put on the wire. Every number below was
//! checked against the clients' v1 `.proto` files (see the file headers).

use prost::Message as _;
use prost_types::{
    field_descriptor_proto::{Label, Type},
    DescriptorProto, FieldDescriptorProto, FileDescriptorSet,
};

use super::KURRENTDB_FILE_DESCRIPTOR_SET;

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(KURRENTDB_FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

/// The methods of `package.service`, in declaration order, with whether
/// each streams its requests and its responses.
fn methods(fds: &FileDescriptorSet, package: &str, service: &str) -> Vec<(String, bool, bool)> {
    let service = fds
        .file
        .iter()
        .filter(|file| file.package() == package)
        .flat_map(|file| &file.service)
        .find(|candidate| candidate.name() == service)
        .unwrap_or_else(|| panic!("service {package}.{service} missing"));
    service
        .method
        .iter()
        .map(|method| {
            (
                method.name().to_owned(),
                method.client_streaming(),
                method.server_streaming(),
            )
        })
        .collect()
}

/// The message `package.Outer.Inner...`.
fn message<'a>(fds: &'a FileDescriptorSet, package: &str, path: &str) -> &'a DescriptorProto {
    let mut names = path.split('.');
    let first = names.next().expect("non-empty path");
    let mut found = fds
        .file
        .iter()
        .filter(|file| file.package() == package)
        .flat_map(|file| &file.message_type)
        .find(|candidate| candidate.name() == first)
        .unwrap_or_else(|| panic!("message {package}.{first} missing"));
    for name in names {
        found = found
            .nested_type
            .iter()
            .find(|candidate| candidate.name() == name)
            .unwrap_or_else(|| panic!("message {package}.{path}: {name} missing"));
    }
    found
}

fn field<'a>(message: &'a DescriptorProto, name: &str) -> &'a FieldDescriptorProto {
    message
        .field
        .iter()
        .find(|candidate| candidate.name() == name)
        .unwrap_or_else(|| panic!("field {}.{name} missing", message.name()))
}

/// Asserts each `(field, number)` of `package.path`, and that the message has
/// no other fields.
fn assert_fields(fds: &FileDescriptorSet, package: &str, path: &str, expected: &[(&str, i32)]) {
    let message = message(fds, package, path);
    let actual: Vec<(&str, i32)> = message
        .field
        .iter()
        .map(|field| (field.name(), field.number()))
        .collect();
    let mut actual_sorted = actual.clone();
    actual_sorted.sort_by_key(|&(_, number)| number);
    let mut expected_sorted = expected.to_vec();
    expected_sorted.sort_by_key(|&(_, number)| number);
    assert_eq!(actual_sorted, expected_sorted, "fields of {package}.{path}");
}

/// Asserts that `fields` of `package.path` make up its oneof `oneof`, exactly.
fn assert_oneof(fds: &FileDescriptorSet, package: &str, path: &str, oneof: &str, fields: &[&str]) {
    let message = message(fds, package, path);
    let index = message
        .oneof_decl
        .iter()
        .position(|decl| decl.name() == oneof)
        .unwrap_or_else(|| panic!("oneof {package}.{path}.{oneof} missing"));
    let index = i32::try_from(index).expect("few oneofs");
    let members: Vec<&str> = message
        .field
        .iter()
        // proto3 `optional` fields sit in synthetic oneofs of their own.
        .filter(|field| field.oneof_index == Some(index) && !field.proto3_optional())
        .map(|field| field.name())
        .collect();
    assert_eq!(members, fields, "oneof {package}.{path}.{oneof}");
}

const SHARED: &str = "event_store.client";
const STREAMS: &str = "event_store.client.streams";
const PERSISTENT: &str = "event_store.client.persistent_subscriptions";

#[test]
fn services_have_the_public_methods() {
    let fds = descriptor_set();
    let m = |package, service| methods(&fds, package, service);
    let unary = |name: &str| (name.to_owned(), false, false);
    let server_streaming = |name: &str| (name.to_owned(), false, true);
    let client_streaming = |name: &str| (name.to_owned(), true, false);
    let bidi = |name: &str| (name.to_owned(), true, true);

    assert_eq!(
        m(STREAMS, "Streams"),
        [
            server_streaming("Read"),
            client_streaming("Append"),
            unary("Delete"),
            unary("Tombstone"),
            bidi("BatchAppend"),
        ]
    );
    assert_eq!(
        m(PERSISTENT, "PersistentSubscriptions"),
        [
            unary("Create"),
            unary("Update"),
            unary("Delete"),
            bidi("Read"),
            unary("GetInfo"),
            unary("ReplayParked"),
            unary("List"),
            unary("RestartSubsystem"),
        ]
    );
    assert_eq!(m("event_store.client.gossip", "Gossip"), [unary("Read")]);
    assert_eq!(
        m("event_store.client.server_features", "ServerFeatures"),
        [unary("GetSupportedMethods")]
    );
    assert_eq!(
        m("event_store.client.users", "Users"),
        [
            unary("Create"),
            unary("Update"),
            unary("Delete"),
            unary("Disable"),
            unary("Enable"),
            server_streaming("Details"),
            unary("ChangePassword"),
            unary("ResetPassword"),
        ]
    );
}

#[test]
fn generated_service_names_are_the_grpc_paths_clients_call() {
    use super::{gossip, persistent, server_features, streams, users};

    assert_eq!(
        streams::streams_server::SERVICE_NAME,
        "event_store.client.streams.Streams"
    );
    assert_eq!(
        persistent::persistent_subscriptions_server::SERVICE_NAME,
        "event_store.client.persistent_subscriptions.PersistentSubscriptions"
    );
    assert_eq!(
        gossip::gossip_server::SERVICE_NAME,
        "event_store.client.gossip.Gossip"
    );
    assert_eq!(
        server_features::server_features_server::SERVICE_NAME,
        "event_store.client.server_features.ServerFeatures"
    );
    assert_eq!(
        users::users_server::SERVICE_NAME,
        "event_store.client.users.Users"
    );
}

#[test]
fn shared_messages_have_the_public_numbers() {
    let fds = descriptor_set();
    assert_fields(&fds, SHARED, "UUID", &[("structured", 1), ("string", 2)]);
    assert_oneof(&fds, SHARED, "UUID", "value", &["structured", "string"]);
    assert_fields(
        &fds,
        SHARED,
        "UUID.Structured",
        &[("most_significant_bits", 1), ("least_significant_bits", 2)],
    );
    assert_fields(&fds, SHARED, "Empty", &[]);

    assert_fields(&fds, SHARED, "StreamIdentifier", &[("stream_name", 3)]);
    let stream_identifier = message(&fds, SHARED, "StreamIdentifier");
    assert_eq!(
        field(stream_identifier, "stream_name").r#type(),
        Type::Bytes
    );
    let reserved: Vec<(i32, i32)> = stream_identifier
        .reserved_range
        .iter()
        .map(|range| (range.start(), range.end()))
        .collect();
    // Descriptor ranges are end-exclusive: `reserved 1 to 2`.
    assert_eq!(reserved, [(1, 3)]);

    assert_fields(
        &fds,
        SHARED,
        "AllStreamPosition",
        &[("commit_position", 1), ("prepare_position", 2)],
    );
    assert_fields(
        &fds,
        SHARED,
        "WrongExpectedVersion",
        &[
            ("current_stream_revision", 1),
            ("current_no_stream", 2),
            ("expected_stream_position", 3),
            ("expected_any", 4),
            ("expected_stream_exists", 5),
            ("expected_no_stream", 6),
        ],
    );
    for empty in ["AccessDenied", "Timeout", "Unknown", "InvalidTransaction"] {
        assert_fields(&fds, SHARED, empty, &[]);
    }
    assert_fields(&fds, SHARED, "StreamDeleted", &[("stream_identifier", 1)]);
    assert_fields(
        &fds,
        SHARED,
        "MaximumAppendSizeExceeded",
        &[("maxAppendSize", 1)],
    );
    assert_fields(&fds, SHARED, "BadRequest", &[("message", 1)]);
}

#[test]
fn read_messages_have_the_public_numbers() {
    let fds = descriptor_set();
    assert_fields(&fds, STREAMS, "ReadReq", &[("options", 1)]);
    assert_fields(
        &fds,
        STREAMS,
        "ReadReq.Options",
        &[
            ("stream", 1),
            ("all", 2),
            ("read_direction", 3),
            ("resolve_links", 4),
            ("count", 5),
            ("subscription", 6),
            ("filter", 7),
            ("no_filter", 8),
            ("uuid_option", 9),
            ("control_option", 10),
        ],
    );
    assert_oneof(
        &fds,
        STREAMS,
        "ReadReq.Options",
        "stream_option",
        &["stream", "all"],
    );
    assert_oneof(
        &fds,
        STREAMS,
        "ReadReq.Options",
        "count_option",
        &["count", "subscription"],
    );
    assert_oneof(
        &fds,
        STREAMS,
        "ReadReq.Options",
        "filter_option",
        &["filter", "no_filter"],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadReq.Options.StreamOptions",
        &[
            ("stream_identifier", 1),
            ("revision", 2),
            ("start", 3),
            ("end", 4),
        ],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadReq.Options.AllOptions",
        &[("position", 1), ("start", 2), ("end", 3)],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadReq.Options.FilterOptions",
        &[
            ("stream_identifier", 1),
            ("event_type", 2),
            ("max", 3),
            ("count", 4),
            ("checkpointIntervalMultiplier", 5),
        ],
    );
    assert_oneof(
        &fds,
        STREAMS,
        "ReadReq.Options.FilterOptions",
        "window",
        &["max", "count"],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadReq.Options.FilterOptions.Expression",
        &[("regex", 1), ("prefix", 2)],
    );
    let expression = message(&fds, STREAMS, "ReadReq.Options.FilterOptions.Expression");
    assert_eq!(field(expression, "prefix").label(), Label::Repeated);
    assert_fields(
        &fds,
        STREAMS,
        "ReadReq.Options.UUIDOption",
        &[("structured", 1), ("string", 2)],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadReq.Options.ControlOption",
        &[("compatibility", 1)],
    );

    assert_fields(
        &fds,
        STREAMS,
        "ReadResp",
        &[
            ("event", 1),
            ("confirmation", 2),
            ("checkpoint", 3),
            ("stream_not_found", 4),
            ("first_stream_position", 5),
            ("last_stream_position", 6),
            ("last_all_stream_position", 7),
            ("caught_up", 8),
            ("fell_behind", 9),
        ],
    );
    for live in ["ReadResp.CaughtUp", "ReadResp.FellBehind"] {
        assert_fields(
            &fds,
            STREAMS,
            live,
            &[("timestamp", 1), ("stream_revision", 2), ("position", 3)],
        );
        let live = message(&fds, STREAMS, live);
        assert!(field(live, "stream_revision").proto3_optional());
        assert!(field(live, "position").proto3_optional());
    }
    assert_fields(
        &fds,
        STREAMS,
        "ReadResp.ReadEvent",
        &[
            ("event", 1),
            ("link", 2),
            ("commit_position", 3),
            ("no_position", 4),
        ],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadResp.ReadEvent.RecordedEvent",
        &[
            ("id", 1),
            ("stream_identifier", 2),
            ("stream_revision", 3),
            ("prepare_position", 4),
            ("commit_position", 5),
            ("metadata", 6),
            ("custom_metadata", 7),
            ("data", 8),
        ],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadResp.SubscriptionConfirmation",
        &[("subscription_id", 1)],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadResp.Checkpoint",
        &[
            ("commit_position", 1),
            ("prepare_position", 2),
            ("timestamp", 3),
        ],
    );
    assert_fields(
        &fds,
        STREAMS,
        "ReadResp.StreamNotFound",
        &[("stream_identifier", 1)],
    );
}

#[test]
fn write_messages_have_the_public_numbers() {
    let fds = descriptor_set();
    assert_fields(
        &fds,
        STREAMS,
        "AppendReq",
        &[("options", 1), ("proposed_message", 2)],
    );
    assert_oneof(
        &fds,
        STREAMS,
        "AppendReq",
        "content",
        &["options", "proposed_message"],
    );
    let expected_revision = [
        ("stream_identifier", 1),
        ("revision", 2),
        ("no_stream", 3),
        ("any", 4),
        ("stream_exists", 5),
    ];
    for options in [
        "AppendReq.Options",
        "DeleteReq.Options",
        "TombstoneReq.Options",
    ] {
        assert_fields(&fds, STREAMS, options, &expected_revision);
    }
    let proposed = [
        ("id", 1),
        ("metadata", 2),
        ("custom_metadata", 3),
        ("data", 4),
    ];
    assert_fields(&fds, STREAMS, "AppendReq.ProposedMessage", &proposed);
    assert_fields(&fds, STREAMS, "BatchAppendReq.ProposedMessage", &proposed);

    assert_fields(
        &fds,
        STREAMS,
        "AppendResp",
        &[("success", 1), ("wrong_expected_version", 2)],
    );
    assert_fields(
        &fds,
        STREAMS,
        "AppendResp.Success",
        &[
            ("current_revision", 1),
            ("no_stream", 2),
            ("position", 3),
            ("no_position", 4),
        ],
    );
    assert_fields(
        &fds,
        STREAMS,
        "AppendResp.WrongExpectedVersion",
        &[
            ("current_revision_20_6_0", 1),
            ("no_stream_20_6_0", 2),
            ("expected_revision_20_6_0", 3),
            ("any_20_6_0", 4),
            ("stream_exists_20_6_0", 5),
            ("current_revision", 6),
            ("current_no_stream", 7),
            ("expected_revision", 8),
            ("expected_any", 9),
            ("expected_stream_exists", 10),
            ("expected_no_stream", 11),
        ],
    );
    assert_oneof(
        &fds,
        STREAMS,
        "AppendResp.WrongExpectedVersion",
        "expected_revision_option",
        &[
            "expected_revision",
            "expected_any",
            "expected_stream_exists",
            "expected_no_stream",
        ],
    );

    assert_fields(
        &fds,
        STREAMS,
        "BatchAppendReq",
        &[
            ("correlation_id", 1),
            ("options", 2),
            ("proposed_messages", 3),
            ("is_final", 4),
        ],
    );
    assert_fields(
        &fds,
        STREAMS,
        "BatchAppendReq.Options",
        &[
            ("stream_identifier", 1),
            ("stream_position", 2),
            ("no_stream", 3),
            ("any", 4),
            ("stream_exists", 5),
            ("deadline_21_10_0", 6),
            ("deadline", 7),
        ],
    );
    assert_fields(
        &fds,
        STREAMS,
        "BatchAppendResp",
        &[
            ("correlation_id", 1),
            ("error", 2),
            ("success", 3),
            ("stream_identifier", 4),
            ("stream_position", 5),
            ("no_stream", 6),
            ("any", 7),
            ("stream_exists", 8),
        ],
    );
    let batch_resp = message(&fds, STREAMS, "BatchAppendResp");
    assert_eq!(field(batch_resp, "error").type_name(), ".google.rpc.Status");
    assert_fields(
        &fds,
        "google.rpc",
        "Status",
        &[("code", 1), ("message", 2), ("details", 3)],
    );
    for position in ["DeleteResp", "TombstoneResp"] {
        assert_fields(
            &fds,
            STREAMS,
            position,
            &[("position", 1), ("no_position", 2)],
        );
    }
}

#[test]
fn persistent_and_gossip_messages_have_the_public_numbers() {
    let fds = descriptor_set();
    assert_fields(
        &fds,
        PERSISTENT,
        "ReadReq",
        &[("options", 1), ("ack", 2), ("nack", 3)],
    );
    assert_fields(
        &fds,
        PERSISTENT,
        "ReadReq.Options",
        &[
            ("stream_identifier", 1),
            ("all", 5),
            ("group_name", 2),
            ("buffer_size", 3),
            ("uuid_option", 4),
        ],
    );
    assert_fields(
        &fds,
        PERSISTENT,
        "ReadReq.Nack",
        &[("id", 1), ("ids", 2), ("action", 3), ("reason", 4)],
    );
    assert_fields(
        &fds,
        PERSISTENT,
        "ReadResp.ReadEvent",
        &[
            ("event", 1),
            ("link", 2),
            ("commit_position", 3),
            ("no_position", 4),
            ("retry_count", 5),
            ("no_retry_count", 6),
        ],
    );
    assert_fields(
        &fds,
        PERSISTENT,
        "CreateReq.Options",
        &[
            ("stream", 4),
            ("all", 5),
            ("stream_identifier", 1),
            ("group_name", 2),
            ("settings", 3),
        ],
    );
    let settings = message(&fds, PERSISTENT, "CreateReq.Settings");
    for (name, number) in [
        ("resolve_links", 1),
        ("message_timeout_ticks", 4),
        ("max_retry_count", 5),
        ("named_consumer_strategy", 13),
        ("message_timeout_ms", 14),
        ("checkpoint_after_ms", 15),
        ("consumer_strategy", 16),
    ] {
        assert_eq!(
            field(settings, name).number(),
            number,
            "CreateReq.Settings.{name}"
        );
    }
    assert_fields(
        &fds,
        PERSISTENT,
        "ReplayParkedReq.Options",
        &[
            ("group_name", 1),
            ("stream_identifier", 2),
            ("all", 3),
            ("stop_at", 4),
            ("no_limit", 5),
        ],
    );
    let info = message(&fds, PERSISTENT, "SubscriptionInfo");
    assert_eq!(info.field.len(), 28);
    assert_eq!(field(info, "parked_message_count").number(), 28);

    assert_fields(
        &fds,
        "event_store.client.gossip",
        "MemberInfo",
        &[
            ("instance_id", 1),
            ("time_stamp", 2),
            ("state", 3),
            ("is_alive", 4),
            ("http_end_point", 5),
        ],
    );
    let gossip = fds
        .file
        .iter()
        .find(|file| file.package() == "event_store.client.gossip")
        .expect("gossip file");
    let member = gossip
        .message_type
        .iter()
        .find(|message| message.name() == "MemberInfo")
        .expect("MemberInfo");
    let states = &member.enum_type[0];
    assert_eq!(states.name(), "VNodeState");
    let leader = states
        .value
        .iter()
        .find(|value| value.name() == "Leader")
        .expect("Leader state");
    assert_eq!(leader.number(), 8);
    assert_eq!(states.value.len(), 16);
}

#[test]
fn event_payloads_are_bytes_and_oneofs_encode_as_the_clients_expect() {
    use prost::bytes::Bytes;

    use super::{shared, streams};

    // `Bytes` payloads: this only compiles if `build.rs` configured them.
    let event = streams::append_req::ProposedMessage {
        id: Some(shared::Uuid {
            value: Some(shared::uuid::Value::String(
                "6d8a4cbb-7c10-4bb3-9d1b-3f4c5d6e7f80".to_owned(),
            )),
        }),
        metadata: [("type".to_owned(), "Booked".to_owned())].into(),
        custom_metadata: Bytes::from_static(b"{}"),
        data: Bytes::from_static(b"{\"id\":1}"),
    };
    let request = streams::AppendReq {
        content: Some(streams::append_req::Content::ProposedMessage(event)),
    };
    let encoded = request.encode_to_vec();
    // Field 2 (proposed_message), length-delimited; inside it field 1 (id),
    // length-delimited, whose field 2 (string form) holds the text.
    assert_eq!(encoded[0], (2 << 3) | 2);
    assert_eq!(encoded[2], (1 << 3) | 2);
    assert_eq!(encoded[4], (2 << 3) | 2);
    assert_eq!(
        streams::AppendReq::decode(encoded.as_slice()).expect("decodes"),
        request
    );

    // StreamIdentifier.stream_name is field 3, bytes.
    let stream = shared::StreamIdentifier {
        stream_name: b"orders".to_vec(),
    };
    assert_eq!(stream.encode_to_vec(), b"\x1a\x06orders");
}
