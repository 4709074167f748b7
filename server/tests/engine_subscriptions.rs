//! Subscriptions: catch-up then live with no gap and no duplicate while
//! writers run, slow subscribers behind a tiny live buffer, every starting
//! point, streams that do not exist yet, checkpoints of filtered `$all`
//! subscriptions, and the end of subscriptions when the store closes.

mod engine_support;

use std::sync::Arc;
use std::time::Duration;

use engine_support::*;
use strata_server::store::*;

const WAIT: Duration = Duration::from_secs(20);

/// What a subscriber saw, in order.
#[derive(Default, Debug)]
struct Seen {
    events: Vec<RecordedEvent>,
    /// Each `CaughtUp` with the number of events received before it.
    /// Events delivered before it, its position and its revision.
    caught_up: Vec<(usize, Option<u64>, Option<u64>)>,
    /// Each `Checkpoint` with the number of events received before it.
    checkpoints: Vec<(usize, u64)>,
}

impl Seen {
    fn positions(&self) -> Vec<u64> {
        self.events.iter().map(|e| e.position).collect()
    }

    fn revisions(&self) -> Vec<u64> {
        self.events.iter().map(|e| e.revision).collect()
    }

    fn take(&mut self, m: SubscriptionMessage) {
        match m {
            SubscriptionMessage::Events(es) => {
                assert!(!es.is_empty(), "an empty events message");
                self.events.extend(es);
            }
            SubscriptionMessage::CaughtUp { position, revision } => {
                self.caught_up.push((self.events.len(), position, revision))
            }
            SubscriptionMessage::Checkpoint { position } => {
                self.checkpoints.push((self.events.len(), position))
            }
        }
    }
}

async fn next(sub: &mut Subscription) -> SubscriptionMessage {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a subscription message in time")
        .expect("subscription error")
        .expect("the subscription ended")
}

/// Pulls messages until `n` events arrived (and a `CaughtUp`, if
/// `need_caught_up`), optionally sleeping before each pull.
async fn take(sub: &mut Subscription, n: usize, need_caught_up: bool, pause: Duration) -> Seen {
    let mut seen = Seen::default();
    while seen.events.len() < n || (need_caught_up && seen.caught_up.is_empty()) {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let m = next(sub).await;
        seen.take(m);
    }
    seen
}

/// Nothing but (optionally) checkpoints arrives for a while.
async fn quiet(sub: &mut Subscription, what: &str) {
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(150), sub.next()).await {
        match m.expect("next").expect("open") {
            SubscriptionMessage::Checkpoint { .. } => {}
            other => panic!("{what}: unexpected {other:?}"),
        }
    }
}

fn open(dir: &std::path::Path, tweak: impl FnOnce(&mut StoreConfig)) -> Arc<Store> {
    let mut cfg = config(dir, 4096);
    tweak(&mut cfg);
    Arc::new(Store::open(cfg).expect("open"))
}

/// Appends `appends` appends of 1 to 3 events to `stream`; returns the events written.
fn writer(store: &Arc<Store>, stream: String, appends: usize) -> tokio::task::JoinHandle<usize> {
    let store = store.clone();
    tokio::spawn(async move {
        let mut n = 0;
        for i in 0..appends {
            let k = 1 + i % 3;
            let events = (0..k)
                .map(|j| ev("W", format!("{stream}/{i}/{j}").as_bytes()))
                .collect();
            append_ok(&store, req(&stream, ExpectedVersion::Any, events)).await;
            n += k;
            if i % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
        n
    })
}

fn events_of(appends: usize) -> usize {
    (0..appends).map(|i| 1 + i % 3).sum()
}

fn read_all_now(store: &Store) -> Vec<RecordedEvent> {
    tokio::task::block_in_place(|| all_forwards(store))
}

async fn prefill(store: &Store, n: usize) {
    for i in 0..n {
        append_ok(
            store,
            req(
                &format!("pre-{}", i % 3),
                ExpectedVersion::Any,
                vec![ev("P", b"p")],
            ),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_then_live_while_writers_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path(), |c| c.read_batch = 5);
    prefill(&store, 30).await;
    let writers: Vec<_> = (0..4)
        .map(|w| writer(&store, format!("w-{w}"), 25))
        .collect();
    let mut all = store
        .subscribe(
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe $all");
    let mut one = store
        .subscribe(
            SubscriptionTarget::Stream("w-1".into()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe w-1");
    let per_writer = events_of(25);
    let total = 30 + 4 * per_writer;
    let (a, b) = tokio::join!(
        take(&mut all, total, true, Duration::ZERO),
        take(&mut one, per_writer, true, Duration::ZERO)
    );
    for w in writers {
        assert_eq!(w.await.expect("writer"), per_writer);
    }
    assert_eq!(
        a.positions(),
        (0..total as u64).collect::<Vec<_>>(),
        "$all: each once, in order"
    );
    assert_eq!(
        a.events,
        read_all_now(&store),
        "$all: the same events as a read"
    );
    assert_eq!(a.caught_up.len(), 1, "$all: one CaughtUp");
    assert_eq!(
        b.revisions(),
        (0..per_writer as u64).collect::<Vec<_>>(),
        "w-1: each once, in order"
    );
    assert!(b.events.iter().all(|e| &*e.stream == "w-1"));
    let w1: Vec<_> = a
        .events
        .iter()
        .filter(|e| &*e.stream == "w-1")
        .cloned()
        .collect();
    assert_eq!(b.events, w1, "w-1: the same events as in $all");
    assert_eq!(b.caught_up.len(), 1, "w-1: one CaughtUp");
    // The CaughtUp position is the last event covered: every event up to
    // it was delivered before it.
    let (before, at, revision) = a.caught_up[0];
    assert_eq!(
        at,
        (before as u64).checked_sub(1),
        "$all: CaughtUp names the last position covered"
    );
    assert_eq!(revision, None, "$all: no revision");
    let (before, position, at) = b.caught_up[0];
    assert_eq!(position, None, "a stream: no position");
    assert_eq!(
        at,
        (before as u64).checked_sub(1),
        "w-1: CaughtUp names the last revision covered"
    );
    quiet(&mut all, "$all after everything").await;
    quiet(&mut one, "w-1 after everything").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_behind_a_tiny_live_buffer_misses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path(), |c| {
        c.live_buffer = 2;
        c.read_batch = 4;
    });
    prefill(&store, 10).await;
    let mut all = store
        .subscribe(
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe");
    let mut one = store
        .subscribe(
            SubscriptionTarget::Stream("w-2".into()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe");
    // Reach the live head first, so that the writers below overflow the
    // live buffer of a subscriber that is already live.
    let first = take(&mut all, 10, true, Duration::ZERO).await;
    let first_one = take(&mut one, 0, true, Duration::ZERO).await;
    let writers: Vec<_> = (0..4)
        .map(|w| writer(&store, format!("w-{w}"), 30))
        .collect();
    let per_writer = events_of(30);
    let total = 10 + 4 * per_writer;
    let pause = Duration::from_millis(2);
    let (a, b) = tokio::join!(
        take(&mut all, total - 10, false, pause),
        take(&mut one, per_writer, false, pause)
    );
    for w in writers {
        w.await.expect("writer");
    }
    let positions: Vec<u64> = first.positions().into_iter().chain(a.positions()).collect();
    assert_eq!(
        positions,
        (0..total as u64).collect::<Vec<_>>(),
        "$all: each once, in order"
    );
    assert_eq!(
        b.revisions(),
        (0..per_writer as u64).collect::<Vec<_>>(),
        "w-2"
    );
    assert!(b.events.iter().all(|e| &*e.stream == "w-2"));
    assert_eq!(
        first.caught_up.len() + a.caught_up.len(),
        1,
        "$all: one CaughtUp"
    );
    assert_eq!(
        first_one.caught_up.len() + b.caught_up.len(),
        1,
        "w-2: one CaughtUp"
    );
    let mut all_events = first.events;
    all_events.extend(a.events);
    assert_eq!(all_events, read_all_now(&store));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_end_sees_only_later_events() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path(), |_| {});
    prefill(&store, 12).await; // pre-0 holds revisions 0..=3
    let mut all = store
        .subscribe(
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::End,
        )
        .await
        .expect("subscribe");
    let mut pre0 = store
        .subscribe(
            SubscriptionTarget::Stream("pre-0".into()),
            SubscribeFrom::End,
        )
        .await
        .expect("subscribe");
    match next(&mut all).await {
        // From the end of a log of 12 events: the last one, 11.
        SubscriptionMessage::CaughtUp { position, revision } => {
            assert_eq!((position, revision), (Some(11), None))
        }
        other => panic!("expected CaughtUp first, got {other:?}"),
    }
    assert!(matches!(
        next(&mut pre0).await,
        SubscriptionMessage::CaughtUp { .. }
    ));
    for s in ["x", "pre-0", "pre-1", "pre-0"] {
        append_ok(&store, req(s, ExpectedVersion::Any, vec![ev("L", b"l")])).await;
    }
    let a = take(&mut all, 4, false, Duration::ZERO).await;
    assert_eq!(a.positions(), vec![12, 13, 14, 15]);
    let p = take(&mut pre0, 2, false, Duration::ZERO).await;
    assert_eq!(p.revisions(), vec![4, 5]);
    assert_eq!(p.positions(), vec![13, 15]);
    quiet(&mut all, "$all from end").await;
    quiet(&mut pre0, "pre-0 from end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_starts_right_after_the_given_event() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path(), |c| c.read_batch = 3);
    prefill(&store, 12).await; // pre-1 holds positions 1, 4, 7, 10
    let cases: Vec<(SubscriptionTarget, SubscribeFrom, Vec<u64>)> = vec![
        (
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::After(0),
            (1..14).collect(),
        ),
        (
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::After(6),
            (7..14).collect(),
        ),
        (
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::After(11),
            vec![12, 13],
        ),
        // Beyond the head: waits for the events after it.
        (
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::After(12),
            vec![13],
        ),
        (
            SubscriptionTarget::Stream("pre-1".into()),
            SubscribeFrom::After(0),
            vec![4, 7, 10, 13],
        ),
        (
            SubscriptionTarget::Stream("pre-1".into()),
            SubscribeFrom::After(2),
            vec![10, 13],
        ),
        (
            SubscriptionTarget::Stream("pre-1".into()),
            SubscribeFrom::After(3),
            vec![13],
        ),
    ];
    let mut subs = Vec::new();
    for (target, from, want) in cases {
        let sub = store
            .subscribe(target.clone(), from)
            .await
            .expect("subscribe");
        subs.push((format!("{target:?} {from:?}"), sub, want));
    }
    append_ok(&store, req("x", ExpectedVersion::Any, vec![ev("L", b"l")])).await; // 12
    append_ok(
        &store,
        req("pre-1", ExpectedVersion::Exact(3), vec![ev("L", b"l")]),
    )
    .await; // 13
    for (what, sub, want) in &mut subs {
        let seen = take(sub, want.len(), true, Duration::ZERO).await;
        assert_eq!(&seen.positions(), want, "{what}");
        assert_eq!(seen.caught_up.len(), 1, "{what}");
        quiet(sub, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_subscription_to_a_stream_that_does_not_exist_yet() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path(), |_| {});
    prefill(&store, 5).await;
    let mut sub = store
        .subscribe(
            SubscriptionTarget::Stream("fresh".into()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribing to a missing stream is not an error");
    match next(&mut sub).await {
        // A stream with no event yet: nothing to resume after.
        SubscriptionMessage::CaughtUp { position, revision } => {
            assert_eq!((position, revision), (None, None))
        }
        other => panic!("expected CaughtUp, got {other:?}"),
    }
    append_ok(
        &store,
        req("other", ExpectedVersion::Any, vec![ev("O", b"o")]),
    )
    .await;
    append_ok(
        &store,
        req(
            "fresh",
            ExpectedVersion::NoStream,
            vec![ev("F", b"0"), ev("F", b"1")],
        ),
    )
    .await;
    append_ok(
        &store,
        req("other", ExpectedVersion::Any, vec![ev("O", b"o")]),
    )
    .await;
    append_ok(
        &store,
        req("fresh", ExpectedVersion::Exact(1), vec![ev("F", b"2")]),
    )
    .await;
    let seen = take(&mut sub, 3, false, Duration::ZERO).await;
    assert_eq!(seen.revisions(), vec![0, 1, 2]);
    assert_eq!(seen.positions(), vec![6, 7, 9]);
    assert_eq!(
        seen.events
            .iter()
            .map(|e| e.data.clone())
            .collect::<Vec<_>>(),
        vec![&b"0"[..], b"1", b"2"]
    );
    quiet(&mut sub, "fresh").await;
}

/// Event `i` of a log where one event in seven matches `match-`/`Yes`
/// (some match only the stream, some only the type).
async fn put_one_in_seven(store: &Store, i: usize) {
    let (stream, ty) = match i % 7 {
        0 => ("match-a", "YesThis"),
        3 => ("match-b", "NoThat"),
        5 => ("other", "YesThis"),
        _ => ("other", "Noise"),
    };
    append_ok(store, req(stream, ExpectedVersion::Any, vec![ev(ty, b"")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_all_subscription_checkpoints_and_matches_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path(), |c| {
        c.checkpoint_every_events = 5;
        c.checkpoint_interval = Duration::from_secs(60);
        c.read_batch = 4;
    });
    let filter = Filter {
        stream_prefixes: vec!["match-".into()],
        event_type_prefixes: vec!["Yes".into()],
        gate: None,
    };
    for i in 0..60 {
        put_one_in_seven(&store, i).await;
    }
    let mut sub = store
        .subscribe(
            SubscriptionTarget::All(filter.clone()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe");
    let live = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 60..130 {
                put_one_in_seven(&store, i).await;
            }
        })
    };
    let matching: Vec<u64> = (0..130).filter(|i| i % 7 == 0).collect();
    let mut seen = take(&mut sub, matching.len(), true, Duration::ZERO).await;
    live.await.expect("writer");
    // Checkpoints continue through the non-matching tail.
    while seen.checkpoints.last().map_or(0, |c| c.1) + 6 <= 130 {
        let m = next(&mut sub).await;
        seen.take(m);
    }
    assert_eq!(seen.positions(), matching, "exactly the matching events");
    for e in &seen.events {
        assert!(filter.matches(&e.stream, &e.event_type), "{e:?}");
    }
    assert!(seen.checkpoints.len() >= 10, "{:?}", seen.checkpoints);
    let mut last = 0;
    for &(delivered, position) in &seen.checkpoints {
        assert!(position >= last, "non-decreasing: {:?}", seen.checkpoints);
        assert!(position < 130, "never beyond the last event");
        last = position;
        // Every matching event up to the checkpoint was delivered before it.
        let below = matching.iter().filter(|p| **p <= position).count();
        assert_eq!(delivered, below, "checkpoint {position} overtook an event");
    }
    assert_eq!(seen.caught_up.len(), 1);
}

/// Closing the store ends subscriptions, including one waiting for live
/// events, with `Ok(None)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_ends_subscriptions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path(), |_| {});
    prefill(&store, 3).await;
    let mut all = store
        .subscribe(
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe");
    let mut stream = store
        .subscribe(
            SubscriptionTarget::Stream("pre-0".into()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe");
    take(&mut all, 3, true, Duration::ZERO).await;
    take(&mut stream, 1, true, Duration::ZERO).await;
    let waiting = tokio::spawn(async move {
        let a = all.next().await;
        let s = stream.next().await;
        (a, s)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let closer = store.clone();
    tokio::task::spawn_blocking(move || closer.close())
        .await
        .expect("join")
        .expect("close");
    let (a, s) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("waiting subscriptions end when the store closes")
        .expect("join");
    assert!(matches!(a, Ok(None)), "$all: {a:?}");
    assert!(matches!(s, Ok(None)), "stream: {s:?}");
    // A subscription started after close ends at once.
    let mut late = store
        .subscribe(
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe");
    let m = tokio::time::timeout(Duration::from_secs(5), late.next())
        .await
        .expect("in time");
    assert!(matches!(m, Ok(None)), "{m:?}");
}

/// An unfiltered `$all` subscription from the start.
async fn all_from_start(store: &Store) -> Subscription {
    store
        .subscribe(
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe")
}

/// A catch-up keeps one reader from start to head. When the head moves
/// while it reads, it reads on with the same cursor: what its buffer held
/// past the old head (the segment's zeros, read before the new events were
/// written) must be read again, not taken for the end of the segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_reads_on_when_the_head_moves_under_it() {
    let dir = scratch_dir();
    let store = open(dir.path(), |c| {
        c.segment_size = 1 << 20;
        c.read_batch = 2;
    });
    prefill(&store, 10).await;
    let mut sub = all_from_start(&store).await;
    // The first batch: the reader now buffers the segment, zeros included.
    let first = take(&mut sub, 2, false, Duration::ZERO).await;
    assert_eq!(first.positions(), [0, 1]);
    for i in 0..10 {
        let data = format!("later-{i}");
        append_ok(
            &store,
            req(
                "later",
                ExpectedVersion::Any,
                vec![ev("L", data.as_bytes())],
            ),
        )
        .await;
    }
    let rest = take(&mut sub, 18, true, Duration::ZERO).await;
    assert_eq!(rest.positions(), (2..20).collect::<Vec<_>>());
    assert_eq!(rest.caught_up.len(), 1);
    let later: Vec<&[u8]> = rest.events[8..].iter().map(|e| &e.data[..]).collect();
    let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("later-{i}").into_bytes()).collect();
    assert_eq!(later, expected.iter().map(|v| &v[..]).collect::<Vec<_>>());
    // Everything read from the log, not live: the live buffer had it too,
    // but the caught-up point comes after the last of them.
    assert_eq!(rest.caught_up[0].1, Some(19));
}

/// A catch-up applies a lifecycle change made while it runs from its next
/// batch on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_applies_a_delete_made_while_it_runs() {
    let dir = scratch_dir();
    let store = open(dir.path(), |c| c.read_batch = 2);
    for i in 0..6 {
        let stream = if i < 2 { "early" } else { "late" };
        append_ok(
            &store,
            req(stream, ExpectedVersion::Any, vec![ev("E", b"e")]),
        )
        .await;
    }
    let mut sub = all_from_start(&store).await;
    let first = take(&mut sub, 2, false, Duration::ZERO).await;
    assert_eq!(first.positions(), [0, 1]);
    let delete = LifecycleRequest::Delete {
        stream: "late".into(),
        expected: ExpectedVersion::Any,
    };
    store.lifecycle(delete).await.expect("delete");
    append_ok(
        &store,
        req("after", ExpectedVersion::Any, vec![ev("A", b"a")]),
    )
    .await;
    // One batch was read ahead before the delete; the rest is hidden.
    let rest = take(&mut sub, 1, true, Duration::ZERO).await;
    let streams: Vec<&str> = rest.events.iter().map(|e| &*e.stream).collect();
    assert!(
        streams.iter().filter(|s| **s == "late").count() <= 2,
        "late events after the delete: {streams:?}"
    );
    assert_eq!(streams.last(), Some(&"after"));
}
