//! KurrentDB compatibility: `event_store.client.persistent_subscriptions`
//! over Strata's consumer groups, through the generated KurrentDB clients
//! against the in-process server (and the native service, which sees the
//! same groups).

mod common;
mod kurrent_support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestServer, PATIENCE};
use kurrent_support::*;
use strata_proto::kurrentdb::persistent::create_req::{
    self, all_options::filter_options, all_options::FilterOption as CreateFilter,
    stream_options::RevisionOption as CreateRevision,
};
use strata_proto::kurrentdb::persistent::persistent_subscriptions_client::PersistentSubscriptionsClient;
use strata_proto::kurrentdb::persistent::read_req::{self, nack::Action};
use strata_proto::kurrentdb::persistent::read_resp::{read_event, Content as PContent, ReadEvent};
use strata_proto::kurrentdb::persistent::{
    delete_req, get_info_req, list_req, replay_parked_req, update_req, CreateReq, DeleteReq,
    GetInfoReq, ListReq, ReadReq as PReadReq, ReadResp as PReadResp, ReplayParkedReq,
    SubscriptionInfo, UpdateReq,
};
use strata_proto::kurrentdb::shared::Uuid;
use strata_proto::kurrentdb::streams::append_req::options::ExpectedStreamRevision;
use strata_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

type Persistent = PersistentSubscriptionsClient<common::AuthChannel>;

async fn persistent(server: &TestServer) -> Persistent {
    PersistentSubscriptionsClient::new(
        common::channel_with(server.addr, common::AuthHeader::none()).await,
    )
}

fn settings(retries: i32, timeout_ms: i32) -> create_req::Settings {
    create_req::Settings {
        max_retry_count: retries,
        message_timeout: Some(create_req::settings::MessageTimeout::MessageTimeoutMs(
            timeout_ms,
        )),
        checkpoint_after: Some(create_req::settings::CheckpointAfter::CheckpointAfterMs(
            100,
        )),
        max_checkpoint_count: 1,
        min_checkpoint_count: 1,
        consumer_strategy: "RoundRobin".into(),
        ..Default::default()
    }
}

fn create_stream(stream: &str, group: &str) -> CreateReq {
    CreateReq {
        options: Some(create_req::Options {
            stream_option: Some(create_req::options::StreamOption::Stream(
                create_req::StreamOptions {
                    stream_identifier: sid(stream),
                    revision_option: Some(CreateRevision::Start(E)),
                },
            )),
            stream_identifier: None,
            group_name: group.into(),
            settings: Some(settings(1, 30_000)),
        }),
    }
}

fn create_all(group: &str, filter: Option<filter_options::Filter>) -> CreateReq {
    CreateReq {
        options: Some(create_req::Options {
            stream_option: Some(create_req::options::StreamOption::All(
                create_req::AllOptions {
                    all_option: Some(create_req::all_options::AllOption::Start(E)),
                    filter_option: Some(match filter {
                        Some(f) => CreateFilter::Filter(create_req::all_options::FilterOptions {
                            filter: Some(f),
                            window: Some(filter_options::Window::Count(E)),
                            checkpoint_interval_multiplier: 1,
                        }),
                        None => CreateFilter::NoFilter(E),
                    }),
                },
            )),
            stream_identifier: None,
            group_name: group.into(),
            settings: Some(settings(1, 30_000)),
        }),
    }
}

/// A consumer: its request sender and its responses, confirmed.
struct Consumer {
    tx: mpsc::Sender<PReadReq>,
    rx: Streaming<PReadResp>,
}

fn read_options(stream: Option<&str>, group: &str, buffer: i32) -> PReadReq {
    use read_req::options::StreamOption;
    PReadReq {
        content: Some(read_req::Content::Options(read_req::Options {
            stream_option: Some(match stream {
                Some(s) => StreamOption::StreamIdentifier(sid(s).expect("sid")),
                None => StreamOption::All(E),
            }),
            group_name: group.into(),
            buffer_size: buffer,
            uuid_option: Some(read_req::options::UuidOption {
                content: Some(read_req::options::uuid_option::Content::String(E)),
            }),
        })),
    }
}

impl Consumer {
    async fn join(client: &mut Persistent, stream: Option<&str>, group: &str, buffer: i32) -> Self {
        let (tx, requests) = mpsc::channel(16);
        tx.send(read_options(stream, group, buffer))
            .await
            .expect("send options");
        let mut rx = client
            .read(ReceiverStream::new(requests))
            .await
            .expect("Read")
            .into_inner();
        match next(&mut rx).await {
            PContent::SubscriptionConfirmation(c) => assert!(!c.subscription_id.is_empty()),
            other => panic!("confirmation first, not {other:?}"),
        }
        Consumer { tx, rx }
    }

    async fn event(&mut self) -> ReadEvent {
        match next(&mut self.rx).await {
            PContent::Event(e) => e,
            other => panic!("an event, not {other:?}"),
        }
    }

    /// Nothing arrives for `wait`.
    async fn quiet(&mut self, wait: Duration) {
        if let Ok(m) = tokio::time::timeout(wait, self.rx.message()).await {
            panic!("expected nothing, got {m:?}");
        }
    }

    async fn ack(&self, ids: Vec<Uuid>) {
        let ack = read_req::Ack {
            id: Vec::new(),
            ids,
        };
        self.tx
            .send(PReadReq {
                content: Some(read_req::Content::Ack(ack)),
            })
            .await
            .expect("send ack");
    }

    async fn nack(&self, ids: Vec<Uuid>, action: Action) {
        let nack = read_req::Nack {
            id: Vec::new(),
            ids,
            action: action as i32,
            reason: "test".into(),
        };
        self.tx
            .send(PReadReq {
                content: Some(read_req::Content::Nack(nack)),
            })
            .await
            .expect("send nack");
    }
}

async fn next(rx: &mut Streaming<PReadResp>) -> PContent {
    tokio::time::timeout(PATIENCE, rx.message())
        .await
        .expect("persistent read stalled")
        .expect("persistent read failed")
        .expect("persistent read ended")
        .content
        .expect("ReadResp.content")
}

fn recorded(e: &ReadEvent) -> &read_event::RecordedEvent {
    e.event.as_ref().expect("ReadEvent.event")
}

fn id_of(e: &ReadEvent) -> Uuid {
    recorded(e).id.clone().expect("event id")
}

fn data_of(e: &ReadEvent) -> String {
    String::from_utf8(recorded(e).data.to_vec()).expect("utf-8")
}

fn retries_of(e: &ReadEvent) -> i32 {
    match e.count {
        Some(read_event::Count::RetryCount(n)) => n,
        other => panic!("no retry count: {other:?}"),
    }
}

async fn info(client: &mut Persistent, stream: Option<&str>, group: &str) -> SubscriptionInfo {
    use get_info_req::options::StreamOption;
    let req = GetInfoReq {
        options: Some(get_info_req::Options {
            stream_option: Some(match stream {
                Some(s) => StreamOption::StreamIdentifier(sid(s).expect("sid")),
                None => StreamOption::All(E),
            }),
            group_name: group.into(),
        }),
    };
    client
        .get_info(req)
        .await
        .expect("GetInfo")
        .into_inner()
        .subscription_info
        .expect("subscription_info")
}

/// Waits until the group's info satisfies `ok`.
async fn info_until(
    client: &mut Persistent,
    stream: Option<&str>,
    group: &str,
    ok: impl Fn(&SubscriptionInfo) -> bool,
) -> SubscriptionInfo {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let i = info(client, stream, group).await;
        if ok(&i) {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group info never got there: {i:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn replay(stream: &str, group: &str) -> ReplayParkedReq {
    ReplayParkedReq {
        options: Some(replay_parked_req::Options {
            group_name: group.into(),
            stream_option: Some(replay_parked_req::options::StreamOption::StreamIdentifier(
                sid(stream).expect("sid"),
            )),
            stop_at_option: Some(replay_parked_req::options::StopAtOption::NoLimit(E)),
        }),
    }
}

#[tokio::test]
async fn a_stream_group_shares_work_acks_nacks_parks_and_replays() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let mut p = persistent(&server).await;
    let stream = "ps-orders";
    append(
        &mut k,
        stream,
        ExpectedStreamRevision::NoStream(E),
        events(4, "e"),
    )
    .await;
    p.create(create_stream(stream, "g")).await.expect("Create");
    let again = p
        .create(create_stream(stream, "g"))
        .await
        .expect_err("a second Create");
    assert_eq!(again.code(), Code::AlreadyExists);
    assert_eq!(
        trailer(&again, "exception").as_deref(),
        Some("persistent-subscription-exists")
    );

    // Two consumers with room for one event each share the four events.
    let mut a = Consumer::join(&mut p, Some(stream), "g", 1).await;
    let mut b = Consumer::join(&mut p, Some(stream), "g", 1).await;
    let mut seen = BTreeSet::new();
    let first_a = a.event().await;
    let first_b = b.event().await;
    assert_eq!(retries_of(&first_a), 0);
    assert_ne!(data_of(&first_a), data_of(&first_b), "work is shared");
    seen.insert(data_of(&first_a));
    seen.insert(data_of(&first_b));
    // Full buffers: nothing more until they acknowledge.
    a.quiet(Duration::from_millis(200)).await;
    a.ack(vec![id_of(&first_a)]).await;
    b.ack(vec![id_of(&first_b)]).await;
    let second_a = a.event().await;
    let second_b = b.event().await;
    seen.insert(data_of(&second_a));
    seen.insert(data_of(&second_b));
    assert_eq!(
        seen,
        BTreeSet::from(["e-0", "e-1", "e-2", "e-3"].map(String::from))
    );

    // A retry comes back with its count; a park goes to the parked stream.
    a.nack(vec![id_of(&second_a)], Action::Retry).await;
    let retried = tokio::select! {
        e = a.event() => e,
        e = b.event() => e,
    };
    assert_eq!(data_of(&retried), data_of(&second_a));
    assert_eq!(retries_of(&retried), 1);
    b.nack(vec![id_of(&second_b)], Action::Park).await;
    let parked_data = data_of(&second_b);
    // Whoever holds the retried event acknowledges it.
    a.ack(vec![id_of(&retried)]).await;
    b.ack(vec![id_of(&retried)]).await;
    let i = info_until(&mut p, Some(stream), "g", |i| i.parked_message_count == 1).await;
    assert_eq!(i.event_source, stream);
    assert_eq!(i.group_name, "g");
    assert_eq!(i.connections.len(), 2);
    assert_eq!(i.named_consumer_strategy, "RoundRobin");
    assert_eq!(i.max_retry_count, 1);
    assert_eq!(i.message_timeout_milliseconds, 30_000);
    assert_eq!(i.start_from, "0");

    // Replayed, the parked event is delivered again.
    p.replay_parked(replay(stream, "g"))
        .await
        .expect("ReplayParked");
    let again = tokio::select! {
        e = a.event() => e,
        e = b.event() => e,
    };
    assert_eq!(data_of(&again), parked_data);
    a.ack(vec![id_of(&again)]).await;
    b.ack(vec![id_of(&again)]).await;
    let i = info_until(&mut p, Some(stream), "g", |i| {
        i.parked_message_count == 0 && i.total_in_flight_messages == 0
    })
    .await;
    assert_eq!(
        i.last_known_event_position, "3",
        "the stream's last revision"
    );

    // The native service sees the same group.
    let mut native = v1::persistent_subscriptions_client::PersistentSubscriptionsClient::new(
        common::channel_with(server.addr, common::AuthHeader::none()).await,
    );
    let listed = native
        .list(v1::ListPersistentSubscriptionsRequest { target: None })
        .await
        .expect("native List")
        .into_inner()
        .groups;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].group, "g");

    // Listed, then deleted: the consumers' calls end NOT_FOUND.
    let list = p
        .list(ListReq {
            options: Some(list_req::Options {
                list_option: Some(list_req::options::ListOption::ListAllSubscriptions(E)),
            }),
        })
        .await
        .expect("List")
        .into_inner()
        .subscriptions;
    assert_eq!(
        list.iter()
            .map(|s| s.group_name.as_str())
            .collect::<Vec<_>>(),
        ["g"]
    );
    p.delete(DeleteReq {
        options: Some(delete_req::Options {
            stream_option: Some(delete_req::options::StreamOption::StreamIdentifier(
                sid(stream).expect("sid"),
            )),
            group_name: "g".into(),
        }),
    })
    .await
    .expect("Delete");
    let ended = tokio::time::timeout(PATIENCE, a.rx.message())
        .await
        .expect("the call ends");
    assert_eq!(ended.expect_err("an error").code(), Code::NotFound);
    let missing = p
        .get_info(GetInfoReq {
            options: Some(get_info_req::Options {
                stream_option: Some(get_info_req::options::StreamOption::StreamIdentifier(
                    sid(stream).expect("sid"),
                )),
                group_name: "g".into(),
            }),
        })
        .await
        .expect_err("deleted");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        trailer(&missing, "exception").as_deref(),
        Some("persistent-subscription-does-not-exist")
    );
}

#[tokio::test]
async fn an_all_group_keeps_its_regular_expression_across_a_restart() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let mut p = persistent(&server).await;
    let only_orders = filter_options::Filter::StreamIdentifier(filter_options::Expression {
        regex: "^order-[0-9]+$".into(),
        prefix: Vec::new(),
    });
    p.create(create_all("orders", Some(only_orders)))
        .await
        .expect("Create");
    let bad = filter_options::Filter::EventType(filter_options::Expression {
        regex: "(".into(),
        prefix: Vec::new(),
    });
    let refused = p
        .create(create_all("bad", Some(bad)))
        .await
        .expect_err("an invalid pattern");
    assert_eq!(refused.code(), Code::InvalidArgument);

    for s in ["order-1", "customer-1", "order-x"] {
        append(&mut k, s, ExpectedStreamRevision::Any(E), events(1, s)).await;
    }
    let mut c = Consumer::join(&mut p, None, "orders", 10).await;
    let e = c.event().await;
    assert_eq!(data_of(&e), "order-1-0");
    c.ack(vec![id_of(&e)]).await;
    c.quiet(Duration::from_millis(300)).await;
    let i = info_until(&mut p, None, "orders", |i| {
        !i.last_checkpointed_event_position.is_empty()
    })
    .await;
    assert!(i.last_checkpointed_event_position.starts_with("C:"));
    assert_eq!(i.event_source, "$all");
    drop(c);
    drop(p);
    drop(k);

    let dir = server.stop_and_keep().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let mut k = kurrent(&server).await;
    let mut p = persistent(&server).await;
    for s in ["customer-2", "order-2"] {
        append(&mut k, s, ExpectedStreamRevision::Any(E), events(1, s)).await;
    }
    let mut c = Consumer::join(&mut p, None, "orders", 10).await;
    let e = c.event().await;
    assert_eq!(
        data_of(&e),
        "order-2-0",
        "the filter survived the restart and the checkpoint held"
    );
    c.ack(vec![id_of(&e)]).await;
    c.quiet(Duration::from_millis(300)).await;

    // Update changes settings and keeps the filter.
    let update = UpdateReq {
        options: Some(update_req::Options {
            stream_option: Some(update_req::options::StreamOption::All(
                update_req::AllOptions {
                    all_option: Some(update_req::all_options::AllOption::Start(E)),
                },
            )),
            stream_identifier: None,
            group_name: "orders".into(),
            settings: Some(update_req::Settings {
                max_retry_count: 7,
                named_consumer_strategy: update_req::ConsumerStrategy::DispatchToSingle as i32,
                ..Default::default()
            }),
        }),
    };
    p.update(update).await.expect("Update");
    let i = info(&mut p, None, "orders").await;
    assert_eq!(i.max_retry_count, 7);
    assert_eq!(i.named_consumer_strategy, "DispatchToSingle");
    append(
        &mut k,
        "customer-3",
        ExpectedStreamRevision::Any(E),
        events(1, "c3"),
    )
    .await;
    append(
        &mut k,
        "order-3",
        ExpectedStreamRevision::Any(E),
        events(1, "order-3"),
    )
    .await;
    assert_eq!(data_of(&c.event().await), "order-3-0");
}
