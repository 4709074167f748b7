//! Runs each example in `client/examples/` against an in-process server:
//! the example files are included as modules and their `run(url)` called,
//! so the examples are built and checked by the test suite itself.

mod common;

use common::TestServer;

#[allow(dead_code)] // its `main` is for `cargo run --example`
#[path = "../examples/bank_account.rs"]
mod bank_account;

#[allow(dead_code)]
#[path = "../examples/projection.rs"]
mod projection;

#[allow(dead_code)]
#[path = "../examples/snapshots.rs"]
mod snapshots;

#[allow(dead_code)]
#[path = "../examples/consumer_group.rs"]
mod consumer_group;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_of_a_group_acknowledge_every_order_once() {
    let server = TestServer::start().await;
    let report = consumer_group::run(&server.url)
        .await
        .expect("example runs");
    assert_eq!(report.acked.len(), 100, "{report:?}");
    let retried: Vec<u64> = report
        .acked
        .iter()
        .filter(|(_, (_, r))| *r > 0)
        .map(|(rev, _)| *rev)
        .collect();
    assert_eq!(retried, (0..100).filter(|r| r % 7 == 3).collect::<Vec<_>>());
    let consumers: std::collections::HashSet<&str> =
        report.acked.values().map(|(w, _)| w.as_str()).collect();
    assert_eq!(consumers.len(), 2, "both consumers got work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_account_never_overdraws_under_concurrent_tellers() {
    let server = TestServer::start().await;
    let report = bank_account::run(&server.url).await.expect("example runs");
    // 300 deposited, 40 attempts of 10: exactly 30 go through.
    assert_eq!(report.withdrawals, 30, "{report:?}");
    assert_eq!(report.refused, 10, "{report:?}");
    assert_eq!(report.balance, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_resumes_from_its_checkpoint_without_double_counting() {
    let server = TestServer::start().await;
    let report = projection::run(&server.url).await.expect("example runs");
    assert_eq!(report.expected.orders, 150);
    assert_eq!(report.projected, report.expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_load_the_same_state_from_far_fewer_events() {
    let server = TestServer::start().await;
    let report = snapshots::run(&server.url).await.expect("example runs");
    assert_eq!(report.full.state, report.snapshot.state);
    assert_eq!(report.full.events_read, 5_120);
    assert_eq!(
        report.snapshot.events_read, 120,
        "only the events after the last snapshot"
    );
}
