//! Subscriptions across the catch-up → live switch while writers are busy:
//! no gap, no duplicate, commit order, `caught_up` exactly once, for a fast
//! consumer, a slow one (which overflows the live buffer and falls back to
//! the log) and a filtered one.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use strata_proto::v1;
use strata_proto::v1::subscribe_response::Content;

const WRITERS: usize = 4;
const APPENDS_PER_WRITER: usize = 60;
const PRELOAD: u64 = 100;

/// What a writer was told: stream, first and last position of each append,
/// and the ids it sent.
#[derive(Debug)]
struct Acked {
    stream: String,
    last_revision: u64,
    last_position: u64,
    ids: Vec<[u8; 16]>,
}

async fn writer(mut c: Client, k: usize) -> Vec<Acked> {
    let stream = format!("w{k}");
    let mut acked = Vec::new();
    let mut expected = v1::ExpectedVersion::no_stream();
    for i in 0..APPENDS_PER_WRITER {
        let evs = events(1 + (i + k) % 3, "Written", &format!("{stream}-{i}"));
        let ids = evs
            .iter()
            .map(|e| e.id.as_ref().expect("id").to_bytes().expect("valid"))
            .collect();
        let (rev, pos) = append_ok(&mut c, &stream, expected, evs).await;
        expected = v1::ExpectedVersion::exact(rev);
        acked.push(Acked {
            stream: stream.clone(),
            last_revision: rev,
            last_position: pos,
            ids,
        });
    }
    acked
}

/// Collects a subscription until the event at the position `last` names
/// has arrived; returns events and the `caught_up` messages, in arrival order.
/// `slow` sleeps on each of the first messages so the subscriber lags.
async fn collect(
    mut sub: Sub,
    last: tokio::sync::watch::Receiver<Option<u64>>,
    slow: bool,
) -> (Vec<v1::RecordedEvent>, Vec<v1::CaughtUp>) {
    let mut got: Vec<v1::RecordedEvent> = Vec::new();
    let mut caught_up = Vec::new();
    let mut messages = 0usize;
    loop {
        let end = *last.borrow();
        if end.is_some() && got.last().map(|e| e.position) == end {
            return (got, caught_up);
        }
        let Some(m) = sub.next_within(Duration::from_millis(200)).await else {
            continue;
        };
        messages += 1;
        if slow && messages < 80 {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        match m {
            Content::Events(b) => {
                assert!(!b.events.is_empty(), "empty EventBatch");
                got.extend(b.events);
            }
            Content::CaughtUp(c) => caught_up.push(c),
            Content::Checkpoint(_) => {}
        }
        assert!(messages < 100_000, "runaway subscription");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_subscription_has_no_gap_or_duplicate_across_the_switch() {
    let server = TestServer::start_with(|a| {
        a.live_buffer = 4; // a slow subscriber overflows it quickly
        a.read_batch = 16;
    })
    .await;
    let mut c = server.client.clone();
    let mut preload_ids = HashMap::new();
    for i in 0..PRELOAD / 10 {
        let evs = events(10, "Preload", &format!("p{i}"));
        let (_, last) = append_ok(&mut c, "preload", v1::ExpectedVersion::any(), evs.clone()).await;
        for (j, e) in evs.iter().enumerate() {
            let id = e.id.as_ref().expect("id").to_bytes().expect("valid");
            preload_ids.insert(last + 1 - 10 + j as u64, id);
        }
    }

    // Writers start first; the subscriptions open while they run, so the
    // catch-up races the live batches.
    let mut writers = Vec::new();
    for k in 0..WRITERS {
        let client = server.connect().await;
        writers.push(tokio::spawn(writer(client, k)));
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stats(&mut c).await.head_position < PRELOAD + 20 {
        assert!(tokio::time::Instant::now() < deadline, "writers stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (last_tx, last_rx) = tokio::sync::watch::channel(None);
    let mut subs = Vec::new();
    for (name, f, slow) in [
        ("fast", None, false),
        ("slow", None, true),
        ("filtered", Some(filter(&["w1"], &[])), false),
        ("filtered-slow", Some(filter(&["w2", "w3"], &[])), true),
    ] {
        let mut client = server.connect().await;
        let sub = Sub::open(&mut client, sub_req(all_target(), None, f)).await;
        let rx = last_rx.clone();
        subs.push((
            name,
            tokio::spawn(async move {
                let _keep = client;
                collect(sub, rx, slow).await
            }),
        ));
    }

    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer task"));
    }
    let head = stats(&mut c).await.head_position;
    let written: u64 = acked.iter().map(|a| a.ids.len() as u64).sum();
    assert_eq!(
        head,
        PRELOAD + written,
        "every acknowledged event counted once"
    );

    // The expected log, position by position.
    let mut expected: HashMap<u64, (String, u64, [u8; 16])> = HashMap::new();
    for (p, id) in &preload_ids {
        expected.insert(*p, ("preload".into(), *p, *id));
    }
    for a in &acked {
        let n = a.ids.len() as u64;
        for (i, id) in a.ids.iter().enumerate() {
            let i = i as u64;
            let pos = a.last_position + 1 - n + i;
            let rev = a.last_revision + 1 - n + i;
            let old = expected.insert(pos, (a.stream.clone(), rev, *id));
            assert!(old.is_none(), "position {pos} acknowledged twice");
        }
    }
    assert_eq!(
        expected.len() as u64,
        head,
        "acknowledged positions are dense"
    );

    // The subscriptions stop once they reach the last matching position.
    let last_of = |prefixes: &[&str]| {
        expected
            .iter()
            .filter(|(_, (s, _, _))| {
                prefixes.is_empty() || prefixes.iter().any(|p| s.starts_with(p))
            })
            .map(|(p, _)| *p)
            .max()
            .expect("some event matches")
    };
    let ends: HashMap<&str, u64> = [
        ("fast", last_of(&[])),
        ("slow", last_of(&[])),
        ("filtered", last_of(&["w1"])),
        ("filtered-slow", last_of(&["w2", "w3"])),
    ]
    .into_iter()
    .collect();
    for (name, task) in subs {
        let _ = last_tx.send(Some(ends[name]));
        let (got, caught_up) = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap_or_else(|_| panic!("{name}: subscription did not deliver everything"))
            .expect("subscription task");
        assert_eq!(
            caught_up.len(),
            1,
            "{name}: caught_up exactly once: {caught_up:?}"
        );

        let prefixes: &[&str] = match name {
            "filtered" => &["w1"],
            "filtered-slow" => &["w2", "w3"],
            _ => &[],
        };
        let mut want: Vec<u64> = expected
            .iter()
            .filter(|(_, (s, _, _))| {
                prefixes.is_empty() || prefixes.iter().any(|p| s.starts_with(p))
            })
            .map(|(p, _)| *p)
            .collect();
        want.sort_unstable();
        let got_positions = positions(&got);
        if got_positions != want {
            let dup = got_positions.windows(2).find(|w| w[0] >= w[1]);
            let missing: Vec<_> = want
                .iter()
                .filter(|p| !got_positions.contains(p))
                .take(5)
                .collect();
            panic!(
                "{name}: {} events, want {}; first out-of-order pair {dup:?}, first missing {missing:?}",
                got_positions.len(),
                want.len()
            );
        }
        for e in &got {
            let (stream, rev, id) = &expected[&e.position];
            assert_eq!(
                (&e.stream, e.revision, id_bytes(e)),
                (stream, *rev, *id),
                "{name}: event at position {}",
                e.position
            );
        }
    }
    // Per-stream order over the whole log, read back.
    let all = read_all(&mut c).await;
    assert_eq!(positions(&all), (0..head).collect::<Vec<_>>());
}
