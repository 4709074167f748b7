//! `Operations.StartScavenge` / `GetScavenge` / `StopScavenge` and
//! `strata scavenge --wait` against a running server: half the streams of
//! a multi-segment store deleted, the scavenge gives their space back (in
//! its status, its metrics and on disk), every visible event reads the
//! same afterwards, and appends and reads go on while it runs.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;
use strata_proto::v1;
use strata_proto::v1::operations_client::OperationsClient;
use strata_proto::v1::scavenge_status::State;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn disk_use(data: &Path) -> u64 {
    std::fs::read_dir(data.join("log"))
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| std::fs::metadata(p).expect("metadata").len())
        .sum()
}

/// Runs `strata scavenge --json` with `args`; its exit status and lines.
fn cli(url: &str, args: &[&str]) -> (bool, Vec<Value>) {
    let out = Command::new(STRATA)
        .args(["scavenge", "--json", "--url", url])
        .args(args)
        .output()
        .expect("run strata scavenge");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (out.status.success(), lines)
}

fn backup(url: &str, to: &Path) {
    let out = Command::new(STRATA)
        .args(["backup", "--url", url, "--to"])
        .arg(to)
        .output()
        .expect("run strata backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scavenge_reclaims_deleted_streams_online() {
    let server = TestServer::start_with(|a| a.segment_size = 64 << 10).await;
    let url = format!("http://{}", server.addr);
    let mut c = server.connect().await;
    let data = server.dir.path().join("data");
    for round in 0..60 {
        for s in 0..20 {
            append_ok(
                &mut c,
                &format!("cart-{s}"),
                v1::ExpectedVersion::any(),
                vec![event("Added", &[round as u8; 400])],
            )
            .await;
        }
    }
    for s in (0..20).step_by(2) {
        c.delete(v1::DeleteRequest {
            stream: format!("cart-{s}"),
            expected: Some(v1::ExpectedVersion::any()),
        })
        .await
        .expect("delete");
    }
    // Seal the last segment of the fill.
    append_ok(
        &mut c,
        "seal",
        v1::ExpectedVersion::any(),
        vec![event("Big", &[0; 70_000])],
    )
    .await;
    let before = read_all(&mut c).await;
    let disk_before = disk_use(&data);
    // A backup before the scavenge, continued into the same copy after it.
    let copy = tempfile::tempdir().expect("tempdir");
    backup(&url, copy.path());

    let mut ops = OperationsClient::new(
        tonic::transport::Endpoint::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    );
    let idle = ops
        .get_scavenge(v1::GetScavengeRequest {})
        .await
        .expect("get")
        .into_inner();
    assert_eq!(idle.state(), State::Idle);
    assert!(idle.started_at.is_none());

    let url2 = url.clone();
    let scavenge = tokio::task::spawn_blocking(move || cli(&url2, &["--wait"]));
    // Appends and reads go on meanwhile.
    for i in 0..20 {
        append_ok(
            &mut c,
            "during",
            v1::ExpectedVersion::any(),
            vec![event("T", &[i; 10])],
        )
        .await;
        read_all(&mut c).await;
    }
    let (ok, lines) = scavenge.await.expect("cli");
    assert!(ok, "{lines:?}");
    let last = lines.last().expect("a status line");
    assert_eq!(last["state"], "done", "{lines:?}");
    let reclaimed = last["bytes_reclaimed"].as_u64().expect("bytes_reclaimed");
    assert!(reclaimed > 0);

    let done = ops
        .get_scavenge(v1::GetScavengeRequest {})
        .await
        .expect("get")
        .into_inner();
    assert_eq!(done.state(), State::Done);
    assert_eq!(done.bytes_reclaimed, reclaimed);
    assert_eq!(done.segments_done, done.segments_total);
    assert!(done.started_at.is_some());
    assert_eq!(
        metric(server.metrics_addr, "strata_scavenge_bytes_reclaimed_total"),
        Some(reclaimed as f64)
    );
    assert_eq!(
        metric(server.metrics_addr, "strata_scavenge_segments_total"),
        Some(done.segments_total as f64)
    );
    // The deleted half of the fill's bytes went, less what the appends
    // since then added (at most one new segment).
    let disk_after = disk_use(&data);
    assert!(
        disk_after + reclaimed <= disk_before + (64 << 10),
        "before {disk_before}, after {disk_after}, reclaimed {reclaimed}"
    );
    assert!(
        disk_after < disk_before * 3 / 4,
        "{disk_before} → {disk_after}"
    );

    let mut after = read_all(&mut c).await;
    let everything = after.clone();
    after.retain(|e| e.stream != "during");
    assert_eq!(after, before);
    // The rewritten segments are sent again: the copy reads as the server.
    backup(&url, copy.path());
    let sizes = |log: &Path| {
        let mut v: Vec<(std::ffi::OsString, u64)> = std::fs::read_dir(log)
            .expect("log dir")
            .map(|e| e.expect("entry"))
            .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
            .map(|e| (e.file_name(), e.metadata().expect("metadata").len()))
            .collect();
        v.sort();
        v.pop(); // the active segment: preallocated here, cut in the copy
        v
    };
    assert_eq!(sizes(&copy.path().join("log")), sizes(&data.join("log")));
    let copied: Vec<_> = tokio::task::block_in_place(|| events_of_copy(copy.path()))
        .into_iter()
        .map(|e| {
            (
                e.stream.to_string(),
                e.revision,
                e.position,
                e.data.to_vec(),
            )
        })
        .collect();
    let everything: Vec<_> = everything
        .into_iter()
        .map(|e| (e.stream, e.revision, e.position, e.data.to_vec()))
        .collect();
    assert_eq!(copied, everything);

    // Stopping when none runs is not an error; nothing left to reclaim
    // the second time.
    let (ok, lines) = cli(&url, &["--stop"]);
    assert!(ok, "{lines:?}");
    let (ok, lines) = cli(&url, &["--wait"]);
    assert!(ok, "{lines:?}");
    assert_eq!(lines.last().expect("line")["bytes_reclaimed"], 0);
    let (ok, lines) = cli(&url, &["--status"]);
    assert!(ok);
    assert_eq!(lines[0]["state"], "done");
    server.stop().await.expect("stop");
}
