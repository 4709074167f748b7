//! Soak of a consumer group (bounded in time): writers append all along
//! while consumers come and go (some crash holding events, some are slow),
//! ack, nack with every action, or hold events past the message timeout.
//! It fails if the group's checkpoint stops moving for more than a few
//! seconds while events wait, and, at the end, if any written event was
//! neither acknowledged, skipped nor parked.
//!
//! `STRATA_SOAK_GROUP_SECS` (default 8) sets the length; the figures are
//! printed at the end.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use strata_proto::v1;
use strata_proto::v1::persistent_read_request::Kind as ReadKind;
use strata_proto::v1::persistent_read_response::Kind as Answer;
use strata_proto::v1::persistent_subscriptions_client::PersistentSubscriptionsClient;
use tokio::sync::mpsc;
use tonic::transport::Channel;

type Groups = PersistentSubscriptionsClient<Channel>;

/// Largest pause of the checkpoint while events wait.
const MAX_STALL: Duration = Duration::from_secs(4);

fn target() -> Option<v1::PersistentTarget> {
    Some(v1::PersistentTarget::all())
}

fn ms(n: u64) -> Option<prost_types::Duration> {
    Some(v1::duration(Duration::from_millis(n)))
}

/// A tiny deterministic generator per task.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default)]
struct Done {
    /// Positions acknowledged or skipped.
    resolved: Mutex<HashSet<u64>>,
    acks: AtomicU64,
    nacks: AtomicU64,
    held: AtomicU64,
    crashes: AtomicU64,
}

fn request(kind: ReadKind) -> v1::PersistentReadRequest {
    v1::PersistentReadRequest { kind: Some(kind) }
}

/// How a consumer behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Acks, nacks of every kind, holds, slowness, crashes.
    Churn,
    /// Acks everything.
    Polite,
    /// Stays the whole run and never lets go of a third of what it gets:
    /// only the message timeout takes those back.
    Hoarder,
}

/// One consumer's life: join, handle events for `life`, then leave
/// (cleanly, or as a crash that holds events).
async fn consumer(mut g: Groups, seed: u64, life: Duration, done: Arc<Done>, mode: Mode) {
    let polite = mode == Mode::Polite;
    let mut rng = Rng(seed);
    let (tx, rx) = mpsc::channel(64);
    let buffer = 1 + rng.below(20) as u32;
    let slow = !polite && rng.below(4) == 0;
    let _ = tx
        .send(request(ReadKind::Options(v1::PersistentReadOptions {
            target: target(),
            group: "soak".into(),
            buffer_size: buffer,
            consumer_name: format!("c{seed}"),
        })))
        .await;
    let outgoing = tokio_stream::wrappers::ReceiverStream::new(rx);
    let Ok(call) = g.read(outgoing).await else {
        return;
    };
    let mut answers = call.into_inner();
    let end = Instant::now() + life;
    while Instant::now() < end {
        let m = match tokio::time::timeout(Duration::from_millis(100), answers.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(_) => return,
            Err(_) => continue,
        };
        let Some(Answer::Event(e)) = m.kind else {
            continue;
        };
        let p = e.event.expect("event").position;
        if slow {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let roll = match mode {
            Mode::Polite => 0,
            Mode::Churn => rng.below(100),
            Mode::Hoarder if rng.below(3) == 0 => 99,
            Mode::Hoarder => 0,
        };
        let kind = match roll {
            0..=79 => {
                done.acks.fetch_add(1, Ordering::Relaxed);
                done.resolved.lock().expect("lock").insert(p);
                ReadKind::Ack(v1::PersistentAck { positions: vec![p] })
            }
            80..=86 => nack(&done, p, v1::NackAction::Retry),
            87..=90 => {
                done.resolved.lock().expect("lock").insert(p);
                nack(&done, p, v1::NackAction::Skip)
            }
            91..=93 => nack(&done, p, v1::NackAction::Park),
            _ => {
                // Held: it times out and comes back.
                done.held.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if tx.send(request(kind)).await.is_err() {
            return;
        }
    }
    if mode == Mode::Churn && rng.below(2) == 0 {
        done.crashes.fetch_add(1, Ordering::Relaxed);
    }
    // Either way the call ends here with events possibly held.
}

fn nack(done: &Done, p: u64, action: v1::NackAction) -> ReadKind {
    done.nacks.fetch_add(1, Ordering::Relaxed);
    ReadKind::Nack(v1::PersistentNack {
        positions: vec![p],
        action: action as i32,
        reason: "soak".into(),
    })
}

async fn group_info(g: &mut Groups) -> v1::PersistentSubscriptionInfo {
    g.get_info(v1::GetPersistentSubscriptionInfoRequest {
        target: target(),
        group: "soak".into(),
    })
    .await
    .expect("info")
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_under_churn_never_stalls_and_loses_nothing() {
    let secs: u64 = std::env::var("STRATA_SOAK_GROUP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let server = TestServer::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut g = PersistentSubscriptionsClient::new(channel);
    g.create(v1::CreatePersistentSubscriptionRequest {
        target: target(),
        group: "soak".into(),
        settings: Some(v1::PersistentSettings {
            filter: Some(filter(&["soak-"], &[])),
            message_timeout: ms(300),
            max_retry_count: Some(3),
            checkpoint_count: 50,
            checkpoint_after: ms(100),
            ..Default::default()
        }),
    })
    .await
    .expect("create");

    let stop = Arc::new(AtomicBool::new(false));
    let written: Arc<Mutex<Vec<u64>>> = Default::default();
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let mut c = server.connect().await;
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let (_, last) = append_ok(
                    &mut c,
                    &format!("soak-{}", i % 8),
                    v1::ExpectedVersion::any(),
                    events(10, "Work", "w"),
                )
                .await;
                written.lock().expect("lock").extend(last - 9..=last);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let done = Arc::new(Done::default());
    let churn = {
        let (stop, done, g) = (stop.clone(), done.clone(), g.clone());
        tokio::spawn(async move {
            let mut rng = Rng(0x5EED_1234_ABCD);
            let mut seed = 1;
            let mut live = Vec::new();
            while !stop.load(Ordering::Acquire) {
                live.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
                while live.len() < 1 + rng.below(5) as usize {
                    let life = Duration::from_millis(200 + rng.below(1800));
                    seed += 1;
                    live.push(tokio::spawn(consumer(
                        g.clone(),
                        seed,
                        life,
                        done.clone(),
                        Mode::Churn,
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for t in live {
                let _ = t.await;
            }
        })
    };

    let hoarder = tokio::spawn(consumer(
        g.clone(),
        3,
        Duration::from_secs(secs),
        done.clone(),
        Mode::Hoarder,
    ));
    // Watch the checkpoint while events wait.
    let started = Instant::now();
    let mut last = (None, Instant::now());
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let i = group_info(&mut g).await;
        if i.checkpoint_position != last.0 || i.lag == 0 {
            last = (i.checkpoint_position, Instant::now());
        }
        let stalled = last.1.elapsed();
        worst = worst.max(stalled);
        assert!(
            stalled < MAX_STALL,
            "the checkpoint has not moved for {stalled:?} with {} events waiting: {i:?}",
            i.lag
        );
    }
    stop.store(true, Ordering::Release);
    writer.await.expect("writer");
    churn.await.expect("churn");
    hoarder.await.expect("hoarder");

    // One polite consumer drains what is left (retries and timeouts
    // included) until every written event is done.
    let last_written = *written.lock().expect("lock").last().expect("written");
    let drain = tokio::spawn(consumer(
        g.clone(),
        7,
        Duration::from_secs(30),
        done.clone(),
        Mode::Polite,
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let i = group_info(&mut g).await;
        if i.checkpoint_position >= Some(last_written) && i.parked_count == i.parked_total {
            break i;
        }
        assert!(Instant::now() < deadline, "not drained: {i:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drain.abort();
    // Every written event was acknowledged, skipped or parked.
    let mut c = server.connect().await;
    let parked: HashSet<u64> = read(
        &mut c,
        stream_read(&info.parked_stream, v1::Direction::Forwards, None, 0),
    )
    .await
    .iter()
    .map(|e| {
        let v: serde_json::Value = serde_json::from_slice(&e.data).expect("json");
        v["position"].as_u64().expect("position")
    })
    .collect();
    {
        let resolved = done.resolved.lock().expect("lock");
        let written = written.lock().expect("lock");
        let lost: Vec<u64> = written
            .iter()
            .filter(|p| !resolved.contains(p) && !parked.contains(p))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "{} events lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        println!(
            "soak_groups: {secs} s, {} events written, {} acks, {} nacks, {} held past the timeout, {} consumers crashed; server: delivered {}, acked {}, nacked {}, timeouts {}, parked {}; longest checkpoint pause {worst:?}",
            written.len(),
            done.acks.load(Ordering::Relaxed),
            done.nacks.load(Ordering::Relaxed),
            done.held.load(Ordering::Relaxed),
            done.crashes.load(Ordering::Relaxed),
            info.delivered_total,
            info.acked_total,
            info.nacked_total,
            info.timeouts_total,
            info.parked_total,
        );
    }
    server.stop().await.expect("stop");
}
