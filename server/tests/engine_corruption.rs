//! Corruption, as opposed to a torn tail: damaged bytes with valid records
//! after them. The engine must never return wrong data: reads of a damaged
//! record fail with `Corrupt` naming the file and offset, opening refuses a
//! damaged last segment (and any damaged segment it has to scan), and
//! `verify` reports the damage.

mod engine_support;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use engine_support::*;
use strata_server::store::*;

const SEGMENT_SIZE: u64 = 4096;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    events: Vec<RecordedEvent>,
    segments: Vec<PathBuf>,
}

async fn build() -> Fixture {
    let tmp = scratch_dir();
    let dir = tmp.path().to_path_buf();
    let store = Store::open(config(&dir, SEGMENT_SIZE)).expect("open");
    let mut i = 0u64;
    while stats(&store).segments < 3 {
        let n = 1 + (i % 2) as usize;
        let events = (0..n)
            .map(|k| ev("Thing", format!("{i}-{k}-{:0>60}", 0).as_bytes()))
            .collect();
        append_ok(
            &store,
            req(
                ["a", "b", "c"][i as usize % 3],
                ExpectedVersion::Any,
                events,
            ),
        )
        .await;
        i += 1;
    }
    // Several small appends after the roll, so the last segment has records
    // both before and after the one that gets damaged.
    for j in 0..6u64 {
        append_ok(
            &store,
            req("d", ExpectedVersion::Any, vec![ev("Small", &[j as u8; 10])]),
        )
        .await;
    }
    let events = all_forwards(&store);
    store.close().expect("close");
    drop(store);
    let segments = segment_files(&dir);
    assert_eq!(segments.len(), 3);
    assert!(
        frames(&segments[2]).len() >= 5,
        "{:?}",
        frames(&segments[2])
    );
    Fixture {
        _tmp: tmp,
        dir,
        events,
        segments,
    }
}

#[track_caller]
fn assert_corrupt<T: Debug, E: AsStorage + Debug>(
    r: Result<T, E>,
    file: &Path,
    offset: u64,
    what: &str,
) {
    match r.as_ref().map_err(|e| e.storage()) {
        Err(Some(StorageError::Corrupt {
            file: f, offset: o, ..
        })) => {
            assert_eq!(f, file, "{what}: the error names the file");
            assert_eq!(*o, offset, "{what}: the error names the record's offset");
        }
        other => panic!(
            "{what}: expected Corrupt at {}:{offset}, got {other:?}",
            file.display()
        ),
    }
}

/// The storage failure inside an open or read error, if that is what it is.
trait AsStorage {
    fn storage(&self) -> Option<&StorageError>;
}

impl AsStorage for OpenError {
    fn storage(&self) -> Option<&StorageError> {
        match self {
            OpenError::Storage(s) => Some(s),
            OpenError::Locked(_) => None,
        }
    }
}

impl AsStorage for ReadError {
    fn storage(&self) -> Option<&StorageError> {
        match self {
            ReadError::Storage(s) => Some(s),
            _ => None,
        }
    }
}

fn open(dir: &Path) -> Result<Store, OpenError> {
    Store::open(config(dir, SEGMENT_SIZE))
}

fn remove_index(dir: &Path) {
    std::fs::remove_dir_all(dir.join("index")).expect("rm index");
}

/// A segment the index covers is not scanned at open. Damage anywhere in
/// one of its records makes every read that reaches the record fail with
/// `Corrupt` instead of returning it; reads that do not reach it still
/// work; repairing the byte makes the record readable again.
#[test]
fn damage_in_an_older_segment_fails_the_reads_that_reach_it() {
    let rt = runtime();
    let f = rt.block_on(build());
    let seg = &f.segments[0];
    let all = frames(seg);
    let victim = all[all.len() / 2];
    let v = f.events[victim.position as usize].clone();
    let after = f.events[victim.position as usize + 1..].to_vec();
    let store = open(&f.dir).expect("the index covers the damage: open succeeds");
    for at in victim.offset..victim.end() {
        let what = format!("byte {at} of the record at {}", victim.offset);
        xor_byte(seg, at, 0xFF);
        let stream = &*v.stream;
        assert_corrupt(
            try_collect(store.read_stream(
                stream,
                Direction::Forwards,
                ReadFrom::At(v.revision),
                1,
            )),
            seg,
            victim.offset,
            &format!("{what}: stream read"),
        );
        assert_corrupt(
            try_collect(store.read_stream(stream, Direction::Backwards, ReadFrom::End, 0)),
            seg,
            victim.offset,
            &format!("{what}: backwards stream read"),
        );
        assert_corrupt(
            try_collect(store.read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default())),
            seg,
            victim.offset,
            &format!("{what}: $all forwards"),
        );
        assert_corrupt(
            try_collect(store.read_all(
                Direction::Backwards,
                ReadFrom::At(v.position + 1),
                0,
                Filter::default(),
            )),
            seg,
            victim.offset,
            &format!("{what}: $all backwards"),
        );
        // A filter that does not match the record still may not skip it
        // unread: the bytes that say which stream it belongs to are damaged.
        assert_corrupt(
            try_collect(store.read_all(
                Direction::Forwards,
                ReadFrom::Start,
                0,
                Filter {
                    stream_prefixes: vec!["zzz".into()],
                    event_type_prefixes: vec![],
                    gate: None,
                },
            )),
            seg,
            victim.offset,
            &format!("{what}: filtered $all"),
        );
        let rest = try_collect(store.read_all(
            Direction::Forwards,
            ReadFrom::At(v.position + 1),
            0,
            Filter::default(),
        ));
        if at < victim.offset + FRAME_HEADER / 2 {
            // A damaged length hides where the next record starts: a read
            // from a later position that has to step over the damaged
            // record (the index locates every 64th) fails, naming it.
            match rest {
                Ok(rest) => assert_eq!(rest, after, "{what}"),
                Err(e) => assert_corrupt::<(), _>(
                    Err(e),
                    seg,
                    victim.offset,
                    &format!("{what}: $all after it"),
                ),
            }
        } else {
            assert_eq!(rest.expect("reads past the damage"), after, "{what}");
        }
        xor_byte(seg, at, 0xFF);
        let fixed = try_collect(store.read_stream(
            stream,
            Direction::Forwards,
            ReadFrom::At(v.revision),
            1,
        ));
        assert_eq!(
            fixed.expect("repaired"),
            vec![v.clone()],
            "{what}: repaired"
        );
    }
    store.close().expect("close");
    drop(store);

    // verify reports it; a full rescan (no index) refuses to open.
    let middle = victim.offset + victim.len / 2;
    let name = seg
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    for at in [
        victim.offset,      // length
        victim.offset + 4,  // CRC
        victim.offset + 9,  // flags (the commit mark)
        victim.offset + 16, // position
        middle,
        victim.end() - 1,
    ] {
        let what = format!("byte {at}");
        xor_byte(seg, at, 0x10);
        let report = verify(&f.dir).expect("verify");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains(&name) && p.contains(&format!("offset {}", victim.offset))),
            "{what}: verify names file and offset: {:?}",
            report.problems
        );
        remove_index(&f.dir);
        assert_corrupt(
            open(&f.dir).map(|_| ()),
            seg,
            victim.offset,
            &format!("{what}: rescan"),
        );
        xor_byte(seg, at, 0x10);
    }
    remove_index(&f.dir);
    let store = open(&f.dir).expect("open after the repair");
    assert_eq!(all_forwards(&store), f.events);
}

/// The last segment is scanned at open. Damage to a record with valid
/// records after it is corruption, not a torn tail: open refuses, naming
/// the file and the record's offset, and changes nothing.
#[test]
fn damage_in_the_last_segment_refuses_to_open() {
    let rt = runtime();
    let f = rt.block_on(build());
    let seg = &f.segments[2];
    let all = frames(seg);
    let victim = all[1];
    assert!(all.len() >= 4, "valid records follow the victim");
    let check = |what: &str| {
        assert_corrupt(open(&f.dir).map(|_| ()), seg, victim.offset, what);
    };
    for at in victim.offset..victim.end() {
        xor_byte(seg, at, 0xFF);
        check(&format!("byte {at} flipped"));
        xor_byte(seg, at, 0xFF);
    }
    // Every single bit of the length field, including the ones that make
    // the length zero or huge.
    for bit in 0..32 {
        let (at, mask) = (victim.offset + bit / 8, 1u8 << (bit % 8));
        xor_byte(seg, at, mask);
        check(&format!("length bit {bit}"));
        xor_byte(seg, at, mask);
    }
    // A zeroed length field, and a whole record zeroed (a lost write): the
    // zeros look like the end of the data, but valid records follow.
    let old = overwrite(seg, victim.offset, &[0; 4]);
    check("zeroed length");
    overwrite(seg, victim.offset, &old);
    let old = overwrite(seg, victim.offset, &vec![0; victim.len as usize]);
    check("zeroed record");
    let report = verify(&f.dir).expect("verify");
    let name = seg
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&name) && p.contains(&format!("offset {}", victim.offset))),
        "verify reports the hole: {:?}",
        report.problems
    );
    overwrite(seg, victim.offset, &old);

    // Damage in the middle of the record's data, reported by verify too.
    xor_byte(seg, victim.offset + victim.len / 2, 0x01);
    let report = verify(&f.dir).expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&name) && p.contains(&format!("offset {}", victim.offset))),
        "verify: {:?}",
        report.problems
    );
    xor_byte(seg, victim.offset + victim.len / 2, 0x01);

    // Nothing was truncated by the refused opens.
    let store = open(&f.dir).expect("open the repaired log");
    assert_eq!(all_forwards(&store), f.events);
    store.close().expect("close");
    drop(store);
    let report = verify(&f.dir).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A damaged segment header is refused whichever segment it is.
#[test]
fn damaged_segment_header_refuses_to_open() {
    let rt = runtime();
    let f = rt.block_on(build());
    for seg in &f.segments {
        for at in [0u64, 8, 16, 28] {
            xor_byte(seg, at, 0x01);
            assert_corrupt(
                open(&f.dir).map(|_| ()),
                seg,
                0,
                &format!("{}: header byte {at}", seg.display()),
            );
            let report = verify(&f.dir).expect("verify");
            assert!(!report.problems.is_empty(), "verify sees a bad header");
            xor_byte(seg, at, 0x01);
        }
    }
    let store = open(&f.dir).expect("open");
    assert_eq!(all_forwards(&store), f.events);
}

/// A missing segment in the middle of the log is refused, not skipped.
#[test]
fn missing_middle_segment_refuses_to_open() {
    let rt = runtime();
    let f = rt.block_on(build());
    let aside = f.dir.join("aside.seg.bak");
    std::fs::rename(&f.segments[1], &aside).expect("move a segment away");
    remove_index(&f.dir);
    match open(&f.dir) {
        Err(OpenError::Storage(StorageError::Corrupt { .. })) => {}
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
    let report = verify(&f.dir).expect("verify");
    assert!(!report.problems.is_empty(), "verify sees the gap");
    std::fs::rename(&aside, &f.segments[1]).expect("put it back");
    remove_index(&f.dir);
    let store = open(&f.dir).expect("open");
    assert_eq!(all_forwards(&store), f.events);
}
