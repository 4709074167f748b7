//! Power-cut tier, in process: the engine runs on the power-loss model
//! (`store::io::SimStorage`), which keeps what was written apart from what
//! was synced. Each round opens the store, runs concurrent appenders
//! (single and multi-event, owned streams with exact expected versions,
//! shared streams with `any`), and cuts the power at a random operation —
//! inside a group commit, a segment roll, the spare segment's rename,
//! anywhere. Half the cuts keep only synced state, half keep a random
//! prefix of the unsynced operations with the last write torn. Some rounds
//! cut the power again during recovery, some delete the (derived) index.
//! Then the durable image is reopened and checked:
//! - every acknowledged append is present and identical, at the revisions
//!   and positions it was acknowledged with;
//! - positions are dense, revisions contiguous per stream, no id twice,
//!   nothing unknown;
//! - an append whose answer was lost is there entirely or not at all, and
//!   retrying it returns the original result or writes it exactly once.
//!
//! Settings (environment): `STRATA_MODEL_CUT_ROUNDS` (default 200),
//! `STRATA_MODEL_CUT_SEED` (default from the clock; printed).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_server::store::io::{CutMode, SimStorage};
use strata_server::store::{
    AppendOutcome, AppendRequest, Direction, EventId, ExpectedVersion, Filter, MultiAppendOutcome,
    MultiAppendRequest, NewEvent, OpenError, ReadFrom, RecordedEvent, Store, StoreConfig,
};

const APPENDERS: usize = 3;
const SEGMENT_SIZES: [u64; 3] = [4 << 10, 16 << 10, 256 << 10];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(default)
}

/// SplitMix64.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// An append as sent, and what became of it.
#[derive(Clone, Debug)]
struct Sent {
    stream: String,
    events: Vec<NewEvent>,
    /// `(last revision, last position)` once acknowledged.
    acked: Option<(u64, u64)>,
    /// The multi-append this append was part of, if any: all its parts
    /// are written together or not at all, at consecutive positions.
    group: Option<u64>,
}

fn event(rng: &mut Rng) -> NewEvent {
    let len = rng.range(0, 900) as usize;
    let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    NewEvent {
        id: EventId::random(),
        event_type: format!("T{}", rng.range(0, 5)),
        data: Bytes::from(data),
        metadata: Bytes::from(format!("m{}", rng.next() % 1000)),
        content_type: rng
            .next()
            .is_multiple_of(2)
            .then(|| "application/json".to_string()),
    }
}

fn config(data: &Path, sim: &SimStorage, segment_size: u64) -> StoreConfig {
    let mut c = StoreConfig::new(data);
    c.segment_size = segment_size;
    c.storage = Arc::new(sim.clone());
    // The sled index lags the log by a different amount per segment size:
    // written after every batch, every few milliseconds, or only at a
    // clean close (so a cut leaves everything to replay).
    c.index_interval = match segment_size {
        s if s == SEGMENT_SIZES[0] => Duration::ZERO,
        s if s == SEGMENT_SIZES[1] => Duration::from_millis(5),
        _ => Duration::from_secs(3600),
    };
    c
}

fn read_log(rt: &tokio::runtime::Runtime, store: &Store) -> Vec<RecordedEvent> {
    rt.block_on(async {
        let read = store.read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default());
        read.await?.collect_all().await
    })
    .expect("read $all")
}

/// Appends until the first error (the power cut), recording every answer.
async fn appender(
    store: Arc<Store>,
    mut rng: Rng,
    owned: Vec<(String, Option<u64>)>,
    ledger: Arc<Mutex<Vec<Sent>>>,
) {
    let mut owned = owned;
    loop {
        if rng.range(0, 4) == 0 {
            if !multi_appender_step(&store, &mut rng, &mut owned, &ledger).await {
                return;
            }
            continue;
        }
        let pick = rng.range(0, owned.len() as u64 + 2) as usize;
        let (stream, expected) = if pick < owned.len() {
            let (name, head) = &owned[pick];
            let expected = match head {
                Some(r) => ExpectedVersion::Exact(*r),
                None => ExpectedVersion::NoStream,
            };
            (name.clone(), expected)
        } else {
            (
                format!("shared-{}", pick - owned.len()),
                ExpectedVersion::Any,
            )
        };
        let n = if rng.range(0, 3) == 0 {
            rng.range(2, 12)
        } else {
            1
        };
        let events: Vec<NewEvent> = (0..n).map(|_| event(&mut rng)).collect();
        let r = store
            .append(AppendRequest {
                stream: stream.clone(),
                expected,
                events: events.clone(),
            })
            .await;
        let acked = match &r {
            Ok(AppendOutcome::Success {
                next_expected_revision,
                position,
            }) => Some((*next_expected_revision, *position)),
            _ => None,
        };
        if let Some(o) = owned.iter_mut().find(|o| o.0 == stream) {
            if let Some((rev, _)) = acked {
                o.1 = Some(rev);
            }
        }
        let failed = !matches!(r, Ok(AppendOutcome::Success { .. }));
        if let Ok(AppendOutcome::WrongExpectedVersion { .. }) = r {
            panic!("owned stream {stream} conflicted: the test's heads are wrong");
        }
        ledger.lock().expect("ledger").push(Sent {
            stream,
            events,
            acked,
            group: None,
        });
        if failed {
            return;
        }
    }
}

/// One multi-append: one owned stream (exact expected version) and one or
/// two shared ones. Returns whether it succeeded.
async fn multi_appender_step(
    store: &Store,
    rng: &mut Rng,
    owned: &mut [(String, Option<u64>)],
    ledger: &Mutex<Vec<Sent>>,
) -> bool {
    let k = rng.range(0, owned.len() as u64) as usize;
    let (name, head) = owned[k].clone();
    let mut parts = vec![(
        name.clone(),
        match head {
            Some(r) => ExpectedVersion::Exact(r),
            None => ExpectedVersion::NoStream,
        },
    )];
    let shared = rng.range(1, 3);
    for j in 0..shared {
        parts.push((format!("shared-{j}"), ExpectedVersion::Any));
    }
    let appends: Vec<AppendRequest> = parts
        .into_iter()
        .map(|(stream, expected)| {
            let n = rng.range(1, 6);
            AppendRequest {
                stream,
                expected,
                events: (0..n).map(|_| event(rng)).collect(),
            }
        })
        .collect();
    let group = rng.next();
    let r = store
        .multi_append(MultiAppendRequest {
            appends: appends.clone(),
            checks: Vec::new(),
        })
        .await;
    let results = match &r {
        Ok(MultiAppendOutcome::Success { results, .. }) => Some(results.clone()),
        Ok(MultiAppendOutcome::WrongExpectedVersion { conflicts }) => {
            panic!("a multi-append conflicted ({conflicts:?}): the test's heads are wrong")
        }
        Err(_) => None,
    };
    if let Some(results) = &results {
        owned[k].1 = Some(results[0].next_expected_revision);
    }
    let mut l = ledger.lock().expect("ledger");
    for (i, a) in appends.into_iter().enumerate() {
        l.push(Sent {
            stream: a.stream,
            events: a.events,
            acked: results
                .as_ref()
                .map(|r| (r[i].next_expected_revision, r[i].position)),
            group: Some(group),
        });
    }
    results.is_some()
}

/// Checks the log against the ledger; returns the in-doubt appends found
/// whole in the log, with their `(last revision, last position)`.
fn check(log: &[RecordedEvent], sent: &[Sent], v: &mut Vec<String>) -> HashMap<usize, (u64, u64)> {
    let mut revs: HashMap<&str, u64> = HashMap::new();
    let mut by_id: HashMap<EventId, &RecordedEvent> = HashMap::new();
    for (i, e) in log.iter().enumerate() {
        if e.position != i as u64 {
            v.push(format!("event {i} has position {}", e.position));
        }
        let next = revs.entry(&e.stream).or_insert(0);
        if e.revision != *next {
            v.push(format!(
                "{}: revision {} at position {}, expected {next}",
                e.stream, e.revision, e.position
            ));
        }
        *next = e.revision + 1;
        if by_id.insert(e.id, e).is_some() {
            v.push(format!("id {} stored twice", e.id));
        }
    }
    let same = |e: &RecordedEvent, n: &NewEvent, s: &Sent| {
        e.id == n.id
            && *e.stream == *s.stream
            && e.event_type == n.event_type
            && e.data == n.data
            && e.metadata == n.metadata
            && e.content_type == n.content_type
    };
    let mut found = HashMap::new();
    let mut known = 0;
    for (k, s) in sent.iter().enumerate() {
        let n = s.events.len() as u64;
        let got: Vec<Option<&&RecordedEvent>> = s.events.iter().map(|e| by_id.get(&e.id)).collect();
        let present = got.iter().flatten().count();
        known += present;
        match s.acked {
            Some((rev, pos)) => {
                for (i, (g, ne)) in got.iter().zip(&s.events).enumerate() {
                    let i = i as u64;
                    let ok = g.is_some_and(|e| {
                        e.revision + n == rev + 1 + i
                            && e.position + n == pos + 1 + i
                            && same(e, ne, s)
                    });
                    if !ok {
                        v.push(format!(
                            "LOST or changed: acknowledged append to {} at ({rev}, {pos}), event {i}: {g:?}",
                            s.stream
                        ));
                    }
                }
            }
            None if present == 0 => {}
            None if present != s.events.len() => v.push(format!(
                "PARTIAL: {present} of {n} events of an unacknowledged append to {} stored",
                s.stream
            )),
            None => {
                let first = got[0].expect("present");
                let whole = got.iter().zip(&s.events).enumerate().all(|(i, (g, ne))| {
                    g.is_some_and(|e| {
                        e.position == first.position + i as u64
                            && e.revision == first.revision + i as u64
                            && same(e, ne, s)
                    })
                });
                if whole {
                    found.insert(k, (first.revision + n - 1, first.position + n - 1));
                } else {
                    v.push(format!(
                        "an unacknowledged append to {} is not stored as one append",
                        s.stream
                    ));
                }
            }
        }
    }
    // The parts of a multi-append: all or none, one right after the other.
    let mut groups: HashMap<u64, Vec<usize>> = HashMap::new();
    for (k, s) in sent.iter().enumerate() {
        if let Some(g) = s.group {
            groups.entry(g).or_default().push(k);
        }
    }
    for parts in groups.values() {
        let stored: Vec<Option<(u64, u64)>> = parts
            .iter()
            .map(|&k| {
                let s = &sent[k];
                s.acked
                    .or_else(|| found.get(&k).copied())
                    .map(|(_, last)| (last + 1 - s.events.len() as u64, last))
            })
            .collect();
        let present = stored.iter().flatten().count();
        if present != 0 && present != parts.len() {
            v.push(format!(
                "PARTIAL multi-append: {present} of its {} appends are stored",
                parts.len()
            ));
        } else if present != 0 {
            let spans: Vec<(u64, u64)> = stored.into_iter().flatten().collect();
            if spans.windows(2).any(|w| w[1].0 != w[0].1 + 1) {
                v.push(format!(
                    "a multi-append is stored, but not as one unit: {spans:?}"
                ));
            }
        }
    }
    if known != log.len() {
        v.push(format!(
            "the log holds {} events, {known} of them sent by this test",
            log.len()
        ));
    }
    found
}

/// Retries every in-doubt append with `any`: a written one must answer its
/// original result, a missing one is written now. Afterwards all are acked.
async fn retry_in_doubt(
    store: &Store,
    sent: &mut [Sent],
    found: &HashMap<usize, (u64, u64)>,
    v: &mut Vec<String>,
) {
    let mut k = 0;
    while k < sent.len() {
        if sent[k].acked.is_some() {
            k += 1;
            continue;
        }
        // A multi-append's parts are contiguous in the ledger.
        let end = match sent[k].group {
            Some(g) => k + sent[k..].iter().take_while(|s| s.group == Some(g)).count(),
            None => k + 1,
        };
        let appends: Vec<AppendRequest> = sent[k..end]
            .iter()
            .map(|s| AppendRequest {
                stream: s.stream.clone(),
                expected: ExpectedVersion::Any,
                events: s.events.clone(),
            })
            .collect();
        let answers: Result<Vec<(u64, u64)>, String> = if sent[k].group.is_some() {
            match store
                .multi_append(MultiAppendRequest {
                    appends,
                    checks: Vec::new(),
                })
                .await
            {
                Ok(MultiAppendOutcome::Success { results, .. }) => Ok(results
                    .iter()
                    .map(|r| (r.next_expected_revision, r.position))
                    .collect()),
                other => Err(format!("{other:?}")),
            }
        } else {
            match store.append(appends[0].clone()).await {
                Ok(AppendOutcome::Success {
                    next_expected_revision,
                    position,
                }) => Ok(vec![(next_expected_revision, position)]),
                other => Err(format!("{other:?}")),
            }
        };
        match answers {
            Ok(answers) => {
                for (i, answer) in answers.into_iter().enumerate() {
                    if let Some(orig) = found.get(&(k + i)) {
                        if *orig != answer {
                            v.push(format!(
                                "retry of a stored append to {} answered {answer:?}, it is stored at {orig:?}",
                                sent[k + i].stream
                            ));
                        }
                    }
                    sent[k + i].acked = Some(answer);
                }
            }
            Err(e) => v.push(format!(
                "retry of an in-doubt append to {} failed: {e}",
                sent[k].stream
            )),
        }
        k = end;
    }
}

fn open_after_cut(data: &Path, sim: &SimStorage, segment_size: u64, round: u64) -> Store {
    sim.power_on();
    // The lock of the store that lost power is released by its drop, but a
    // sled flush may still be finishing: retry briefly.
    let mut tries = 0;
    loop {
        match Store::open(config(data, sim, segment_size)) {
            Ok(s) => return s,
            Err(OpenError::Locked(_)) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("round {round}: reopen after the power cut failed: {e}"),
        }
    }
}

#[test]
fn acknowledged_appends_survive_power_cuts_in_the_model() {
    let rounds = env_u64("STRATA_MODEL_CUT_ROUNDS", 200);
    let seed = env_u64(
        "STRATA_MODEL_CUT_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    println!("power_cut_model: {rounds} rounds, STRATA_MODEL_CUT_SEED={seed}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = Rng(seed);
    let (mut acked_events, mut in_doubt, mut recovery_cuts, mut index_drops) =
        (0u64, 0u64, 0u64, 0u64);
    let mut dir = tempfile::tempdir().expect("tempdir");
    let mut sim = SimStorage::new(dir.path().join("data"), seed);
    let mut sent: Vec<Sent> = Vec::new();
    let mut segment_size = SEGMENT_SIZES[0];
    for round in 0..rounds {
        if round % 25 == 0 {
            // A fresh data directory now and then keeps the checks cheap.
            dir = tempfile::tempdir().expect("tempdir");
            sim = SimStorage::new(dir.path().join("data"), rng.next());
            sent.clear();
            segment_size = SEGMENT_SIZES[(round / 25) as usize % SEGMENT_SIZES.len()];
        }
        let data = dir.path().join("data");
        let store = Arc::new(open_after_cut(&data, &sim, segment_size, round));
        let log = read_log(&rt, &store);
        let mut heads: HashMap<String, u64> = HashMap::new();
        for e in &log {
            heads.insert(e.stream.to_string(), e.revision);
        }
        let mode = if rng.next().is_multiple_of(2) {
            CutMode::SyncedOnly
        } else {
            CutMode::TornPrefix
        };
        sim.cut_after(rng.range(1, 300), mode);
        let ledger = Arc::new(Mutex::new(Vec::new()));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..APPENDERS {
                let owned = (0..2)
                    .map(|k| {
                        let name = format!("own-{t}-{k}");
                        let head = heads.get(&name).copied();
                        (name, head)
                    })
                    .collect();
                tasks.push(tokio::spawn(appender(
                    store.clone(),
                    Rng(rng.next()),
                    owned,
                    ledger.clone(),
                )));
            }
            for t in tasks {
                t.await.expect("appender");
            }
        });
        assert!(
            sim.is_off(),
            "round {round}: the appenders stopped before the power cut"
        );
        drop(store);
        sent.extend(ledger.lock().expect("ledger").drain(..));

        if rng.range(0, 10) == 0 {
            // Lose power again while recovering.
            sim.power_on();
            sim.cut_after(rng.range(1, 40), CutMode::TornPrefix);
            if let Ok(s) = Store::open(config(&data, &sim, segment_size)) {
                drop(s);
            }
            sim.cut_now(CutMode::TornPrefix);
            recovery_cuts += 1;
        }
        if rng.range(0, 10) == 0 {
            std::fs::remove_dir_all(data.join("index")).expect("remove the index");
            index_drops += 1;
        }

        let store = open_after_cut(&data, &sim, segment_size, round);
        let log = read_log(&rt, &store);
        let mut v = Vec::new();
        let found = check(&log, &sent, &mut v);
        in_doubt += sent.iter().filter(|s| s.acked.is_none()).count() as u64;
        rt.block_on(retry_in_doubt(&store, &mut sent, &found, &mut v));
        let log = read_log(&rt, &store);
        let again = check(&log, &sent, &mut v);
        if !again.is_empty() {
            v.push(format!(
                "{} appends still in doubt after the retries",
                again.len()
            ));
        }
        if !v.is_empty() {
            panic!(
                "round {round} (seed {seed}, {mode:?}): {} violation(s):\n  {}",
                v.len(),
                v.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
            );
        }
        acked_events = acked_events.max(log.len() as u64);
        store.close().expect("close");
        drop(store);
        // The next round starts from a clean shutdown's image.
        sim.cut_now(CutMode::SyncedOnly);
    }
    let stats = sim.stats();
    println!(
        "power_cut_model summary: rounds={rounds} in_doubt={in_doubt} recovery_cuts={recovery_cuts} \
         index_drops={index_drops} last_dir_events={acked_events} last_dir_stats={stats:?} seed={seed}"
    );
}
