//! Consumer groups (`PersistentSubscriptions`, API section 4) through gRPC:
//! competing consumers share the work with every event acknowledged once,
//! never held by two at once and never past a buffer; PINNED keeps a
//! stream on one consumer in order; nacks, timeouts, parking and replay;
//! the group's definition and checkpoint survive a restart.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use strata_proto::v1;
use strata_proto::v1::persistent_read_request::Kind as ReadKind;
use strata_proto::v1::persistent_read_response::Kind as Answer;
use strata_proto::v1::persistent_subscriptions_client::PersistentSubscriptionsClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

type Groups = PersistentSubscriptionsClient<Channel>;

async fn groups_client(server: &TestServer) -> Groups {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    PersistentSubscriptionsClient::new(channel)
}

fn stream_target(s: &str) -> Option<v1::PersistentTarget> {
    Some(v1::PersistentTarget::stream(s))
}

fn all_target() -> Option<v1::PersistentTarget> {
    Some(v1::PersistentTarget::all())
}

fn ms(n: u64) -> Option<prost_types::Duration> {
    Some(v1::duration(Duration::from_millis(n)))
}

async fn create(
    g: &mut Groups,
    target: Option<v1::PersistentTarget>,
    group: &str,
    settings: v1::PersistentSettings,
) -> Result<(), tonic::Status> {
    g.create(v1::CreatePersistentSubscriptionRequest {
        target,
        group: group.into(),
        settings: Some(settings),
    })
    .await
    .map(|_| ())
}

async fn info(
    g: &mut Groups,
    target: Option<v1::PersistentTarget>,
    group: &str,
) -> v1::PersistentSubscriptionInfo {
    g.get_info(v1::GetPersistentSubscriptionInfoRequest {
        target,
        group: group.into(),
    })
    .await
    .expect("info")
    .into_inner()
}

/// The group's info once `done` holds, polling for up to `wait`.
async fn info_when(
    g: &mut Groups,
    target: Option<v1::PersistentTarget>,
    group: &str,
    wait: Duration,
    done: impl Fn(&v1::PersistentSubscriptionInfo) -> bool,
) -> v1::PersistentSubscriptionInfo {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let i = info(g, target.clone(), group).await;
        if done(&i) {
            return i;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {i:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A consumer's call: requests out, answers in.
struct Member {
    requests: mpsc::Sender<v1::PersistentReadRequest>,
    answers: tonic::Streaming<v1::PersistentReadResponse>,
}

impl Member {
    async fn join(
        g: &mut Groups,
        target: Option<v1::PersistentTarget>,
        group: &str,
        buffer_size: u32,
        name: &str,
    ) -> Result<Member, tonic::Status> {
        let (requests, rx) = mpsc::channel(64);
        requests
            .send(v1::PersistentReadRequest {
                kind: Some(ReadKind::Options(v1::PersistentReadOptions {
                    target,
                    group: group.into(),
                    buffer_size,
                    consumer_name: name.into(),
                })),
            })
            .await
            .expect("send options");
        let mut answers = g.read(ReceiverStream::new(rx)).await?.into_inner();
        match answers.message().await?.and_then(|m| m.kind) {
            Some(Answer::Confirmation(_)) => Ok(Member { requests, answers }),
            other => panic!("expected a confirmation, got {other:?}"),
        }
    }

    /// The next event (and its retry count), `None` after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(v1::RecordedEvent, u32)> {
        match tokio::time::timeout(wait, self.answers.message()).await {
            Ok(Ok(Some(v1::PersistentReadResponse {
                kind: Some(Answer::Event(e)),
            }))) => Some((e.event.expect("event"), e.retry_count)),
            Ok(other) => panic!("the call ended: {other:?}"),
            Err(_) => None,
        }
    }

    async fn ack(&self, positions: Vec<u64>) {
        self.requests
            .send(v1::PersistentReadRequest {
                kind: Some(ReadKind::Ack(v1::PersistentAck { positions })),
            })
            .await
            .expect("ack");
    }

    async fn nack(&self, positions: Vec<u64>, action: v1::NackAction) {
        self.requests
            .send(v1::PersistentReadRequest {
                kind: Some(ReadKind::Nack(v1::PersistentNack {
                    positions,
                    action: action as i32,
                    reason: "test".into(),
                })),
            })
            .await
            .expect("nack");
    }
}

async fn fill(c: &mut Client, streams: usize, per_stream: usize) -> Vec<u64> {
    let mut positions = Vec::new();
    for round in 0..per_stream {
        for s in 0..streams {
            let (_, p) = append_ok(
                c,
                &format!("work-{s}"),
                v1::ExpectedVersion::any(),
                vec![event("Job", format!("{s}-{round}").as_bytes())],
            )
            .await;
            positions.push(p);
        }
    }
    positions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_share_every_event_once() {
    let total: usize = std::env::var("STRATA_GROUP_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    // 100 events per append, so that filling is quick.
    for i in 0..total / 100 {
        append_ok(
            &mut c,
            &format!("bulk-{}", i % 10),
            v1::ExpectedVersion::any(),
            events(100, "Job", "j"),
        )
        .await;
    }
    let mut g = groups_client(&server).await;
    create(&mut g, all_target(), "workers", Default::default())
        .await
        .expect("create");
    let held: Arc<Mutex<HashSet<u64>>> = Default::default();
    let acked: Arc<Mutex<HashMap<u64, usize>>> = Default::default();
    let mut tasks = Vec::new();
    for (k, buffer) in [(0, 1u32), (1, 5), (2, 10), (3, 50)] {
        let mut member = Member::join(&mut g, all_target(), "workers", buffer, &format!("w{k}"))
            .await
            .expect("join");
        let (held, acked) = (held.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut unacked = Vec::new();
            loop {
                let Some((e, _)) = member.next(Duration::from_millis(500)).await else {
                    if !unacked.is_empty() {
                        for p in &unacked {
                            held.lock().expect("lock").remove(p);
                            *acked.lock().expect("lock").entry(*p).or_default() += 1;
                        }
                        member.ack(std::mem::take(&mut unacked)).await;
                        continue;
                    }
                    break;
                };
                assert!(
                    held.lock().expect("lock").insert(e.position),
                    "position {} held by two consumers",
                    e.position
                );
                unacked.push(e.position);
                assert!(
                    unacked.len() <= buffer as usize,
                    "consumer {k} holds {} events, its buffer is {buffer}",
                    unacked.len()
                );
                mine.push(e.position);
                // Ack in batches of up to the buffer, as clients do.
                if unacked.len() == buffer as usize || k == 0 {
                    for p in &unacked {
                        held.lock().expect("lock").remove(p);
                        *acked.lock().expect("lock").entry(*p).or_default() += 1;
                    }
                    member.ack(std::mem::take(&mut unacked)).await;
                }
            }
            mine
        }));
    }
    let mut per_consumer = Vec::new();
    for t in tasks {
        per_consumer.push(t.await.expect("consumer").len());
    }
    {
        let acked = acked.lock().expect("lock");
        assert_eq!(acked.len(), total, "every event acknowledged");
        assert!(acked.values().all(|n| *n == 1), "each once");
    }
    assert!(
        per_consumer.iter().all(|n| *n > 0),
        "every consumer got work: {per_consumer:?}"
    );
    let i = info(&mut g, all_target(), "workers").await;
    assert_eq!(i.acked_total, total as u64);
    assert_eq!(i.delivered_total, total as u64);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_keeps_each_stream_on_one_consumer_in_order() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    let mut g = groups_client(&server).await;
    let settings = v1::PersistentSettings {
        consumer_strategy: v1::ConsumerStrategy::Pinned as i32,
        ..Default::default()
    };
    create(&mut g, all_target(), "pinned", settings)
        .await
        .expect("create");
    let mut members = Vec::new();
    for k in 0..3 {
        members.push(
            Member::join(&mut g, all_target(), "pinned", 4, &format!("p{k}"))
                .await
                .expect("join"),
        );
    }
    // The consumers are all there before the events: the streams'
    // consumers do not change while they flow.
    fill(&mut c, 12, 30).await;
    let mut tasks = Vec::new();
    for mut m in members {
        tasks.push(tokio::spawn(async move {
            let mut seen: Vec<(String, u64)> = Vec::new();
            while let Some((e, retry)) = m.next(Duration::from_millis(700)).await {
                assert_eq!(retry, 0);
                seen.push((e.stream.clone(), e.revision));
                m.ack(vec![e.position]).await;
            }
            seen
        }));
    }
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for (k, t) in tasks.into_iter().enumerate() {
        let seen = t.await.expect("consumer");
        total += seen.len();
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (s, r) in &seen {
            assert_eq!(
                *owner.entry(s.clone()).or_insert(k),
                k,
                "{s} on two consumers"
            );
            if let Some(prev) = last.insert(s, *r) {
                assert!(*r > prev, "{s}: revision {r} after {prev}");
            }
        }
    }
    assert_eq!(total, 12 * 30);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_timeouts_parking_and_replay() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    let stream = "jobs";
    for i in 0..10u8 {
        append_ok(
            &mut c,
            stream,
            v1::ExpectedVersion::any(),
            vec![event("Job", &[i])],
        )
        .await;
    }
    let mut g = groups_client(&server).await;
    let settings = v1::PersistentSettings {
        message_timeout: ms(300),
        max_retry_count: Some(2),
        ..Default::default()
    };
    create(&mut g, stream_target(stream), "g", settings.clone())
        .await
        .expect("create");
    assert_eq!(
        create(&mut g, stream_target(stream), "g", settings)
            .await
            .expect_err("twice")
            .code(),
        Code::AlreadyExists
    );
    let mut m = Member::join(&mut g, stream_target(stream), "g", 10, "m")
        .await
        .expect("join");
    let mut got = Vec::new();
    while got.len() < 10 {
        got.push(m.next(Duration::from_secs(5)).await.expect("event"));
    }
    assert_eq!(
        got.iter().map(|(e, _)| e.revision).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let pos = |r: usize| got[r].0.position;
    // 0..4 acked, 4 skipped, 5 parked, 6 retried, 7 held past the timeout.
    m.ack((0..4).map(pos).collect()).await;
    m.nack(vec![pos(4)], v1::NackAction::Skip).await;
    m.nack(vec![pos(5)], v1::NackAction::Park).await;
    m.nack(vec![pos(6)], v1::NackAction::Retry).await;
    m.ack(vec![pos(8), pos(9)]).await;
    let mut again = HashMap::new();
    // 6 comes back at once; 7 after the timeout; both with retry counts.
    while again.len() < 2 {
        let (e, retry) = m.next(Duration::from_secs(5)).await.expect("redelivery");
        assert!(retry >= 1, "{retry}");
        again.insert(e.revision, retry);
    }
    assert!(
        again.contains_key(&6) && again.contains_key(&7),
        "{again:?}"
    );
    // 7 again and again past its timeouts: parked after 2 retries.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let i = info(&mut g, stream_target(stream), "g").await;
        if i.parked_count == 2 {
            assert!(i.timeouts_total >= 2, "{i:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not parked: {i:?}");
        // Keep acking 6 whenever it comes; let 7 time out.
        if let Some((e, _)) = m.next(Duration::from_millis(100)).await {
            if e.revision == 6 {
                m.ack(vec![e.position]).await;
            }
        }
    }
    let i = info(&mut g, stream_target(stream), "g").await;
    // The parked stream is readable.
    let parked = read(
        &mut c,
        stream_read(&i.parked_stream, v1::Direction::Forwards, None, 0),
    )
    .await;
    assert_eq!(parked.len(), 2);
    // Replay: 5 and 7 come back, with their original stream and revision.
    let replaying = g
        .replay_parked(v1::ReplayParkedRequest {
            target: stream_target(stream),
            group: "g".into(),
            stop_at: None,
        })
        .await
        .expect("replay")
        .into_inner()
        .replaying;
    assert_eq!(replaying, 2);
    let mut replayed = Vec::new();
    while replayed.len() < 2 {
        let (e, _) = m.next(Duration::from_secs(5)).await.expect("replayed");
        if e.revision == 6 {
            m.ack(vec![e.position]).await;
            continue;
        }
        assert_eq!(e.stream, stream);
        replayed.push(e.revision);
        m.ack(vec![e.position]).await;
    }
    replayed.sort();
    assert_eq!(replayed, [5, 7]);
    info_when(
        &mut g,
        stream_target(stream),
        "g",
        Duration::from_secs(10),
        |i| i.parked_count == 0 && i.checkpoint_position == Some(pos(9)),
    )
    .await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resumes_from_its_checkpoint_after_a_restart() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    fill(&mut c, 1, 20).await;
    let mut g = groups_client(&server).await;
    let settings = v1::PersistentSettings {
        checkpoint_count: 1,
        ..Default::default()
    };
    create(&mut g, stream_target("work-0"), "resume", settings)
        .await
        .expect("create");
    let mut m = Member::join(&mut g, stream_target("work-0"), "resume", 5, "m")
        .await
        .expect("join");
    let mut acked = Vec::new();
    while acked.len() < 12 {
        let (e, _) = m.next(Duration::from_secs(5)).await.expect("event");
        m.ack(vec![e.position]).await;
        acked.push(e.revision);
    }
    // Let the checkpoint be written.
    let at = info_when(
        &mut g,
        stream_target("work-0"),
        "resume",
        Duration::from_secs(5),
        |i| i.acked_total == 12 && i.checkpoint_position.is_some(),
    )
    .await
    .checkpoint_position;
    drop(m);
    let dir = server.stop_and_keep().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let mut g = groups_client(&server).await;
    let listed = g
        .list(v1::ListPersistentSubscriptionsRequest { target: None })
        .await
        .expect("list")
        .into_inner()
        .groups;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].group, "resume");
    assert!(listed[0].checkpoint_position >= at);
    let mut m = Member::join(&mut g, stream_target("work-0"), "resume", 5, "m")
        .await
        .expect("join");
    // As many events as are left, however slowly the restarted group
    // starts delivering, and then nothing more.
    let mut rest = Vec::new();
    while rest.len() < 8 {
        let Some((e, _)) = m.next(PATIENCE).await else {
            panic!("only {rest:?} after the restart");
        };
        m.ack(vec![e.position]).await;
        rest.push(e.revision);
    }
    if let Some((e, _)) = m.next(Duration::from_millis(700)).await {
        panic!("{e:?} after {rest:?}");
    }
    // Nothing before the checkpoint again (the clean stop wrote what was
    // acknowledged), nothing lost after it.
    assert_eq!(rest, (12..20).collect::<Vec<_>>());
    // Delete: the consumer's call ends, the group is gone.
    g.delete(v1::DeletePersistentSubscriptionRequest {
        target: stream_target("work-0"),
        group: "resume".into(),
    })
    .await
    .expect("delete");
    match m.answers.message().await {
        Err(s) => assert_eq!(s.code(), Code::NotFound),
        other => panic!("{other:?}"),
    }
    let gone = g
        .get_info(v1::GetPersistentSubscriptionInfoRequest {
            target: stream_target("work-0"),
            group: "resume".into(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
    server.stop().await.expect("stop");
}

/// `strata group …` against a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_groups() {
    const STRATA: &str = env!("CARGO_BIN_EXE_strata");
    let server = TestServer::start().await;
    let url = format!("http://{}", server.addr);
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(STRATA)
                    .args(&args)
                    .args(["--url", &url])
                    .output()
                    .expect("run strata")
            })
            .await
            .expect("join")
        }
    };
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let out = run(args(
        "group create billing --stream orders --strategy pinned --message-timeout 5s --json",
    ))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(args("group create billing --stream orders")).await;
    assert!(!out.status.success(), "created twice");
    let out = run(args(
        "group create audit --all --filter-stream order- --from end",
    ))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(args("group list --json")).await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|g| g["group"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["audit", "billing"], "$all first, then streams");
    let out = run(args("group info billing --stream orders --json")).await;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(info["settings"]["strategy"], "pinned");
    assert_eq!(info["settings"]["message_timeout"], "5s");
    assert_eq!(info["status"], "idle");
    let out = run(args("group replay-parked billing --stream orders --json")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(args("group delete billing --stream orders")).await;
    assert!(out.status.success());
    let out = run(args("group info billing --stream orders")).await;
    assert!(!out.status.success(), "deleted");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_or_stopping_consumer_hands_its_events_to_the_others() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    fill(&mut c, 1, 20).await;
    let mut g = groups_client(&server).await;
    create(&mut g, stream_target("work-0"), "g", Default::default())
        .await
        .expect("create");
    // One consumer takes 5 events and dies without acknowledging them.
    let mut crashing = Member::join(&mut g, stream_target("work-0"), "g", 5, "crash")
        .await
        .expect("join");
    let mut held = Vec::new();
    while held.len() < 5 {
        held.push(
            crashing
                .next(Duration::from_secs(5))
                .await
                .expect("event")
                .0
                .revision,
        );
    }
    drop(crashing);
    // Once the server has seen the call end, what it held is waiting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !info(&mut g, stream_target("work-0"), "g")
        .await
        .consumers
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer did not leave"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut other = Member::join(&mut g, stream_target("work-0"), "g", 20, "other")
        .await
        .expect("join");
    let mut got = HashMap::new();
    while got.len() < 20 {
        let (e, retry) = other.next(Duration::from_secs(5)).await.expect("event");
        if e.revision == 7 && retry == 0 {
            // STOP: the call ends, and the event comes back uncounted.
            other.nack(vec![e.position], v1::NackAction::Stop).await;
            // The server ends the call (after what it had sent already,
            // which goes back to the group too).
            loop {
                let m = tokio::time::timeout(Duration::from_secs(5), other.answers.message())
                    .await
                    .expect("the call ends");
                match m {
                    Ok(None) => break,
                    Ok(Some(_)) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            break;
        }
        other.ack(vec![e.position]).await;
        got.insert(e.revision, retry);
    }
    for r in &held {
        assert_eq!(
            got.get(r),
            Some(&1),
            "revision {r} redelivered as a retry: {got:?}"
        );
    }
    let mut last = Member::join(&mut g, stream_target("work-0"), "g", 20, "last")
        .await
        .expect("join");
    let mut rest = HashMap::new();
    while let Some((e, retry)) = last.next(Duration::from_millis(700)).await {
        last.ack(vec![e.position]).await;
        rest.insert(e.revision, retry);
    }
    assert_eq!(
        rest.get(&7),
        Some(&0),
        "a STOP does not count a retry: {rest:?}"
    );
    let mut all: Vec<u64> = got.keys().chain(rest.keys()).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_replay_of_parked_events_goes_with_live_delivery() {
    let parked_n: usize = std::env::var("STRATA_GROUP_PARKED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let server = TestServer::start_with(|a| {
        a.durability = strata_server::config::Durability::UnsafeNoSync;
    })
    .await;
    let mut c = server.connect().await;
    for _ in 0..parked_n / 100 {
        append_ok(
            &mut c,
            "mass",
            v1::ExpectedVersion::any(),
            events(100, "Job", "j"),
        )
        .await;
    }
    let mut g = groups_client(&server).await;
    create(&mut g, stream_target("mass"), "g", Default::default())
        .await
        .expect("create");
    let mut m = Member::join(&mut g, stream_target("mass"), "g", 500, "m")
        .await
        .expect("join");
    // Park everything, in nacks of up to 500.
    let mut n = 0;
    while n < parked_n {
        let mut batch = Vec::new();
        while let Some((e, _)) = m.next(Duration::from_millis(300)).await {
            batch.push(e.position);
            if batch.len() == 500 {
                break;
            }
        }
        n += batch.len();
        m.nack(batch, v1::NackAction::Park).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while info(&mut g, stream_target("mass"), "g").await.parked_count < parked_n as u64 {
        assert!(tokio::time::Instant::now() < deadline, "not all parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replaying = g
        .replay_parked(v1::ReplayParkedRequest {
            target: stream_target("mass"),
            group: "g".into(),
            stop_at: None,
        })
        .await
        .expect("replay")
        .into_inner()
        .replaying;
    assert_eq!(replaying, parked_n as u64);
    // New events appended during the replay are delivered too.
    append_ok(
        &mut c,
        "mass",
        v1::ExpectedVersion::any(),
        events(10, "New", "n"),
    )
    .await;
    let mut replayed = HashSet::new();
    let mut new = 0;
    while replayed.len() < parked_n || new < 10 {
        let (e, _) = m.next(Duration::from_secs(10)).await.expect("event");
        if e.r#type == "New" {
            new += 1;
        } else {
            replayed.insert(e.position);
        }
        m.ack(vec![e.position]).await;
    }
    info_when(
        &mut g,
        stream_target("mass"),
        "g",
        Duration::from_secs(10),
        |i| i.parked_count == 0,
    )
    .await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_limits_and_updates() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    fill(&mut c, 1, 30).await;
    let mut g = groups_client(&server).await;
    let settings = v1::PersistentSettings {
        consumer_strategy: v1::ConsumerStrategy::DispatchToSingle as i32,
        max_subscriber_count: 2,
        ..Default::default()
    };
    create(&mut g, stream_target("work-0"), "s", settings.clone())
        .await
        .expect("create");
    // Bad requests change nothing.
    for (target, group, bad) in [
        (stream_target("work-0"), "", settings.clone()),
        (None, "x", settings.clone()),
        (
            stream_target("work-0"),
            "x",
            v1::PersistentSettings {
                from: Some(v1::PersistentFrom {
                    kind: Some(v1::persistent_from::Kind::Position(3)),
                }),
                ..Default::default()
            },
        ),
        (
            stream_target("work-0"),
            "x",
            v1::PersistentSettings {
                message_timeout: ms(0),
                ..Default::default()
            },
        ),
    ] {
        let e = create(&mut g, target, group, bad)
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    let mut first = Member::join(&mut g, stream_target("work-0"), "s", 5, "a")
        .await
        .expect("join");
    let mut second = Member::join(&mut g, stream_target("work-0"), "s", 5, "b")
        .await
        .expect("join");
    let third = Member::join(&mut g, stream_target("work-0"), "s", 5, "c").await;
    assert_eq!(
        third.err().map(|e| e.code()),
        Some(Code::FailedPrecondition),
        "over max_subscriber_count"
    );
    // DISPATCH_TO_SINGLE: the first fills up before the second gets any.
    let mut a = Vec::new();
    while a.len() < 5 {
        a.push(first.next(Duration::from_secs(5)).await.expect("event").0);
    }
    assert_eq!(
        a.iter().map(|e| e.revision).collect::<Vec<_>>(),
        (0..5).collect::<Vec<_>>()
    );
    let (b0, _) = second.next(Duration::from_secs(5)).await.expect("overflow");
    assert_eq!(b0.revision, 5);
    // An update reaches the running group: a short timeout takes back
    // what the first consumer holds.
    g.update(v1::UpdatePersistentSubscriptionRequest {
        target: stream_target("work-0"),
        group: "s".into(),
        settings: Some(v1::PersistentSettings {
            message_timeout: ms(200),
            ..settings
        }),
    })
    .await
    .expect("update");
    let i = info(&mut g, stream_target("work-0"), "s").await;
    assert_eq!(
        i.settings.and_then(|s| s.message_timeout),
        ms(200),
        "the new settings"
    );
    info_when(
        &mut g,
        stream_target("work-0"),
        "s",
        Duration::from_secs(5),
        |i| i.timeouts_total >= 5,
    )
    .await;
    let missing = g
        .update(v1::UpdatePersistentSubscriptionRequest {
            target: stream_target("work-0"),
            group: "nope".into(),
            settings: None,
        })
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);
    drop((first, second));
    server.stop().await.expect("stop");
}

/// A filter that takes `$`-streams does not feed a group its own
/// checkpoints (each delivery would cause the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_never_consumes_its_own_checkpoints() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    let mut g = groups_client(&server).await;
    let settings = v1::PersistentSettings {
        filter: Some(filter(&["$checkpoint-", "feed"], &[])),
        checkpoint_count: 1,
        checkpoint_after: ms(10),
        ..Default::default()
    };
    create(&mut g, all_target(), "self", settings)
        .await
        .expect("create");
    let mut m = Member::join(&mut g, all_target(), "self", 10, "m")
        .await
        .expect("join");
    append_ok(
        &mut c,
        "feed",
        v1::ExpectedVersion::any(),
        vec![event("T", b"1")],
    )
    .await;
    let mut delivered = Vec::new();
    while let Some((e, _)) = m.next(Duration::from_millis(500)).await {
        delivered.push(e.stream.clone());
        m.ack(vec![e.position]).await;
        assert!(
            delivered.len() < 5,
            "the group feeds on itself: {delivered:?}"
        );
    }
    assert_eq!(delivered, ["feed"]);
    server.stop().await.expect("stop");
}

/// PINNED: a stream stays with its consumer while that consumer is
/// connected, even when another joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_streams_stay_with_their_consumer_when_another_joins() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    let mut g = groups_client(&server).await;
    let settings = v1::PersistentSettings {
        consumer_strategy: v1::ConsumerStrategy::Pinned as i32,
        ..Default::default()
    };
    create(&mut g, all_target(), "pin", settings)
        .await
        .expect("create");
    let mut a = Member::join(&mut g, all_target(), "pin", 100, "a")
        .await
        .expect("join");
    fill(&mut c, 6, 2).await;
    let mut first = Vec::new();
    while let Some((e, _)) = a.next(Duration::from_millis(500)).await {
        first.push(e);
    }
    assert_eq!(first.len(), 12, "one consumer gets every stream");
    let mut b = Member::join(&mut g, all_target(), "pin", 100, "b")
        .await
        .expect("join");
    fill(&mut c, 6, 2).await;
    assert!(
        b.next(Duration::from_millis(500)).await.is_none(),
        "a stream moved to the consumer that joined"
    );
    let mut second = Vec::new();
    while let Some((e, _)) = a.next(Duration::from_millis(500)).await {
        second.push(e.revision);
        a.ack(vec![e.position]).await;
    }
    assert_eq!(second.len(), 12);
    a.ack(first.iter().map(|e| e.position).collect()).await;
    server.stop().await.expect("stop");
}
