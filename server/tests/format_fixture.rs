//! Backward compatibility of the on-disk format: a data directory written
//! by the format-v1 engine is checked in under `tests/fixtures/format-v1/`
//! (its `log/` only; the index is derived) and must open and read back
//! exactly. The byte layout is also parsed here by hand, with the offsets
//! of `docs/FORMAT.md` and an independent CRC-32, so that the document, the
//! fixture and the engine cannot drift apart unnoticed.
//!
//! The fixture is generated once, by the ignored test `generate`:
//! `cargo test -p strata-server --test format_fixture -- --ignored generate`.
//! Never regenerate it for a released format: write a new fixture next to it.

mod fixture_support;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use fixture_support::{copy_dir, runtime};
use strata_server::store::{
    verify, AppendOutcome, AppendRequest, Direction, EventId, ExpectedVersion, Filter, NewEvent,
    ReadFrom, RecordedEvent, Store, StoreConfig, FORMAT_VERSION, OLDEST_FORMAT_VERSION,
};

/// Segment size the fixture was written with: small, so that it has
/// several segments (each is preallocated to this size).
const FIXTURE_SEGMENT_SIZE: u64 = 1024;

/// One event of the fixture, with where the engine must have put it.
struct Ev {
    position: u64,
    revision: u64,
    id: u128,
    event_type: &'static str,
    content_type: Option<&'static str>,
    metadata: &'static [u8],
    data: &'static [u8],
}

/// One append of the fixture, in the order it was made.
struct Append {
    stream: &'static str,
    expected: ExpectedVersion,
    events: &'static [Ev],
}

const JSON: Option<&str> = Some("application/json");

/// The fixture's contents: three streams, single- and multi-event appends,
/// content type set and unset, metadata present and absent, empty data.
const APPENDS: &[Append] = &[
    Append {
        stream: "order-1",
        expected: ExpectedVersion::NoStream,
        events: &[Ev {
            position: 0,
            revision: 0,
            id: 0x0193_0000_0000_4000_8000_0000_0000_0001,
            event_type: "OrderPlaced",
            content_type: JSON,
            metadata: br#"{"user":"ann"}"#,
            data: br#"{"sku":"X-1","qty":3}"#,
        }],
    },
    Append {
        stream: "customer-7",
        expected: ExpectedVersion::NoStream,
        events: &[
            Ev {
                position: 1,
                revision: 0,
                id: 0x0193_0000_0000_4000_8000_0000_0000_0002,
                event_type: "CustomerRegistered",
                content_type: JSON,
                metadata: b"",
                data: br#"{"name":"Bo"}"#,
            },
            Ev {
                position: 2,
                revision: 1,
                id: 0x0193_0000_0000_4000_8000_0000_0000_0003,
                event_type: "EmailChanged",
                content_type: None,
                metadata: br#"{"source":"import"}"#,
                data: b"bo@example.com",
            },
            Ev {
                position: 3,
                revision: 2,
                id: 0x0193_0000_0000_4000_8000_0000_0000_0004,
                event_type: "EmailChanged",
                content_type: Some("text/plain"),
                metadata: b"",
                data: b"bo@example.org",
            },
        ],
    },
    Append {
        stream: "order-1",
        expected: ExpectedVersion::Exact(0),
        events: &[Ev {
            position: 4,
            revision: 1,
            id: 0x0193_0000_0000_4000_8000_0000_0000_0005,
            event_type: "OrderPaid",
            content_type: Some("application/octet-stream"),
            metadata: b"\x00\x01",
            data: b"\x00\x01\x02\xfe\xff",
        }],
    },
    Append {
        stream: "order-2",
        expected: ExpectedVersion::Any,
        events: &[Ev {
            position: 5,
            revision: 0,
            id: 0x0193_0000_0000_4000_8000_0000_0000_0006,
            event_type: "OrderPlaced",
            content_type: JSON,
            metadata: br#"{"user":"cy"}"#,
            data: br#"{"sku":"Y-22","qty":1}"#,
        }],
    },
    Append {
        stream: "order-1",
        expected: ExpectedVersion::Exact(1),
        events: &[
            Ev {
                position: 6,
                revision: 2,
                id: 0x0193_0000_0000_4000_8000_0000_0000_0007,
                event_type: "OrderShipped",
                content_type: JSON,
                metadata: br#"{"carrier":"post"}"#,
                data: br#"{"parcel":"P-100200300"}"#,
            },
            Ev {
                position: 7,
                revision: 3,
                id: 0x0193_0000_0000_4000_8000_0000_0000_0008,
                event_type: "OrderDelivered",
                content_type: JSON,
                metadata: b"",
                data: br#"{"signed_by":"ann","at":"door"}"#,
            },
        ],
    },
    Append {
        stream: "customer-7",
        expected: ExpectedVersion::StreamExists,
        events: &[Ev {
            position: 8,
            revision: 3,
            id: 0x0193_0000_0000_4000_8000_0000_0000_0009,
            event_type: "CustomerRenamed",
            content_type: JSON,
            metadata: br#"{"user":"bo"}"#,
            data: br#"{"name":"Bob"}"#,
        }],
    },
    Append {
        stream: "order-2",
        expected: ExpectedVersion::Exact(0),
        events: &[Ev {
            position: 9,
            revision: 1,
            id: 0x0193_0000_0000_4000_8000_0000_0000_000a,
            event_type: "OrderCancelled",
            content_type: None,
            metadata: b"",
            data: b"",
        }],
    },
];

/// Total events in the fixture.
const EVENTS: u64 = 10;

fn fixture_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/log")
}

fn event_id(id: u128) -> EventId {
    EventId(id.to_be_bytes())
}

fn new_event(e: &Ev) -> NewEvent {
    NewEvent {
        id: event_id(e.id),
        event_type: e.event_type.into(),
        data: Bytes::from_static(e.data),
        metadata: Bytes::from_static(e.metadata),
        content_type: e.content_type.map(str::to_owned),
    }
}

fn request(a: &Append) -> AppendRequest {
    AppendRequest {
        stream: a.stream.into(),
        expected: a.expected,
        events: a.events.iter().map(new_event).collect(),
    }
}

fn success_of(a: &Append) -> AppendOutcome {
    let last = a.events.last().expect("appends are not empty");
    AppendOutcome::Success {
        next_expected_revision: last.revision,
        position: last.position,
    }
}

/// Every fixture event with its stream, in position order.
fn expected_events() -> Vec<(&'static str, &'static Ev)> {
    let mut all: Vec<_> = APPENDS
        .iter()
        .flat_map(|a| a.events.iter().map(move |e| (a.stream, e)))
        .collect();
    all.sort_by_key(|(_, e)| e.position);
    all
}

#[test]
#[ignore = "generated the checked-in version-1 fixture with a build that wrote version 1; kept to show how"]
fn generate() {
    assert_eq!(
        FORMAT_VERSION, 1,
        "this build writes format version {FORMAT_VERSION}: the version-1 fixture is history"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = StoreConfig::new(dir.path());
    cfg.segment_size = FIXTURE_SEGMENT_SIZE;
    let rt = runtime();
    {
        let store = Store::open(cfg).expect("open");
        for a in APPENDS {
            let out = rt.block_on(store.append(request(a))).expect("append");
            assert_eq!(out, success_of(a), "append to {}", a.stream);
        }
        assert_eq!(store.head_position(), EVENTS);
        let stats = rt.block_on(store.stats()).expect("stats");
        assert!(stats.segments >= 2, "{stats:?}");
        store.close().expect("close");
    }
    let out = fixture_log();
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("remove the old fixture");
    }
    copy_dir(&dir.path().join("log"), &out);
    eprintln!("fixture written to {}", out.display());
}

// ---------------------------------------------------------------------------
// The byte layout, parsed by hand with the offsets of docs/FORMAT.md.

/// CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, initial value and
/// final XOR 0xFFFFFFFF), bit by bit, independent of crc32fast.
fn crc32_ieee(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A record as read straight from the bytes.
#[derive(Debug)]
struct RawRecord {
    file: String,
    offset: usize,
    /// Bytes of the whole frame.
    frame_len: usize,
    flags: u8,
    position: u64,
    revision: u64,
    recorded_at_micros: i64,
    id: [u8; 16],
    stream: String,
    event_type: String,
    content_type: String,
    metadata: Vec<u8>,
    data: Vec<u8>,
}

/// Checks a segment header (FORMAT.md, "Segment header") and returns the
/// base position it records.
fn parse_header(name: &str, h: &[u8]) -> u64 {
    assert_eq!(&h[0..8], b"STRATSEG", "{name}: magic");
    assert_eq!(le_u32(h, 8), 1, "{name}: format version");
    assert_eq!(le_u32(h, 12), 32, "{name}: header length");
    assert_eq!(&h[24..28], &[0; 4], "{name}: reserved bytes");
    assert_eq!(
        le_u32(h, 28),
        crc32_ieee(&[&h[0..28]]),
        "{name}: header CRC-32"
    );
    le_u64(h, 16)
}

/// Decodes one frame at `at` (FORMAT.md, "Record frame" and "Event
/// payload"); `None` at a zero length field (end of written data).
fn parse_record(name: &str, seg: &[u8], at: usize) -> Option<(RawRecord, usize)> {
    let len = le_u32(seg, at) as usize;
    if len == 0 {
        return None;
    }
    let frame = &seg[at..at + 8 + len];
    let p = &frame[8..];
    assert_eq!(
        le_u32(frame, 4),
        crc32_ieee(&[&frame[0..4], p]),
        "{name}@{at}: CRC-32 over the length bytes and the payload"
    );
    assert_eq!(p[0], 1, "{name}@{at}: kind");
    let stream_len = usize::from(le_u16(p, 2));
    let type_len = usize::from(le_u16(p, 4));
    let ct_len = usize::from(le_u16(p, 6));
    let meta_len = le_u32(p, 48) as usize;
    let data_len = le_u32(p, 52) as usize;
    assert_eq!(
        56 + stream_len + type_len + ct_len + meta_len + data_len,
        len,
        "{name}@{at}: field lengths add up to the payload length"
    );
    let mut cursor = 56;
    let mut take = |n: usize| {
        let s = p[cursor..cursor + n].to_vec();
        cursor += n;
        s
    };
    let text = |b: Vec<u8>| String::from_utf8(b).expect("UTF-8");
    let rec = RawRecord {
        file: name.to_owned(),
        offset: at,
        frame_len: 8 + len,
        flags: p[1],
        position: le_u64(p, 8),
        revision: le_u64(p, 16),
        recorded_at_micros: le_u64(p, 24) as i64,
        id: p[32..48].try_into().expect("16 bytes"),
        stream: text(take(stream_len)),
        event_type: text(take(type_len)),
        content_type: text(take(ct_len)),
        metadata: take(meta_len),
        data: take(data_len),
    };
    Some((rec, 8 + len))
}

/// Every record of a log directory, in log order, checking file names,
/// headers, CRCs, and that the rest of each preallocated file is zeros.
fn parse_log_by_hand(log: &Path) -> (Vec<String>, Vec<RawRecord>) {
    let mut names: Vec<String> = std::fs::read_dir(log)
        .expect("read log dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut records = Vec::new();
    for name in &names {
        let seg = std::fs::read(log.join(name)).expect("read segment");
        let base = parse_header(name, &seg[..32]);
        assert_eq!(
            name,
            &format!("{base:020}.seg"),
            "file name is the base position"
        );
        assert_eq!(
            seg.len() as u64,
            FIXTURE_SEGMENT_SIZE,
            "{name}: preallocated size"
        );
        let mut at = 32;
        let mut first = true;
        while at + 4 <= seg.len() {
            let Some((rec, used)) = parse_record(name, &seg, at) else {
                break;
            };
            if first {
                assert_eq!(
                    rec.position, base,
                    "{name}: first record is at the base position"
                );
                first = false;
            }
            records.push(rec);
            at += used;
        }
        assert!(
            seg[at..].iter().all(|&b| b == 0),
            "{name}: zeros after the last record (offset {at})"
        );
    }
    (names, records)
}

#[test]
fn first_record_matches_the_documented_layout() {
    // The checksum really is CRC-32 (IEEE): the standard check value.
    assert_eq!(crc32_ieee(&[b"123456789"]), 0xCBF4_3926);
    // This build still reads version 1 (the fixture's), whatever it writes.
    assert_eq!(OLDEST_FORMAT_VERSION, 1);

    let seg = std::fs::read(fixture_log().join("00000000000000000000.seg")).expect("read");
    assert_eq!(parse_header("first", &seg[..32]), 0);
    // The example header printed in FORMAT.md.
    #[rustfmt::skip]
    let documented: [u8; 32] = [
        0x53, 0x54, 0x52, 0x41, 0x54, 0x53, 0x45, 0x47, // "STRATSEG"
        0x01, 0x00, 0x00, 0x00, // version 1
        0x20, 0x00, 0x00, 0x00, // header length 32
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // base position 0
        0x00, 0x00, 0x00, 0x00, // reserved
        0x9b, 0x13, 0x09, 0x20, // CRC-32 0x2009139b
    ];
    assert_eq!(seg[..32], documented);

    // Frame at offset 32: len u32 LE | crc u32 LE | payload.
    let e = &APPENDS[0].events[0];
    let stream = APPENDS[0].stream.as_bytes();
    let ct = e.content_type.expect("has a content type").as_bytes();
    let len = le_u32(&seg, 32) as usize;
    assert_eq!(
        len,
        56 + stream.len() + e.event_type.len() + ct.len() + e.metadata.len() + e.data.len()
    );
    assert_eq!(
        le_u32(&seg, 36),
        crc32_ieee(&[&seg[32..36], &seg[40..40 + len]])
    );
    let p = &seg[40..40 + len];
    assert_eq!(p[0], 1, "kind: event");
    assert_eq!(p[1], 0x01, "flags: commit (a single-event append)");
    assert_eq!(usize::from(le_u16(p, 2)), stream.len());
    assert_eq!(usize::from(le_u16(p, 4)), e.event_type.len());
    assert_eq!(usize::from(le_u16(p, 6)), ct.len());
    assert_eq!(le_u64(p, 8), 0, "position");
    assert_eq!(le_u64(p, 16), 0, "revision");
    let recorded_at = le_u64(p, 24) as i64;
    // Written in 2026 or later, in microseconds (not ms or ns).
    assert!(
        (1_767_225_600_000_000..4_102_444_800_000_000).contains(&recorded_at),
        "{recorded_at}"
    );
    assert_eq!(
        &p[32..48],
        &e.id.to_be_bytes(),
        "id: the UUID's 16 bytes in order"
    );
    assert_eq!(le_u32(p, 48) as usize, e.metadata.len());
    assert_eq!(le_u32(p, 52) as usize, e.data.len());
    let mut at = 56;
    for (field, want) in [
        ("stream", stream),
        ("type", e.event_type.as_bytes()),
        ("content type", ct),
        ("metadata", e.metadata),
        ("data", e.data),
    ] {
        assert_eq!(&p[at..at + want.len()], want, "{field}");
        at += want.len();
    }
    assert_eq!(at, len);
}

#[test]
fn fixture_log_parses_by_hand() {
    let (names, records) = parse_log_by_hand(&fixture_log());
    assert!(
        names.len() >= 2,
        "the fixture spans several segments: {names:?}"
    );
    let expected = expected_events();
    assert_eq!(records.len(), expected.len());
    for (r, (stream, e)) in records.iter().zip(&expected) {
        assert_eq!(r.position, e.position);
        assert_eq!(r.stream, *stream);
        assert_eq!(r.revision, e.revision);
        assert_eq!(r.id, e.id.to_be_bytes());
        assert_eq!(r.event_type, e.event_type);
        assert_eq!(r.content_type, e.content_type.unwrap_or(""));
        assert_eq!(r.metadata, e.metadata);
        assert_eq!(r.data, e.data);
    }
    // The last record of every append, and only it, carries the commit
    // flag; no append spans two segment files.
    for a in APPENDS {
        let recs: Vec<&RawRecord> = a
            .events
            .iter()
            .map(|e| &records[e.position as usize])
            .collect();
        for (i, r) in recs.iter().enumerate() {
            let commit = i + 1 == recs.len();
            assert_eq!(
                r.flags,
                u8::from(commit),
                "flags of position {}",
                r.position
            );
            assert_eq!(r.file, recs[0].file, "append spans segments");
        }
        // The records of an append are contiguous.
        for w in recs.windows(2) {
            assert_eq!(w[0].offset + w[0].frame_len, w[1].offset);
        }
    }
    // The two-event append at position 6 did not fit in the first segment,
    // though its first event would have: it opened the second segment whole.
    let (before, first, second) = (&records[5], &records[6], &records[7]);
    assert_ne!(before.file, first.file);
    assert_eq!(first.offset, 32);
    let free = FIXTURE_SEGMENT_SIZE as usize - (before.offset + before.frame_len);
    assert!(first.frame_len <= free && first.frame_len + second.frame_len > free);
    // All events of one append share one commit time.
    for a in APPENDS {
        let t = records[a.events[0].position as usize].recorded_at_micros;
        assert!(a
            .events
            .iter()
            .all(|e| records[e.position as usize].recorded_at_micros == t));
    }
}

// ---------------------------------------------------------------------------
// The engine reads the fixture.

fn read_all(store: &Store, direction: Direction) -> Vec<RecordedEvent> {
    let from = match direction {
        Direction::Forwards => ReadFrom::Start,
        Direction::Backwards => ReadFrom::End,
    };
    runtime()
        .block_on(async {
            let read = store.read_all(direction, from, 0, Filter::default());
            read.await?.collect_all().await
        })
        .expect("read $all")
}

fn read_stream(store: &Store, stream: &str, direction: Direction) -> Vec<RecordedEvent> {
    let from = match direction {
        Direction::Forwards => ReadFrom::Start,
        Direction::Backwards => ReadFrom::End,
    };
    runtime()
        .block_on(async {
            let read = store.read_stream(stream, direction, from, 0);
            read.await?.collect_all().await
        })
        .expect("read stream")
}

#[test]
fn engine_reads_the_v1_fixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_log(), &dir.path().join("log"));
    let (_, raw) = parse_log_by_hand(&fixture_log());
    let rt = runtime();
    {
        // No index/: it is rebuilt from the log on open.
        let store = Store::open(StoreConfig::new(dir.path())).expect("open the fixture");
        assert_eq!(store.head_position(), EVENTS);
        let stats = rt.block_on(store.stats()).expect("stats");
        assert_eq!(stats.streams, 3);
        assert_eq!(stats.indexed_position, EVENTS);

        let all = read_all(&store, Direction::Forwards);
        let expected = expected_events();
        assert_eq!(all.len(), expected.len());
        for ((got, (stream, e)), r) in all.iter().zip(&expected).zip(&raw) {
            assert_eq!(&*got.stream, *stream);
            assert_eq!(got.position, e.position);
            assert_eq!(got.revision, e.revision);
            assert_eq!(got.id, event_id(e.id));
            assert_eq!(got.event_type, e.event_type);
            assert_eq!(got.content_type.as_deref(), e.content_type);
            assert_eq!(&got.metadata[..], e.metadata);
            assert_eq!(&got.data[..], e.data);
            assert_eq!(got.recorded_at_micros, r.recorded_at_micros);
        }
        let mut back = read_all(&store, Direction::Backwards);
        back.reverse();
        assert_eq!(back, all);

        for stream in ["order-1", "customer-7", "order-2"] {
            let want: Vec<&RecordedEvent> = all.iter().filter(|e| &*e.stream == stream).collect();
            let got = read_stream(&store, stream, Direction::Forwards);
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{stream}");
            assert!(got.iter().enumerate().all(|(i, e)| e.revision == i as u64));
            let mut back = read_stream(&store, stream, Direction::Backwards);
            back.reverse();
            assert_eq!(back, got, "{stream} backwards");
        }

        // The rebuilt event-id index makes a retry of a fixture append
        // idempotent: the original result, nothing written.
        for a in APPENDS {
            let out = rt.block_on(store.append(request(a))).expect("retry");
            assert_eq!(out, success_of(a), "retry of an append to {}", a.stream);
        }
        assert_eq!(store.head_position(), EVENTS);

        // This build keeps appending to a v1 log.
        let more = AppendRequest {
            stream: "order-1".into(),
            expected: ExpectedVersion::Exact(3),
            events: vec![new_event(&Ev {
                position: EVENTS,
                revision: 4,
                id: 0x0193_0000_0000_4000_8000_0000_0000_00ff,
                event_type: "OrderArchived",
                content_type: None,
                metadata: b"",
                data: b"{}",
            })],
        };
        let out = rt.block_on(store.append(more)).expect("append");
        assert_eq!(
            out,
            AppendOutcome::Success {
                next_expected_revision: 4,
                position: EVENTS
            }
        );
        store.close().expect("close");
    }
    let report = verify(dir.path()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, EVENTS + 1);
    // Locations are indexed at every 64th position and at each segment's
    // first record: with fewer than 64 events, one per segment (the
    // fixture's, and the one the new append went to).
    assert_eq!(report.segments, 2);
    assert_eq!(report.index_checked, report.segments);

    // The fixture itself, without an index, verifies too.
    let pristine = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_log(), &pristine.path().join("log"));
    let report = verify(pristine.path()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, EVENTS);
}
