//! The consumer-group round of the crash tiers: a group on `$all` (filtered
//! to the round's streams) is fed by a writer and drained by a consumer
//! that acknowledges everything, while the server is killed at random
//! moments. After each restart the group must exist, nothing at or before
//! the last checkpoint the server reported (and so had made durable) may
//! be delivered again, and, at the end, every acknowledged append must
//! have been delivered and acknowledged at some point.

use super::*;
use strata_proto::v1::persistent_read_request::Kind as ReadKind;
use strata_proto::v1::persistent_read_response::Kind as Answer;
use strata_proto::v1::persistent_subscriptions_client::PersistentSubscriptionsClient;

type Groups = PersistentSubscriptionsClient<Channel>;

fn target() -> Option<v1::PersistentTarget> {
    Some(v1::PersistentTarget::all())
}

async fn groups(addr: SocketAddr) -> Groups {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    PersistentSubscriptionsClient::new(channel)
}

async fn checkpoint(g: &mut Groups) -> Result<Option<u64>, tonic::Status> {
    let i = g
        .get_info(v1::GetPersistentSubscriptionInfoRequest {
            target: target(),
            group: "crash".into(),
        })
        .await?
        .into_inner();
    Ok(i.checkpoint_position)
}

/// Joins the group and acknowledges everything until `stop` or the call
/// breaks; returns what it was given. Panics on a delivery at or before
/// `floor` (a durable checkpoint).
async fn consume(mut g: Groups, floor: Option<u64>, stop: Arc<AtomicBool>) -> Vec<u64> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let options = v1::PersistentReadRequest {
        kind: Some(ReadKind::Options(v1::PersistentReadOptions {
            target: target(),
            group: "crash".into(),
            buffer_size: 50,
            consumer_name: "crash".into(),
        })),
    };
    let _ = tx.send(options).await;
    let outgoing = tokio_stream::wrappers::ReceiverStream::new(rx);
    let Ok(call) = g.read(outgoing).await else {
        return Vec::new();
    };
    let mut answers = call.into_inner();
    let mut got = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let m = match tokio::time::timeout(Duration::from_millis(100), answers.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(_) => break,
            Err(_) => continue,
        };
        let Some(Answer::Event(e)) = m.kind else {
            continue;
        };
        let p = e.event.expect("event").position;
        assert!(
            floor.is_none_or(|f| p > f),
            "position {p} delivered again after the checkpoint {floor:?} was made durable"
        );
        got.push(p);
        let ack = v1::PersistentReadRequest {
            kind: Some(ReadKind::Ack(v1::PersistentAck { positions: vec![p] })),
        };
        if tx.send(ack).await.is_err() {
            break;
        }
    }
    got
}

/// Runs the rounds on one data directory; panics on the first violation.
pub async fn run(tier: Tier, disk: &mut dyn Disk) {
    let name = tier.name;
    let rounds = env_u64(&format!("{}_GROUP_ROUNDS", tier.env), tier.default_rounds).max(2);
    let seed = tier.seed();
    println!("{name} groups: {rounds} rounds, {}_SEED={seed}", tier.env);
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = disk.fresh(tmp.path());
    let log = tmp.path().join("strata.log");
    let mut appended: Vec<u64> = Vec::new();
    let mut delivered: HashSet<u64> = HashSet::new();
    let mut floor: Option<u64> = None;
    let mut redelivered_after_restart = 0usize;
    for round in 0..rounds {
        let (mut server, client) = start_server(&data, &log, 1 << 20).await;
        let mut g = groups(server.addr).await;
        if round == 0 {
            g.create(v1::CreatePersistentSubscriptionRequest {
                target: target(),
                group: "crash".into(),
                settings: Some(v1::PersistentSettings {
                    filter: Some(v1::Filter {
                        stream_prefix: vec!["grp-".into()],
                        event_type_prefix: Vec::new(),
                    }),
                    checkpoint_count: 20,
                    checkpoint_after: Some(v1::duration(Duration::from_millis(50))),
                    ..Default::default()
                }),
            })
            .await
            .expect("create the group");
        }
        let after_restart = match checkpoint(&mut g).await {
            Ok(c) => c,
            Err(e) => panic!(
                "{name} groups: round {round}: the group is gone after a restart: {e}\n{}",
                log_tail(&log)
            ),
        };
        assert!(
            after_restart >= floor,
            "{name} groups: round {round}: checkpoint {after_restart:?} is behind the durable {floor:?}"
        );
        let last = round + 1 == rounds;
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = tokio::spawn(consume(g.clone(), floor, stop.clone()));
        let writer = {
            let (stop, mut c) = (stop.clone(), client.clone());
            tokio::spawn(async move {
                let mut written = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) && (!last || i < 20) {
                    let req = v1::AppendRequest {
                        stream: format!("grp-{}", i % 4),
                        expected: Some(v1::ExpectedVersion::any()),
                        events: (0..5)
                            .map(|k| v1::EventData {
                                id: Some(v1::Uuid::from_bytes(*uuid::Uuid::new_v4().as_bytes())),
                                r#type: "Job".into(),
                                data: format!("{i}-{k}").into_bytes().into(),
                                metadata: Vec::new().into(),
                                content_type: None,
                            })
                            .collect(),
                    };
                    match c.append(req).await.map(|r| r.into_inner().result) {
                        Ok(Some(AppendResult::Success(s))) => {
                            written.extend(s.position - 4..=s.position)
                        }
                        _ => break,
                    }
                    i += 1;
                }
                written
            })
        };
        // Watch the checkpoint: what it reports is durable.
        let watcher = {
            let (stop, mut g) = (stop.clone(), g.clone());
            tokio::spawn(async move {
                let mut seen = None;
                while !stop.load(Ordering::Acquire) {
                    match checkpoint(&mut g).await {
                        Ok(c) => seen = seen.max(c),
                        Err(_) => break,
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                seen
            })
        };
        if last {
            // Drain: wait until every append is delivered, then stop cleanly.
            let mut w = writer.await.expect("writer");
            appended.append(&mut w);
            let deadline = Instant::now() + PATIENCE;
            let want = *appended.iter().max().expect("appended");
            while checkpoint(&mut g).await.expect("info") < Some(want) {
                assert!(
                    Instant::now() < deadline,
                    "{name} groups: the group did not drain"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, Ordering::Release);
            delivered.extend(consumer.await.expect("consumer"));
            let _ = watcher.await;
            stop_gracefully(&mut server, &log);
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(50, 400))).await;
        kill9(&mut server);
        stop.store(true, Ordering::Release);
        let mut w = writer.await.expect("writer");
        appended.append(&mut w);
        let got = consumer.await.expect("consumer");
        redelivered_after_restart += got.iter().filter(|p| delivered.contains(p)).count();
        delivered.extend(got);
        floor = floor.max(watcher.await.expect("watcher"));
        disk.after_kill(tmp.path());
    }
    let lost: Vec<u64> = appended
        .iter()
        .filter(|p| !delivered.contains(p))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "{name} groups: {} acknowledged events never delivered, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    disk.retire(tmp.path());
    println!(
        "{name} groups summary: {rounds} rounds, {} acknowledged events, all delivered; {redelivered_after_restart} delivered again after a restart (all after the durable checkpoint); {}",
        appended.len(),
        disk.summary()
    );
}
