//! Format version 3 (docs/FORMAT.md, "Scavenged segments"): a checked-in
//! log written by this build and then scavenged, so that its sealed
//! segments are version 3 (positions with gaps, a position table after the
//! records) and its last one is version 2. The test parses the version-3
//! bytes by hand with the offsets the document gives, then has the engine
//! open the log with no index and read it.
//!
//! `cargo test -p strata-server --test format_fixture_v3 -- --ignored
//! generate` rewrites the fixture; run it only when creating format version
//! 3's fixture anew (never for a later version: write a new file then).

mod fixture_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use fixture_support::{copy_dir, read_all, runtime, segments};
use strata_server::store::{
    verify, AppendOutcome, AppendRequest, EventId, ExpectedVersion, LifecycleRequest,
    MultiAppendRequest, NewEvent, ScavengeState, Store, StreamMetadata, SCAVENGED_FORMAT_VERSION,
};

const SEGMENT_SIZE: u64 = 1024;

/// One step of the fixture, in log order.
enum Step {
    /// Appends of one atomic unit: `(stream, event types)` each.
    Unit(Vec<(&'static str, Vec<&'static str>)>),
    /// A soft delete of the stream.
    Delete(&'static str),
    /// Metadata `truncate_before` of the stream.
    TruncateBefore(&'static str, u64),
}

fn steps() -> Vec<Step> {
    use Step::*;
    vec![
        Unit(vec![("keep", vec!["Opened"])]),
        Unit(vec![("gone", vec!["Opened", "Renamed"])]),
        Unit(vec![("trim", vec!["A", "B", "C"])]),
        // One unit over two streams whose first is deleted below.
        Unit(vec![("gone", vec!["Moved"]), ("keep", vec!["Moved"])]),
        Unit(vec![("gone", vec!["Closed"])]),
        Unit(vec![("trim", vec!["D"])]),
        Unit(vec![("keep", vec!["Closed"])]),
        Delete("gone"),
        TruncateBefore("trim", 2),
        Unit(vec![("after", vec!["Sealed"])]),
    ]
}

fn id(n: u64) -> EventId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&0x5343_4156_3300_0000u64.to_be_bytes());
    b[8..].copy_from_slice(&n.to_be_bytes());
    EventId(b)
}

fn new_event(n: u64, event_type: &str) -> NewEvent {
    NewEvent {
        id: id(n),
        event_type: event_type.to_owned(),
        // Padding, so that the log spans several 1 KiB segments.
        data: Bytes::from(format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(120))),
        metadata: Bytes::from(format!("m{n}")),
        content_type: Some("application/json".to_owned()),
    }
}

/// `(stream, revision, position, type, event number)` of every event the
/// fixture holds visible in `$all` (no `$`-streams), from the steps and
/// the rules of API section 2.
fn expected_visible() -> Vec<(String, u64, u64, String, u64)> {
    let mut revs = std::collections::HashMap::new();
    let mut all = Vec::new();
    let (mut position, mut n) = (0u64, 0u64);
    let mut deleted = Vec::new();
    let mut truncated = std::collections::HashMap::new();
    for step in steps() {
        match step {
            Step::Unit(appends) => {
                for (stream, types) in appends {
                    for t in types {
                        let r = revs.entry(stream).or_insert(0u64);
                        all.push((stream.to_owned(), *r, position, t.to_owned(), n));
                        *r += 1;
                        position += 1;
                        n += 1;
                    }
                }
            }
            Step::Delete(s) => {
                deleted.push(s);
                position += 1;
            }
            Step::TruncateBefore(s, r) => {
                truncated.insert(s, r);
                position += 1;
            }
        }
    }
    all.retain(|(s, r, ..)| {
        !deleted.contains(&s.as_str()) && truncated.get(s.as_str()).is_none_or(|t| r >= t)
    });
    all
}

fn fixture_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v3/log")
}

#[test]
#[ignore = "writes the checked-in version-3 fixture"]
fn generate() {
    assert_eq!(
        SCAVENGED_FORMAT_VERSION, 3,
        "this file is the fixture of version 3"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    {
        let store = Store::open(fixture_support::config(dir.path(), SEGMENT_SIZE)).expect("open");
        let mut n = 0;
        for step in steps() {
            match step {
                Step::Unit(appends) => {
                    let appends: Vec<AppendRequest> = appends
                        .into_iter()
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
                        .collect();
                    let m = MultiAppendRequest {
                        appends,
                        checks: Vec::new(),
                    };
                    rt.block_on(store.multi_append(m)).expect("append");
                }
                Step::Delete(s) => {
                    rt.block_on(store.lifecycle(LifecycleRequest::Delete {
                        stream: s.into(),
                        expected: ExpectedVersion::Any,
                    }))
                    .expect("delete");
                }
                Step::TruncateBefore(s, r) => {
                    rt.block_on(store.lifecycle(LifecycleRequest::SetMetadata {
                        stream: s.into(),
                        expected: ExpectedVersion::Any,
                        metadata: StreamMetadata {
                            truncate_before: Some(r),
                            ..Default::default()
                        },
                    }))
                    .expect("metadata");
                }
            }
        }
        store.start_scavenge().expect("scavenge");
        while store.scavenge_status().state == ScavengeState::Running {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(store.scavenge_status().state, ScavengeState::Done);
        store.close().expect("close");
    }
    let out = fixture_log();
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("remove the old fixture");
    }
    copy_dir(&dir.path().join("log"), &out);
    let spare = out.join("spare.seg.tmp");
    if spare.exists() {
        std::fs::remove_file(spare).expect("remove the spare");
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// Pairs of `u64`s: `(frame offset, position)` of records, `(position,
/// offset)` of table entries.
type Pairs = Vec<(u64, u64)>;

/// A version-3 segment parsed with the offsets of docs/FORMAT.md: the
/// `(frame offset, position)` of its records and its table's entries.
fn parse_v3(path: &Path) -> (Pairs, Pairs) {
    let b = std::fs::read(path).expect("read segment");
    assert_eq!(&b[..8], b"STRATSEG");
    assert_eq!(u32_at(&b, 8), 3, "version");
    assert_eq!(u32_at(&b, 12), 32, "header length");
    assert_eq!(
        u32_at(&b, 28),
        crc32fast::hash(&b[..28]),
        "header CRC covers bytes 0..28"
    );
    let table = u32_at(&b, 24) as usize;
    // Records from 32 up to the table, back to back.
    let mut records = Vec::new();
    let mut at = 32;
    while at < table {
        let len = u32_at(&b, at) as usize;
        let crc = u32_at(&b, at + 4);
        let mut frame = b[at..at + 4].to_vec();
        frame.extend_from_slice(&b[at + 8..at + 8 + len]);
        assert_eq!(crc, crc32fast::hash(&frame), "record at {at}");
        records.push((at as u64, u64_at(&b, at + 8 + 8)));
        at += 8 + len;
    }
    assert_eq!(at, table, "the records end where the table starts");
    // The table: magic, count, (position, offset) pairs, CRC of all that.
    assert_eq!(&b[table..table + 4], b"GAPS");
    let count = u32_at(&b, table + 4) as usize;
    let end = table + 8 + count * 16;
    assert_eq!(b.len(), end + 4, "the table ends the file");
    assert_eq!(u32_at(&b, end), crc32fast::hash(&b[table..end]));
    let entries = (0..count)
        .map(|i| {
            let o = table + 8 + i * 16;
            (u64_at(&b, o), u64_at(&b, o + 8))
        })
        .collect();
    (records, entries)
}

#[test]
fn the_v3_fixture_parses_by_hand() {
    let segs = segments(&fixture_log());
    let (last, sealed) = segs.split_last().expect("segments");
    assert!(sealed.len() >= 2, "{segs:?}");
    let version = |p: &Path| u32_at(&std::fs::read(p).expect("read"), 8);
    assert_eq!(version(last), 2, "the active segment is never scavenged");
    let mut gaps = 0;
    let mut expected_next = 0u64;
    for seg in sealed {
        let base: u64 = seg
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("name");
        assert_eq!(base, expected_next, "segments continue the log");
        let (records, entries) = parse_v3(seg);
        let positions: Vec<u64> = records.iter().map(|r| r.1).collect();
        assert!(positions[0] >= base);
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        gaps += positions.windows(2).filter(|w| w[1] > w[0] + 1).count();
        gaps += usize::from(positions[0] > base);
        // The table names the first record and every 64th.
        let want: Vec<(u64, u64)> = records.iter().step_by(64).map(|(o, p)| (*p, *o)).collect();
        assert_eq!(entries, want, "{}", seg.display());
        // The last record of a segment is always kept.
        expected_next = positions[positions.len() - 1] + 1;
    }
    assert!(gaps > 0, "the scavenge left gaps");
}

#[test]
fn engine_reads_the_v3_fixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_log(), &dir.path().join("log"));
    let report = verify(dir.path()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let rt = runtime();
    // No index: it is rebuilt from the scavenged log.
    let store =
        Store::open(fixture_support::config(dir.path(), SEGMENT_SIZE)).expect("open the fixture");
    let events = read_all(&rt, &store);
    let got: Vec<(String, u64, u64, String, u64)> = events
        .iter()
        .map(|e| {
            let n = u64::from_be_bytes(e.id.0[8..].try_into().expect("8 bytes"));
            (
                e.stream.to_string(),
                e.revision,
                e.position,
                e.event_type.clone(),
                n,
            )
        })
        .collect();
    assert_eq!(got, expected_visible());
    for e in &events {
        let n = u64::from_be_bytes(e.id.0[8..].try_into().expect("8 bytes"));
        assert_eq!(e.data, new_event(n, "").data);
        assert_eq!(e.metadata, Bytes::from(format!("m{n}")));
    }
    // Heads were rebuilt: the deleted stream re-created continues its
    // revisions, the others take exact expected versions.
    for (k, (stream, expected, next)) in [
        ("gone", ExpectedVersion::NoStream, 4u64),
        ("keep", ExpectedVersion::Exact(2), 3),
        ("trim", ExpectedVersion::Exact(3), 4),
    ]
    .into_iter()
    .enumerate()
    {
        let r = rt.block_on(store.append(AppendRequest {
            stream: stream.into(),
            expected,
            events: vec![new_event(1000 + k as u64, "Next")],
        }));
        match r {
            Ok(AppendOutcome::Success {
                next_expected_revision,
                ..
            }) => assert_eq!(next_expected_revision, next, "{stream}"),
            other => panic!("{stream}: {other:?}"),
        }
    }
}
