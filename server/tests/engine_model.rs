//! The engine against an in-memory reference model: random sequences of
//! appends (every expected-version kind, idempotent retries, reused ids),
//! stream and `$all` reads in both directions from every kind of start,
//! and close + reopen (sometimes without the index) in the middle. Every
//! outcome is compared exactly.

mod engine_support;

use std::path::Path;

use bytes::Bytes;
use engine_support::*;
use proptest::prelude::*;
use strata_server::store::*;

/// Streams appends go to. Names chosen so that prefix filters overlap.
const STREAMS: [&str; 4] = ["acct-1", "acct-12", "order-1", "ord"];
/// Read from, never written: reading it is `StreamNotFound`.
const MISSING: &str = "nobody";
const TYPES: [&str; 4] = ["Alpha", "AlphaBeta", "Beta", "Gamma"];
const STREAM_FILTERS: [&[&str]; 5] = [&[], &["acct-1"], &["ord"], &["order-", "acct-12"], &["zz"]];
const TYPE_FILTERS: [&[&str]; 4] = [&[], &["Alpha"], &["B"], &["AlphaB", "Gam"]];

#[derive(Clone, Debug)]
enum Exp {
    Any,
    NoStream,
    StreamExists,
    /// `Exact` with the stream's current revision (`Exact(0)` when it does not exist).
    Correct,
    /// `Exact` with a revision the stream does not have.
    Wrong(u8),
}

#[derive(Clone, Debug)]
struct EvSpec {
    ty: usize,
    data: Vec<u8>,
    meta: Vec<u8>,
    content_type: bool,
}

#[derive(Clone, Debug)]
enum RetryKind {
    None,
    /// The same append again right after its answer.
    After(Exp),
    /// The same append sent concurrently (usually the same group commit).
    Concurrent(Exp),
}

#[derive(Clone, Debug)]
enum ReuseKind {
    /// A new id followed by an old one.
    OldThenFreshElsewhere,
    /// An old id followed by a new one.
    OldThenFresh,
    /// An old id alone, to another stream.
    OtherStream,
}

#[derive(Clone, Copy, Debug)]
enum From {
    Start,
    End,
    At(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        events: Vec<EvSpec>,
        expected: Exp,
        retry: RetryKind,
    },
    Retry {
        pick: usize,
        expected: Exp,
    },
    Reuse {
        pick: usize,
        event: usize,
        kind: ReuseKind,
        other: usize,
    },
    ReadStream {
        stream: usize,
        backwards: bool,
        from: From,
        max: u64,
    },
    ReadAll {
        backwards: bool,
        from: From,
        max: u64,
        streams: usize,
        types: usize,
    },
    Reopen {
        drop_index: bool,
    },
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        2 => Just(Exp::Any),
        1 => Just(Exp::NoStream),
        1 => Just(Exp::StreamExists),
        3 => Just(Exp::Correct),
        1 => (0u8..3).prop_map(Exp::Wrong),
    ]
}

fn ev_spec() -> impl Strategy<Value = EvSpec> {
    (
        0..TYPES.len(),
        prop::collection::vec(any::<u8>(), 0..48),
        prop::collection::vec(any::<u8>(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(ty, data, meta, content_type)| EvSpec {
            ty,
            data,
            meta,
            content_type,
        })
}

fn from(max_at: u64) -> impl Strategy<Value = From> {
    prop_oneof![
        Just(From::Start),
        Just(From::End),
        (0..max_at).prop_map(From::At),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let retry = prop_oneof![
        6 => Just(RetryKind::None),
        1 => exp().prop_map(RetryKind::After),
        1 => exp().prop_map(RetryKind::Concurrent),
    ];
    prop_oneof![
        10 => (0..STREAMS.len(), prop::collection::vec(ev_spec(), 1..=5), exp(), retry)
            .prop_map(|(stream, events, expected, retry)| Op::Append { stream, events, expected, retry }),
        2 => (any::<usize>(), exp()).prop_map(|(pick, expected)| Op::Retry { pick, expected }),
        1 => (
            any::<usize>(),
            any::<usize>(),
            prop_oneof![
                Just(ReuseKind::OldThenFreshElsewhere),
                Just(ReuseKind::OldThenFresh),
                Just(ReuseKind::OtherStream)
            ],
            1..STREAMS.len(),
        )
            .prop_map(|(pick, event, kind, other)| Op::Reuse { pick, event, kind, other }),
        3 => (0..=STREAMS.len(), any::<bool>(), from(12), 0u64..6)
            .prop_map(|(stream, backwards, from, max)| Op::ReadStream { stream, backwards, from, max }),
        3 => (any::<bool>(), from(60), 0u64..8, 0..STREAM_FILTERS.len(), 0..TYPE_FILTERS.len())
            .prop_map(|(backwards, from, max, streams, types)| Op::ReadAll { backwards, from, max, streams, types }),
        1 => any::<bool>().prop_map(|drop_index| Op::Reopen { drop_index }),
    ]
}

/// The reference: the log as a list, each stream as the positions of its events.
#[derive(Default)]
struct Model {
    log: Vec<EventKey>,
    streams: [Vec<u64>; STREAMS.len()],
    /// Successful appends and their answers, for retries.
    done: Vec<(AppendRequest, AppendOutcome)>,
    next_id: u64,
}

impl Model {
    fn id(&mut self) -> EventId {
        self.next_id += 1;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&0x5eed_0000_0000_0000u64.to_be_bytes());
        b[8..].copy_from_slice(&self.next_id.to_be_bytes());
        EventId(b)
    }

    fn current(&self, stream: usize) -> Option<u64> {
        (self.streams[stream].len() as u64).checked_sub(1)
    }

    fn expected(&self, stream: usize, e: &Exp) -> ExpectedVersion {
        let current = self.current(stream);
        match *e {
            Exp::Any => ExpectedVersion::Any,
            Exp::NoStream => ExpectedVersion::NoStream,
            Exp::StreamExists => ExpectedVersion::StreamExists,
            Exp::Correct => ExpectedVersion::Exact(current.unwrap_or(0)),
            Exp::Wrong(d) => ExpectedVersion::Exact(match current {
                Some(l) if d % 2 == 1 && l > u64::from(d) => l - 1 - u64::from(d),
                Some(l) => l + 1 + u64::from(d),
                None => u64::from(d),
            }),
        }
    }

    /// What the engine must answer to a fresh (non-retry) append, applying it.
    fn apply(&mut self, stream: usize, r: &AppendRequest) -> AppendOutcome {
        let current = self.current(stream);
        let ok = match r.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(x) => current == Some(x),
        };
        if !ok {
            return AppendOutcome::WrongExpectedVersion {
                current_revision: current,
                expected: r.expected,
            };
        }
        for e in &r.events {
            let position = self.log.len() as u64;
            let revision = self.streams[stream].len() as u64;
            self.streams[stream].push(position);
            self.log.push((
                r.stream.clone(),
                revision,
                position,
                e.id,
                e.event_type.clone(),
                e.data.clone(),
                e.metadata.clone(),
                e.content_type.clone(),
            ));
        }
        let out = AppendOutcome::Success {
            next_expected_revision: self.streams[stream].len() as u64 - 1,
            position: self.log.len() as u64 - 1,
        };
        self.done.push((r.clone(), out));
        out
    }

    fn read_stream(&self, stream: usize, backwards: bool, from: From, max: u64) -> Vec<EventKey> {
        let positions = &self.streams[stream];
        let revs = select(positions.len() as u64, backwards, from);
        limit(
            revs.into_iter()
                .map(|r| self.log[positions[r as usize] as usize].clone()),
            max,
        )
    }

    fn read_all(&self, backwards: bool, from: From, max: u64, filter: &Filter) -> Vec<EventKey> {
        let ps = select(self.log.len() as u64, backwards, from);
        limit(
            ps.into_iter()
                .map(|p| self.log[p as usize].clone())
                .filter(|e| filter.matches(&e.0, &e.4)),
            max,
        )
    }
}

/// Indexes `0..len` a read visits, in order. `At` is inclusive; forwards
/// from `End` is empty; backwards from `Start` is the first event alone.
fn select(len: u64, backwards: bool, from: From) -> Vec<u64> {
    if len == 0 {
        return Vec::new();
    }
    let last = len - 1;
    match (backwards, from) {
        (false, From::Start) => (0..len).collect(),
        (false, From::End) => Vec::new(),
        (false, From::At(x)) => (x.min(len)..len).collect(),
        (true, From::End) => (0..len).rev().collect(),
        (true, From::Start) => vec![0],
        (true, From::At(x)) => (0..=x.min(last)).rev().collect(),
    }
}

fn limit(it: impl Iterator<Item = EventKey>, max: u64) -> Vec<EventKey> {
    let n = if max == 0 { usize::MAX } else { max as usize };
    it.take(n).collect()
}

fn read_from(f: From) -> ReadFrom {
    match f {
        From::Start => ReadFrom::Start,
        From::End => ReadFrom::End,
        From::At(x) => ReadFrom::At(x),
    }
}

fn direction(backwards: bool) -> Direction {
    if backwards {
        Direction::Backwards
    } else {
        Direction::Forwards
    }
}

fn filter(streams: usize, types: usize) -> Filter {
    Filter {
        stream_prefixes: STREAM_FILTERS[streams]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        event_type_prefixes: TYPE_FILTERS[types].iter().map(|s| s.to_string()).collect(),
        gate: None,
    }
}

fn keys(events: Vec<RecordedEvent>) -> Vec<EventKey> {
    events.iter().map(key).collect()
}

/// Opens with small segments, and read batches small enough that a
/// filtered read also hits its per-batch scan bound (64 × the batch size).
fn open(dir: &Path, read_batch: usize) -> Store {
    let mut cfg = config(dir, 4096);
    cfg.read_batch = read_batch;
    Store::open(cfg).expect("open store")
}

/// Every stream both ways, `$all` both ways, head and stream count.
fn check_everything(store: &Store, model: &Model, when: &str) {
    assert_eq!(
        store.head_position(),
        model.log.len() as u64,
        "{when}: head"
    );
    let fwd = keys(all_forwards(store));
    assert_eq!(fwd, model.log, "{when}: $all forwards");
    let mut bwd = keys(all_backwards(store));
    bwd.reverse();
    assert_eq!(bwd, model.log, "{when}: $all backwards");
    for (i, name) in STREAMS.iter().enumerate() {
        let want = model.read_stream(i, false, From::Start, 0);
        if want.is_empty() {
            assert!(
                matches!(
                    block_on(store.read_stream(name, Direction::Forwards, ReadFrom::Start, 0)),
                    Err(ReadError::StreamNotFound(_))
                ),
                "{when}: {name} does not exist"
            );
            continue;
        }
        assert_eq!(
            keys(stream_events(store, name, Direction::Forwards)),
            want,
            "{when}: {name}"
        );
        let mut back = keys(stream_events(store, name, Direction::Backwards));
        back.reverse();
        assert_eq!(back, want, "{when}: {name} backwards");
    }
    let streams = model.streams.iter().filter(|s| !s.is_empty()).count() as u64;
    assert_eq!(stats(store).streams, streams, "{when}: stream count");
}

fn new_event(model: &mut Model, s: &EvSpec) -> NewEvent {
    NewEvent {
        id: model.id(),
        event_type: TYPES[s.ty].to_string(),
        data: Bytes::from(s.data.clone()),
        metadata: Bytes::from(s.meta.clone()),
        content_type: s.content_type.then(|| "application/json".to_string()),
    }
}

fn run(read_batch: usize, ops: Vec<Op>) {
    let dir = scratch_dir();
    let rt = runtime();
    let mut store = open(dir.path(), read_batch);
    let mut model = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        let when = format!("step {step}: {op:?}");
        match op {
            Op::Append {
                stream,
                events,
                expected,
                retry,
            } => {
                let events: Vec<NewEvent> =
                    events.iter().map(|s| new_event(&mut model, s)).collect();
                let r = req(STREAMS[stream], model.expected(stream, &expected), events);
                let mut again = r.clone();
                match retry {
                    RetryKind::None => {
                        let got = rt.block_on(store.append(r.clone())).expect("append");
                        assert_eq!(got, model.apply(stream, &r), "{when}");
                    }
                    RetryKind::After(e) => {
                        let got = rt.block_on(store.append(r.clone())).expect("append");
                        let want = model.apply(stream, &r);
                        assert_eq!(got, want, "{when}");
                        // A retry of a success returns it; a conflict is
                        // simply evaluated again (nothing was written).
                        again.expected = model.expected(stream, &e);
                        let got = rt.block_on(store.append(again.clone())).expect("retry");
                        if matches!(want, AppendOutcome::Success { .. }) {
                            assert_eq!(got, want, "{when}: retry");
                        } else {
                            assert_eq!(got, model.apply(stream, &again), "{when}: second try");
                        }
                    }
                    RetryKind::Concurrent(e) => {
                        again.expected = model.expected(stream, &e);
                        let (a, b) = rt.block_on(async {
                            tokio::join!(store.append(r.clone()), store.append(again.clone()))
                        });
                        let (a, b) = (a.expect("append"), b.expect("retry"));
                        let want = model.apply(stream, &r);
                        if matches!(want, AppendOutcome::Success { .. }) {
                            assert_eq!((a, b), (want, want), "{when}");
                        } else {
                            assert_eq!(a, want, "{when}");
                            assert_eq!(b, model.apply(stream, &again), "{when}: second");
                        }
                    }
                }
            }
            Op::Retry { pick, expected } => {
                if model.done.is_empty() {
                    continue;
                }
                let (mut r, want) = model.done[pick % model.done.len()].clone();
                let stream = STREAMS
                    .iter()
                    .position(|s| *s == r.stream)
                    .expect("known stream");
                r.expected = model.expected(stream, &expected);
                let got = rt.block_on(store.append(r)).expect("retry");
                assert_eq!(got, want, "{when}: a retry returns the original success");
            }
            Op::Reuse {
                pick,
                event,
                kind,
                other,
            } => {
                if model.done.is_empty() {
                    continue;
                }
                let (orig, _) = model.done[pick % model.done.len()].clone();
                // Appends are keyed by their first event id: reusing it for
                // anything but an exact retry is refused.
                let _ = event;
                let old = orig.events[0].clone();
                let old_position = model
                    .log
                    .iter()
                    .find(|e| e.3 == old.id)
                    .map(|e| e.2)
                    .expect("old id in the model");
                let stream = STREAMS
                    .iter()
                    .position(|s| *s == orig.stream)
                    .expect("known");
                let fresh = new_event(
                    &mut model,
                    &EvSpec {
                        ty: 0,
                        data: vec![1],
                        meta: vec![],
                        content_type: false,
                    },
                );
                let r = match kind {
                    ReuseKind::OldThenFreshElsewhere => req(
                        STREAMS[(stream + other) % STREAMS.len()],
                        ExpectedVersion::Any,
                        vec![old.clone(), fresh],
                    ),
                    ReuseKind::OldThenFresh => {
                        req(&orig.stream, ExpectedVersion::Any, vec![old.clone(), fresh])
                    }
                    ReuseKind::OtherStream => req(
                        STREAMS[(stream + other) % STREAMS.len()],
                        ExpectedVersion::Any,
                        vec![old.clone()],
                    ),
                };
                match rt.block_on(store.append(r)) {
                    Err(AppendError::DuplicateEventId { id, position }) => {
                        assert_eq!(id, old.id.to_string(), "{when}: names the reused id");
                        assert_eq!(position, old_position, "{when}: names where it is");
                    }
                    other => panic!("{when}: expected DuplicateEventId, got {other:?}"),
                }
            }
            Op::ReadStream {
                stream,
                backwards,
                from,
                max,
            } => {
                let name = STREAMS.get(stream).copied().unwrap_or(MISSING);
                let got =
                    block_on(store.read_stream(name, direction(backwards), read_from(from), max));
                let exists = stream < STREAMS.len() && !model.streams[stream].is_empty();
                if exists {
                    let got = keys(collect(got.expect("read stream")));
                    assert_eq!(
                        got,
                        model.read_stream(stream, backwards, from, max),
                        "{when}"
                    );
                } else {
                    assert!(
                        matches!(got, Err(ReadError::StreamNotFound(ref s)) if s == name),
                        "{when}: expected StreamNotFound, got {:?}",
                        got.map(|_| ())
                    );
                }
            }
            Op::ReadAll {
                backwards,
                from,
                max,
                streams,
                types,
            } => {
                let f = filter(streams, types);
                let got =
                    block_on(store.read_all(direction(backwards), read_from(from), max, f.clone()))
                        .expect("read $all");
                let got = keys(collect(got));
                assert_eq!(got, model.read_all(backwards, from, max, &f), "{when}");
            }
            Op::Reopen { drop_index } => {
                store.close().expect("close");
                drop(store);
                if drop_index {
                    std::fs::remove_dir_all(dir.path().join("index")).expect("remove index");
                }
                store = open(dir.path(), read_batch);
                check_everything(&store, &model, &when);
            }
        }
        assert_eq!(
            store.head_position(),
            model.log.len() as u64,
            "{when}: head"
        );
    }
    check_everything(&store, &model, "end");
    store.close().expect("close");
    drop(store);
    let report = verify(dir.path()).expect("verify");
    assert!(report.problems.is_empty(), "verify: {:?}", report.problems);
    assert_eq!(
        report.records,
        model.log.len() as u64,
        "verify counted every record"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_model(read_batch in 1usize..5, ops in prop::collection::vec(op(), 1..40)) {
        run(read_batch, ops);
    }
}

/// A fixed sequence that exercises what the random one may miss: rolling
/// segments, retries across a reopen and across an index rebuild, filtered
/// reads longer than one batch's scan bound.
#[test]
fn fixed_sequence_with_reopens() {
    let mut ops = Vec::new();
    for i in 0..30 {
        ops.push(Op::Append {
            stream: i % STREAMS.len(),
            events: vec![
                EvSpec {
                    ty: i % TYPES.len(),
                    data: vec![i as u8; 40],
                    meta: vec![1, 2],
                    content_type: i % 2 == 0,
                };
                1 + i % 5
            ],
            expected: if i < 4 { Exp::NoStream } else { Exp::Correct },
            retry: if i % 7 == 0 {
                RetryKind::Concurrent(Exp::Any)
            } else {
                RetryKind::None
            },
        });
        if i % 10 == 9 {
            ops.push(Op::Reopen {
                drop_index: i == 19,
            });
        }
    }
    for i in 0..10 {
        ops.push(Op::Retry {
            pick: i * 37,
            expected: Exp::NoStream,
        });
    }
    // Every filter both ways over ~90 events, one event per read batch.
    for streams in 0..STREAM_FILTERS.len() {
        for types in 0..TYPE_FILTERS.len() {
            for (backwards, from) in [
                (false, From::Start),
                (true, From::End),
                (false, From::At(33)),
            ] {
                ops.push(Op::ReadAll {
                    backwards,
                    from,
                    max: 0,
                    streams,
                    types,
                });
            }
        }
    }
    run(1, ops);
}
