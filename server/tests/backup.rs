//! `Operations.Backup` through `strata backup --to DIR`, taken while
//! writers append: the copy opens as a store and holds every event
//! acknowledged before the backup started, byte for byte; a second backup
//! into the same DIR sends only what changed; a copy that diverged is sent
//! again in full.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::Value;
use strata_proto::v1;
use strata_server::store::{RecordedEvent, Store, StoreConfig};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Runs `strata backup --json`; its one line of output.
fn backup(url: &str, to: &Path) -> Value {
    let out = Command::new(STRATA)
        .args(["backup", "--json", "--url", url, "--to"])
        .arg(to)
        .output()
        .expect("run strata backup");
    assert!(
        out.status.success(),
        "strata backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

fn same(copy: &RecordedEvent, live: &v1::RecordedEvent) -> bool {
    copy.position == live.position
        && copy.revision == live.revision
        && *copy.stream == *live.stream
        && copy.data == live.data
        && copy.event_type == live.r#type
        && copy.id.0 == id_bytes(live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_holds_everything_acknowledged_before_it() {
    let server = TestServer::start_with(|a| a.segment_size = 64 << 10).await;
    let url = format!("http://{}", server.addr);
    let mut c = server.connect().await;
    for i in 0..40 {
        append_ok(
            &mut c,
            &format!("pre-{}", i % 5),
            v1::ExpectedVersion::any(),
            events(25, "P", "p"),
        )
        .await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut c = server.connect().await;
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                append_ok(
                    &mut c,
                    "load",
                    v1::ExpectedVersion::any(),
                    events(10, "L", "l"),
                )
                .await;
                n += 10;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let before = read_all(&mut c).await;
    let copy = tempfile::tempdir().expect("tempdir");
    let to = copy.path().join("copy");
    let first = {
        let (url, to) = (url.clone(), to.clone());
        tokio::task::spawn_blocking(move || backup(&url, &to))
            .await
            .expect("backup")
    };
    stop.store(true, Ordering::Release);
    assert!(writer.await.expect("writer") > 0);
    let head = first["head_position"].as_u64().expect("head_position");
    assert!(
        head >= before.len() as u64,
        "the copy covers what was acknowledged"
    );
    assert!(
        first["files"].as_u64().expect("files") > 1,
        "several segments"
    );
    let full = first["bytes_sent"].as_u64().expect("bytes_sent");

    let copied = tokio::task::block_in_place(|| events_of_copy(&to));
    assert!(copied.len() as u64 >= head);
    for (live, copy) in before.iter().zip(&copied) {
        assert!(
            same(copy, live),
            "position {} differs in the copy",
            live.position
        );
    }
    let all_now = read_all(&mut c).await;
    for (copy, live) in copied.iter().zip(&all_now) {
        assert!(
            same(copy, live),
            "the copy's position {} is not the server's",
            copy.position
        );
    }

    // Again into the same directory: only what changed.
    for _ in 0..5 {
        append_ok(
            &mut c,
            "after",
            v1::ExpectedVersion::any(),
            events(10, "A", "a"),
        )
        .await;
    }
    let second = {
        let (url, to) = (url.clone(), to.clone());
        tokio::task::spawn_blocking(move || backup(&url, &to))
            .await
            .expect("backup")
    };
    let sent = second["bytes_sent"].as_u64().expect("bytes_sent");
    assert!(
        sent < full / 2,
        "an incremental backup sent {sent} of {full} bytes"
    );
    let live = read_all(&mut c).await;
    let copied = tokio::task::block_in_place(|| events_of_copy(&to));
    assert_eq!(copied.len(), live.len(), "the second copy holds everything");
    assert!(copied.iter().zip(&live).all(|(c, l)| same(c, l)));

    // A copy that was changed (a server ran on it and appended, which
    // started a segment of its own) is brought back to the server's, and
    // its stale index is dropped.
    {
        let store = tokio::task::block_in_place(|| Store::open(StoreConfig::new(&to)))
            .expect("open the copy");
        let req = strata_server::store::AppendRequest {
            stream: "diverged".into(),
            expected: strata_server::store::ExpectedVersion::Any,
            events: vec![strata_server::store::NewEvent {
                id: strata_server::store::EventId::random(),
                event_type: "D".into(),
                data: bytes::Bytes::from_static(b"d"),
                metadata: bytes::Bytes::new(),
                content_type: None,
            }],
        };
        store.append(req).await.expect("append to the copy");
        tokio::task::block_in_place(|| store.close()).expect("close");
    }
    let third = {
        let (url, to) = (url.clone(), to.clone());
        tokio::task::spawn_blocking(move || backup(&url, &to))
            .await
            .expect("backup")
    };
    assert_eq!(third["head_position"], second["head_position"]);
    assert!(!to.join("index").exists(), "the copy's stale index is gone");
    let copied = tokio::task::block_in_place(|| events_of_copy(&to));
    let live = read_all(&mut c).await;
    assert_eq!(copied.len(), live.len());
    assert!(
        copied.iter().zip(&live).all(|(c, l)| same(c, l)),
        "the diverged copy was repaired"
    );
    assert!(copied.iter().all(|e| &*e.stream != "diverged"));
    server.stop().await.expect("clean stop");
}

#[test]
fn a_backup_without_a_server_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(STRATA)
        .args(["backup", "--url", "http://127.0.0.1:1", "--to"])
        .arg(dir.path().join("copy"))
        .output()
        .expect("run strata backup");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_never_writes_into_a_directory_in_use() {
    let mut server = TestServer::start().await;
    append_ok(
        &mut server.client,
        "s",
        v1::ExpectedVersion::any(),
        events(3, "E", "e"),
    )
    .await;
    let url = format!("http://{}", server.addr);
    let live = server.dir.path().join("data");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(STRATA)
            .args(["backup", "--url", &url, "--to"])
            .arg(&live)
            .output()
            .expect("run strata backup")
    })
    .await
    .expect("backup");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    // The live store is untouched.
    assert_eq!(read_all(&mut server.client).await.len(), 3);
    server.stop().await.expect("clean stop");
}
