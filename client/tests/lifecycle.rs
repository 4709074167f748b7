//! The stream lifecycle through the client against an in-process server:
//! soft delete and re-creation, tombstones, and stream metadata (retention,
//! access lists, custom data) with its own expected-version check.

mod common;

use std::time::Duration;

use common::TestServer;
use strata_client::{
    Client, Error, EventData, ExpectedVersion, ReadOptions, RecordedEvent, StreamAcl,
    StreamMetadata, SubscribeFrom, TryStreamExt,
};

fn events(n: usize, event_type: &str) -> Vec<EventData> {
    (0..n)
        .map(|i| EventData::binary(event_type, format!("{i}").into_bytes()))
        .collect()
}

async fn read(client: &Client, stream: &str) -> Result<Vec<RecordedEvent>, Error> {
    client
        .read_stream(stream, ReadOptions::forwards())
        .await?
        .try_collect()
        .await
}

fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

#[tokio::test]
async fn a_deleted_stream_is_not_found_and_recreation_continues_its_revisions() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .append("cart-1", ExpectedVersion::NoStream, events(2, "Added"))
        .await
        .expect("append");

    // A wrong expectation is a conflict, as for an append, and deletes nothing.
    let e = client
        .delete("cart-1", ExpectedVersion::Exact(0))
        .await
        .expect_err("stale");
    assert!(
        matches!(&e, Error::WrongExpectedVersion { stream, expected: ExpectedVersion::Exact(0), current: Some(1) } if stream == "cart-1"),
        "{e:?}"
    );
    assert_eq!(e.conflict(), Some(Some(1)));
    assert_eq!(
        revisions(&read(&client, "cart-1").await.expect("read")),
        [0, 1]
    );

    let deleted = client
        .delete("cart-1", ExpectedVersion::Exact(1))
        .await
        .expect("delete");
    assert_eq!(deleted.position, 2, "the delete takes the next position");
    let e = read(&client, "cart-1").await.expect_err("deleted");
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    // Gone, so deleting again (or a stream that never was) is NOT_FOUND too.
    for stream in ["cart-1", "never"] {
        let e = client
            .delete(stream, ExpectedVersion::Any)
            .await
            .expect_err("nothing to delete");
        assert!(matches!(e, Error::NotFound { .. }), "{stream}: {e:?}");
        assert!(!e.is_transient());
    }

    // A deleted stream does not exist for expected versions; an append
    // re-creates it and its revisions continue.
    let e = client
        .append("cart-1", ExpectedVersion::StreamExists, events(1, "Added"))
        .await
        .expect_err("does not exist");
    assert_eq!(e.conflict(), Some(None));
    let written = client
        .append("cart-1", ExpectedVersion::NoStream, events(2, "Added"))
        .await
        .expect("re-create");
    assert_eq!(written.next_expected_revision, 3);
    let events = read(&client, "cart-1").await.expect("read");
    assert_eq!(revisions(&events), [2, 3]);
    assert_eq!(&events[0].data[..], b"0", "only the new events are visible");
}

#[tokio::test]
async fn a_tombstoned_stream_refuses_everything_with_a_typed_error() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .append("user-1", ExpectedVersion::NoStream, events(1, "Registered"))
        .await
        .expect("append");

    let e = client
        .tombstone("user-1", ExpectedVersion::NoStream)
        .await
        .expect_err("the stream exists");
    assert_eq!(e.conflict(), Some(Some(0)));
    let done = client
        .tombstone("user-1", ExpectedVersion::StreamExists)
        .await
        .expect("tombstone");
    assert_eq!(done.position, 1);

    let tombstoned = |e: Error, what: &str| {
        assert!(matches!(e, Error::Tombstoned { .. }), "{what}: {e:?}");
        assert!(e.to_string().contains("tombstoned"), "{what}: {e}");
        assert!(!e.is_transient(), "{what}");
    };
    let append = client
        .append("user-1", ExpectedVersion::Any, events(1, "Registered"))
        .await;
    tombstoned(append.expect_err("append"), "append");
    tombstoned(read(&client, "user-1").await.expect_err("read"), "read");
    let delete = client.delete("user-1", ExpectedVersion::Any).await;
    tombstoned(delete.expect_err("delete"), "delete");
    let again = client.tombstone("user-1", ExpectedVersion::Any).await;
    tombstoned(again.expect_err("tombstone"), "tombstone");
    let get = client.stream_metadata("user-1").await;
    tombstoned(get.expect_err("get metadata"), "get metadata");
    let set = client
        .set_stream_metadata("user-1", ExpectedVersion::Any, StreamMetadata::new())
        .await;
    tombstoned(set.expect_err("set metadata"), "set metadata");
    // A subscription ends with it rather than retrying forever.
    let mut sub = client.subscribe_to_stream("user-1", SubscribeFrom::Start);
    let end = tokio::time::timeout(Duration::from_secs(10), sub.try_next())
        .await
        .expect("an answer within 10 s");
    tombstoned(end.expect_err("subscribe"), "subscribe");

    // A name that holds no stream can be reserved.
    client
        .tombstone("user-2", ExpectedVersion::NoStream)
        .await
        .expect("reserve");
    let append = client
        .append("user-2", ExpectedVersion::NoStream, events(1, "Registered"))
        .await;
    tombstoned(append.expect_err("reserved"), "append to a reserved name");
}

#[tokio::test]
async fn metadata_is_set_read_back_and_applied_to_reads() {
    let server = TestServer::start().await;
    let client = server.client().await;

    let none = client.stream_metadata("log-1").await.expect("get");
    assert_eq!(none.revision, None);
    assert_eq!(none.metadata, StreamMetadata::new());
    assert_eq!(none.expected_version(), ExpectedVersion::NoStream);

    // Allowed before the stream exists.
    let metadata = StreamMetadata::new()
        .with_max_count(2)
        .with_max_age(Duration::from_secs(7 * 24 * 3600))
        .with_acl(
            StreamAcl::new()
                .allow_read("$role:auditor")
                .allow_read("ann")
                .allow_metadata_write("ops"),
        )
        .with_custom(b"\x00owner=billing".to_vec());
    let set = client
        .set_stream_metadata("log-1", ExpectedVersion::NoStream, metadata.clone())
        .await
        .expect("set");
    assert_eq!(set.metadata_revision, 0);
    assert_eq!(set.next_expected_version(), ExpectedVersion::Exact(0));

    let got = client.stream_metadata("log-1").await.expect("get");
    assert_eq!(got.revision, Some(0));
    assert_eq!(got.metadata, metadata);

    // max_count 2: only the newest two are read.
    client
        .append("log-1", ExpectedVersion::NoStream, events(5, "Logged"))
        .await
        .expect("append");
    let events = read(&client, "log-1").await.expect("read");
    assert_eq!(revisions(&events), [3, 4]);
    let newest: Vec<RecordedEvent> = client
        .read_stream("log-1", ReadOptions::backwards())
        .await
        .expect("read")
        .try_collect()
        .await
        .expect("read");
    assert_eq!(revisions(&newest), [4, 3]);

    // The expected version is checked against the metadata's revision, and
    // a conflict names the metadata stream.
    let e = client
        .set_stream_metadata("log-1", ExpectedVersion::NoStream, StreamMetadata::new())
        .await
        .expect_err("already set");
    assert!(
        matches!(&e, Error::WrongExpectedVersion { stream, expected: ExpectedVersion::NoStream, current: Some(0) } if stream == "$$log-1"),
        "{e:?}"
    );
    let e = client
        .set_stream_metadata("log-1", ExpectedVersion::Exact(4), StreamMetadata::new())
        .await
        .expect_err("the stream's revision is not the metadata's");
    assert_eq!(e.conflict(), Some(Some(0)));

    // Read, change one field, write back under the revision read.
    let mut changed = got.metadata.clone();
    changed.max_count = None;
    changed.truncate_before = Some(4);
    let set = client
        .set_stream_metadata("log-1", got.expected_version(), changed.clone())
        .await
        .expect("set");
    assert_eq!(set.metadata_revision, 1);
    assert!(set.position > 0);
    assert_eq!(revisions(&read(&client, "log-1").await.expect("read")), [4]);
    let got = client.stream_metadata("log-1").await.expect("get");
    assert_eq!((got.revision, got.metadata), (Some(1), changed));

    // The history of the metadata is the stream `$$log-1`.
    let history = read(&client, "$$log-1").await.expect("read history");
    assert_eq!(revisions(&history), [0, 1]);

    // Empty metadata hides nothing again.
    client
        .set_stream_metadata("log-1", set.next_expected_version(), StreamMetadata::new())
        .await
        .expect("clear");
    assert_eq!(
        revisions(&read(&client, "log-1").await.expect("read")),
        [0, 1, 2, 3, 4]
    );
}

#[tokio::test]
async fn max_age_hides_old_events() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .append("sensor-1", ExpectedVersion::NoStream, events(2, "Measured"))
        .await
        .expect("append");
    let one_second = StreamMetadata::new().with_max_age(Duration::from_secs(1));
    client
        .set_stream_metadata("sensor-1", ExpectedVersion::Any, one_second)
        .await
        .expect("set");
    assert_eq!(read(&client, "sensor-1").await.expect("read").len(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client
        .append("sensor-1", ExpectedVersion::Any, events(1, "Measured"))
        .await
        .expect("append");
    assert_eq!(
        revisions(&read(&client, "sensor-1").await.expect("read")),
        [2]
    );
    let got = client.stream_metadata("sensor-1").await.expect("get");
    assert_eq!(got.metadata.max_age, Some(Duration::from_secs(1)));
}
