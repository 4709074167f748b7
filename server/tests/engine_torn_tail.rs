//! Torn tails: the last segment is cut at every byte offset inside its last
//! few records, both by shortening the file and by zeroing from the offset
//! to the end (what a torn write into a preallocated file looks like). After
//! reopening, exactly the appends whose records all end before the cut are
//! there, unchanged; nothing of a partial append is visible; positions stay
//! dense; lost appends can be retried and land at the same positions; new
//! appends get the next positions.

mod engine_support;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use engine_support::*;
use strata_server::store::*;

const SEGMENT_SIZE: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// `set_len(offset)`: the file ends at the offset.
    Shorten,
    /// Zeroes from the offset to the end, keeping the preallocated length.
    Zero,
}

/// The index the reopened store finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Idx {
    /// As closed: it covers records the cut removed, so it is ahead of the log.
    Current,
    /// A copy from before the tail was written: behind the log, as after a
    /// crash that lost sled's recent writes (the usual case).
    Stale,
    /// None at all: a full rebuild.
    Missing,
}

struct Fixture {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    /// The index directory as it was before the tail was written.
    stale_index: PathBuf,
    last_segment: PathBuf,
    /// Every event, as read before the cut.
    events: Vec<RecordedEvent>,
    /// The appends written into the last segment, in order, with their answers.
    tail: Vec<(AppendRequest, AppendOutcome)>,
    /// Frames of the last segment.
    frames: Vec<Frame>,
    /// Offset of the first record of `tail`.
    tail_start: u64,
}

fn outcome(revision: u64, position: u64) -> AppendOutcome {
    AppendOutcome::Success {
        next_expected_revision: revision,
        position,
    }
}

async fn build() -> Fixture {
    let tmp = scratch_dir();
    let data = tmp.path().join("data");
    let store = Store::open(config(&data, SEGMENT_SIZE)).expect("open");
    // A few segments of history, some appends with several events.
    for i in 0..12u64 {
        let n = 1 + (i % 3) as usize;
        let events = (0..n)
            .map(|k| ev("Old", format!("{i}-{k}-{:0>120}", 0).as_bytes()))
            .collect();
        append_ok(
            &store,
            req(&format!("old-{}", i % 4), ExpectedVersion::Any, events),
        )
        .await;
    }
    // Fill until a new segment starts, so that the tail below shares the
    // last segment with nothing but this one filler append.
    let segments = stats(&store).segments;
    while stats(&store).segments == segments {
        append_ok(
            &store,
            req("fill", ExpectedVersion::Any, vec![ev("F", &[7; 200])]),
        )
        .await;
    }
    let head = store.head_position();
    store.close().expect("close");
    drop(store);
    let stale_index = tmp.path().join("stale-index");
    copy_dir(&data.join("index"), &stale_index);
    let store = Store::open(config(&data, SEGMENT_SIZE)).expect("reopen");
    let before_tail = frames(segment_files(&data).last().expect("a segment"));
    assert_eq!(
        before_tail.len(),
        1,
        "the last segment holds only the filler"
    );
    // The tail: an existing stream, then a brand-new stream whose first
    // append has three events, then the existing stream again.
    let plan: Vec<AppendRequest> = vec![
        req("old-1", ExpectedVersion::Any, vec![ev("A", b"x")]),
        req(
            "late",
            ExpectedVersion::NoStream,
            vec![ev("L", b"1"), ev("L", b"22"), ev("L", b"333")],
        ),
        req("old-2", ExpectedVersion::StreamExists, vec![ev("B", b"yy")]),
    ];
    let mut tail = Vec::new();
    for r in plan {
        let (rev, pos) = append_ok(&store, r.clone()).await;
        tail.push((r, outcome(rev, pos)));
    }
    assert_eq!(store.head_position(), head + 5);
    let events = all_forwards(&store);
    assert_eq!(events.len() as u64, head + 5);
    store.close().expect("close");
    drop(store);

    let last_segment = segment_files(&data).last().expect("a segment").clone();
    let frames = frames(&last_segment);
    assert_eq!(frames.len(), 6, "filler + 5 tail records: {frames:?}");
    assert_eq!(frames[0].position, head - 1);
    assert!(frames.iter().all(|f| f.end() < SEGMENT_SIZE));
    Fixture {
        tail_start: frames[1].offset,
        _tmp: tmp,
        data,
        stale_index,
        last_segment,
        events,
        tail,
        frames,
    }
}

/// Number of events that survive a cut at `cut`: everything up to the last
/// commit record that ends at or before it.
fn surviving(f: &Fixture, cut: u64) -> u64 {
    f.frames
        .iter()
        .filter(|fr| fr.commit && fr.end() <= cut)
        .map(|fr| fr.position + 1)
        .max()
        .expect("the filler survives every cut")
}

fn cut_file(path: &Path, at: u64, how: Cut) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment");
    match how {
        Cut::Shorten => file.set_len(at).expect("set_len"),
        Cut::Zero => {
            let len = file.metadata().expect("meta").len();
            let zeros = vec![0u8; (len - at) as usize];
            file.write_all_at(&zeros, at).expect("zero");
        }
    }
    file.sync_all().expect("sync");
}

/// How much of the checking a cut gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Depth {
    /// Reopen, the surviving log forwards and by stream, one new append.
    Quick,
    /// Also backwards reads and a retry of every tail append.
    Full,
}

fn check_cut(
    f: &Fixture,
    rt: &tokio::runtime::Runtime,
    work: &Path,
    cut: u64,
    how: Cut,
    index: Idx,
    depth: Depth,
) {
    let what = format!("cut at {cut} ({how:?}, index {index:?})");
    let data = work.join(format!("{cut}-{how:?}-{index:?}"));
    copy_dir(&f.data, &data);
    match index {
        Idx::Current => {}
        Idx::Stale => {
            std::fs::remove_dir_all(data.join("index")).expect("rm index");
            copy_dir(&f.stale_index, &data.join("index"));
        }
        Idx::Missing => std::fs::remove_dir_all(data.join("index")).expect("rm index"),
    }
    let seg = data
        .join("log")
        .join(f.last_segment.file_name().expect("name"));
    cut_file(&seg, cut, how);

    let mut cfg = config(&data, SEGMENT_SIZE);
    // Durability is not under test here; skipping fdatasync keeps it fast.
    cfg.sync_mode = SyncMode::UnsafeNoSync;
    let store = Store::open(cfg).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    let n = surviving(f, cut);
    assert_eq!(store.head_position(), n, "{what}: head");

    // Exactly the surviving prefix, unchanged (commit times included).
    let want = &f.events[..n as usize];
    assert_eq!(all_forwards(&store), want, "{what}: $all forwards");
    for stream in ["old-1", "old-2", "late", "fill"] {
        let want: Vec<_> = want
            .iter()
            .filter(|e| &*e.stream == stream)
            .cloned()
            .collect();
        let got = try_collect(store.read_stream(stream, Direction::Forwards, ReadFrom::Start, 0));
        if want.is_empty() {
            assert!(
                matches!(got, Err(ReadError::StreamNotFound(_))),
                "{what}: {stream} should not exist, got {got:?}"
            );
        } else {
            assert_eq!(got.expect("read stream"), want, "{what}: {stream}");
        }
    }
    let total = f.events.len() as u64;
    match depth {
        Depth::Quick => {
            // The next append gets the next position and revision.
            let late = want.iter().filter(|e| &*e.stream == "late").count() as u64;
            let next = rt
                .block_on(store.append(req("late", ExpectedVersion::Any, vec![ev("L", b"6")])))
                .expect("append after recovery");
            assert_eq!(next, outcome(late, n), "{what}: the next append");
        }
        Depth::Full => {
            let mut back = all_backwards(&store);
            back.reverse();
            assert_eq!(back, want, "{what}: $all backwards");
            // Retrying every tail append in order: survivors answer as
            // before, lost ones are written again at the same positions and
            // revisions (their ids are no longer known).
            for (r, original) in &f.tail {
                let mut retry = r.clone();
                retry.expected = ExpectedVersion::Any;
                let got = rt
                    .block_on(store.append(retry))
                    .unwrap_or_else(|e| panic!("{what}: retry: {e}"));
                assert_eq!(got, *original, "{what}: retry of {r:?}");
            }
            assert_eq!(store.head_position(), total, "{what}: head after retries");
            let again: Vec<EventKey> = all_forwards(&store).iter().map(key).collect();
            let before: Vec<EventKey> = f.events.iter().map(key).collect();
            assert_eq!(again, before, "{what}: the log after retries");
            let next = rt
                .block_on(store.append(req("late", ExpectedVersion::Exact(2), vec![ev("L", b"6")])))
                .expect("append after recovery");
            assert_eq!(next, outcome(3, total), "{what}: the next append");
        }
    }
    store.close().expect("close");
    drop(store);
    std::fs::remove_dir_all(&data).expect("cleanup");
}

/// Every offset from the first tail record to a little past the last one,
/// both ways of cutting, with an index from before the tail (behind the log,
/// as after a crash) and with the index as closed (ahead of the log, so it
/// must be rebuilt); a sample of offsets gets every combination and none.
#[test]
fn every_cut_in_the_tail_keeps_exactly_the_complete_appends() {
    let rt = runtime();
    let f = rt.block_on(build());
    let end = f.frames.last().expect("frames").end();
    let cuts: Vec<u64> = (f.tail_start..=end + 8).collect();
    let work = f.data.parent().expect("parent").join("work");
    // Two workers: the cases are independent.
    std::thread::scope(|s| {
        for half in 0..2 {
            let (f, cuts, work) = (&f, &cuts, &work);
            s.spawn(move || {
                let rt = runtime();
                for &cut in cuts.iter().skip(half).step_by(2) {
                    // Record boundaries, the bytes around them and every
                    // tenth offset get the full check in every combination;
                    // the rest a quick one.
                    let near_edge = f.frames.iter().any(|fr| fr.offset.abs_diff(cut) <= 1);
                    if near_edge || cut % 10 == 0 {
                        for how in [Cut::Zero, Cut::Shorten] {
                            for index in [Idx::Stale, Idx::Current, Idx::Missing] {
                                check_cut(f, &rt, work, cut, how, index, Depth::Full);
                            }
                        }
                    } else {
                        check_cut(f, &rt, work, cut, Cut::Zero, Idx::Stale, Depth::Quick);
                        check_cut(f, &rt, work, cut, Cut::Shorten, Idx::Current, Depth::Quick);
                    }
                }
            });
        }
    });
}

/// A cut inside the header of a record right at the start of the segment
/// leaves an empty last segment; the log continues at its base.
#[test]
fn cut_at_the_first_record_of_the_last_segment() {
    let rt = runtime();
    let f = rt.block_on(build());
    let work = f.data.parent().expect("parent").join("work");
    for cut in [
        SEGMENT_HEADER,
        SEGMENT_HEADER + 1,
        SEGMENT_HEADER + 4,
        f.frames[0].end() - 1,
    ] {
        for how in [Cut::Zero, Cut::Shorten] {
            let data = work.join(format!("{cut}-{how:?}"));
            copy_dir(&f.data, &data);
            let seg = data
                .join("log")
                .join(f.last_segment.file_name().expect("name"));
            cut_file(&seg, cut, how);
            let store = Store::open(config(&data, SEGMENT_SIZE)).expect("open");
            let head = f.frames[0].position;
            assert_eq!(store.head_position(), head, "cut {cut} {how:?}");
            assert_eq!(
                all_forwards(&store),
                f.events[..head as usize],
                "cut {cut} {how:?}"
            );
            let (_, pos) = rt.block_on(append_ok(
                &store,
                req("fill", ExpectedVersion::Any, vec![ev("F", b"again")]),
            ));
            assert_eq!(pos, head, "cut {cut} {how:?}: next position");
            store.close().expect("close");
            drop(store);
            let store = Store::open(config(&data, SEGMENT_SIZE)).expect("reopen");
            assert_eq!(store.head_position(), head + 1);
            assert_eq!(
                all_forwards(&store)[..head as usize],
                f.events[..head as usize]
            );
        }
    }
}
