//! Format version 2 (docs/FORMAT.md, "Versions"): a checked-in log written
//! by this build, holding single appends and multi-appends (one atomic unit
//! over several streams), read back by the engine with no index; and a
//! version-1 log that this build continues, which must never put a unit of
//! several streams into a version-1 segment.
//!
//! `cargo test -p strata-server --test format_fixture_v2 -- --ignored
//! generate` rewrites the fixture; run it only when creating format version
//! 2's fixture anew (never for a later version: write a new file then).

mod fixture_support;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use fixture_support::{copy_dir, read_all, runtime, segments};
use strata_server::store::{
    verify, AppendOutcome, AppendRequest, EventId, ExpectedVersion, MultiAppendOutcome,
    MultiAppendRequest, NewEvent, Store, StreamResult, FORMAT_VERSION,
};

const SEGMENT_SIZE: u64 = 1024;

/// What the fixture holds, unit by unit: `(stream, events)` per append.
fn units() -> Vec<Vec<(&'static str, Vec<&'static str>)>> {
    vec![
        vec![("account-1", vec!["Opened"])],
        vec![
            ("account-1", vec!["Deposited", "Deposited"]),
            ("ledger", vec!["Posted"]),
        ],
        vec![("account-2", vec!["Opened"])],
        vec![
            ("account-1", vec!["Withdrawn"]),
            ("account-2", vec!["Deposited"]),
            ("ledger", vec!["Posted", "Posted"]),
        ],
        vec![("ledger", vec!["Closed"])],
    ]
}

fn id(n: u64) -> EventId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&0x5752_4954_4532_0000u64.to_be_bytes());
    b[8..].copy_from_slice(&n.to_be_bytes());
    EventId(b)
}

fn new_event(n: u64, event_type: &str) -> NewEvent {
    NewEvent {
        id: id(n),
        event_type: event_type.to_owned(),
        data: Bytes::from(format!("{{\"n\":{n}}}")),
        metadata: Bytes::from(format!("m{n}")),
        content_type: Some("application/json".to_owned()),
    }
}

/// The requests of every unit, with event numbers in log order.
fn requests() -> Vec<Vec<AppendRequest>> {
    let mut n = 0;
    units()
        .into_iter()
        .map(|unit| {
            unit.into_iter()
                .map(|(stream, types)| AppendRequest {
                    stream: stream.to_owned(),
                    expected: ExpectedVersion::Any,
                    events: types
                        .into_iter()
                        .map(|t| {
                            n += 1;
                            new_event(n - 1, t)
                        })
                        .collect(),
                })
                .collect()
        })
        .collect()
}

fn fixture_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v2/log")
}

/// Writes every unit; returns the log as the engine acknowledged it.
fn write_units(rt: &tokio::runtime::Runtime, store: &Store) -> Vec<(String, u64, u64)> {
    let mut acked = Vec::new();
    for unit in requests() {
        if unit.len() == 1 {
            let a = unit.into_iter().next().expect("one append");
            let stream = a.stream.clone();
            match rt.block_on(store.append(a)).expect("append") {
                AppendOutcome::Success {
                    next_expected_revision,
                    position,
                } => acked.push((stream, next_expected_revision, position)),
                other => panic!("{other:?}"),
            }
        } else {
            let m = MultiAppendRequest {
                appends: unit,
                checks: Vec::new(),
            };
            match rt.block_on(store.multi_append(m)).expect("multi-append") {
                MultiAppendOutcome::Success { results, .. } => {
                    acked.extend(results.into_iter().map(
                        |StreamResult {
                             stream,
                             next_expected_revision,
                             position,
                         }| (stream, next_expected_revision, position),
                    ))
                }
                other => panic!("{other:?}"),
            }
        }
    }
    acked
}

fn header_version(path: &Path) -> u32 {
    let b = std::fs::read(path).expect("read segment");
    assert_eq!(&b[..8], b"STRATSEG", "{}", path.display());
    u32::from_le_bytes([b[8], b[9], b[10], b[11]])
}

/// What the fixture must read back as: `(stream, revision, position, type)`.
fn expected_log() -> Vec<(String, u64, u64, String)> {
    let mut revs = std::collections::HashMap::new();
    let mut out = Vec::new();
    for unit in units() {
        for (stream, types) in unit {
            for t in types {
                let r = revs.entry(stream).or_insert(0u64);
                out.push((stream.to_owned(), *r, out.len() as u64, t.to_owned()));
                *r += 1;
            }
        }
    }
    out
}

#[test]
#[ignore = "writes the checked-in version-2 fixture"]
fn generate() {
    assert_eq!(FORMAT_VERSION, 2, "this file is the fixture of version 2");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    {
        let store = Store::open(fixture_support::config(dir.path(), SEGMENT_SIZE)).expect("open");
        write_units(&rt, &store);
        store.close().expect("close");
    }
    let out = fixture_log();
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("remove the old fixture");
    }
    copy_dir(&dir.path().join("log"), &out);
    // The spare segment is not part of the log.
    let spare = out.join("spare.seg.tmp");
    if spare.exists() {
        std::fs::remove_file(spare).expect("remove the spare");
    }
}

#[test]
fn engine_reads_the_v2_fixture() {
    let segs = segments(&fixture_log());
    assert!(segs.len() >= 2, "the fixture rolls a segment: {segs:?}");
    for s in &segs {
        assert_eq!(header_version(s), 2, "{}", s.display());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_log(), &dir.path().join("log"));
    let report = verify(dir.path()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let rt = runtime();
    // No index: it is rebuilt from the log, multi-stream units split into
    // their appends.
    let store =
        Store::open(fixture_support::config(dir.path(), SEGMENT_SIZE)).expect("open the fixture");
    let got: Vec<(String, u64, u64, String)> = read_all(&rt, &store)
        .into_iter()
        .map(|e| (e.stream.to_string(), e.revision, e.position, e.event_type))
        .collect();
    assert_eq!(got, expected_log());
    for (i, e) in read_all(&rt, &store).iter().enumerate() {
        assert_eq!(e.id, id(i as u64));
        assert_eq!(e.data, Bytes::from(format!("{{\"n\":{i}}}")));
        assert_eq!(e.metadata, Bytes::from(format!("m{i}")));
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
    }
    // Every stream's head was rebuilt: exact expected versions hold.
    for (k, (stream, last)) in [("account-1", 3u64), ("account-2", 1), ("ledger", 3)]
        .into_iter()
        .enumerate()
    {
        let r = rt.block_on(store.append(AppendRequest {
            stream: stream.into(),
            expected: ExpectedVersion::Exact(last),
            events: vec![new_event(1000 + k as u64, "Next")],
        }));
        assert!(
            matches!(r, Ok(AppendOutcome::Success { .. })),
            "{stream}: {r:?}"
        );
    }
    // A retry of a stored multi-append is recognised from the rebuilt index.
    let again = MultiAppendRequest {
        appends: requests().swap_remove(3),
        checks: Vec::new(),
    };
    match rt.block_on(store.multi_append(again)).expect("retry") {
        MultiAppendOutcome::Success { position, .. } => assert_eq!(position, 8),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_version_1_log_continues_without_putting_several_streams_in_a_v1_segment() {
    let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/log");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&v1, &dir.path().join("log"));
    let before = segments(&dir.path().join("log"));
    assert!(before.iter().all(|s| header_version(s) == 1));
    let rt = runtime();
    let head = {
        let store = Store::open(fixture_support::config(dir.path(), SEGMENT_SIZE))
            .expect("open the v1 log");
        let head = store.head_position();
        let m = MultiAppendRequest {
            appends: vec![
                AppendRequest {
                    stream: "x".into(),
                    expected: ExpectedVersion::Any,
                    events: vec![new_event(500, "T")],
                },
                AppendRequest {
                    stream: "y".into(),
                    expected: ExpectedVersion::Any,
                    events: vec![new_event(501, "T")],
                },
            ],
            checks: Vec::new(),
        };
        rt.block_on(store.multi_append(m)).expect("multi-append");
        store.close().expect("close");
        head
    };
    let after = segments(&dir.path().join("log"));
    assert_eq!(
        after.len(),
        before.len() + 1,
        "the unit went to a new segment"
    );
    let newest = after.last().expect("a segment");
    assert_eq!(header_version(newest), 2);
    assert!(after[..before.len()].iter().all(|s| header_version(s) == 1));
    let store = Store::open(fixture_support::config(dir.path(), SEGMENT_SIZE)).expect("reopen");
    let log = read_all(&rt, &store);
    assert_eq!(log.len() as u64, head + 2);
    assert_eq!(
        log[head as usize..]
            .iter()
            .map(|e| e.stream.to_string())
            .collect::<Vec<_>>(),
        ["x", "y"]
    );
}
