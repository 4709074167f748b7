//! The `strata` command-line client (`append`, `multi-append`, `read`,
//! `tail`, `delete`, `tombstone`, `metadata`, `stats`, `health`, `verify
//! --data`) against a real server: the built binary is run as a
//! subprocess with `STRATA_URL` pointing at an in-process server. Covers
//! human and `--json` output, and that bad input fails with a clear message
//! and the documented exit code (2 usage, 1 server/other, 3 conflict).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use strata_server::config::ServeArgs;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// An in-process server on its own runtime, so tests can block on
/// subprocesses.
struct Server {
    url: String,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), strata_server::RunError>>>,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let args = ServeArgs::for_tests(dir.path());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (url, task) = runtime.block_on(async {
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let metrics = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", grpc.local_addr().expect("addr"));
            let task = tokio::spawn(strata_server::run(args, grpc, metrics, async move {
                let _ = stopped.await;
            }));
            (url, task)
        });
        Server {
            url,
            dir,
            stop: Some(stop),
            task: Some(task),
            runtime,
        }
    }

    /// Shuts the server down cleanly, leaving its data directory.
    fn stop(&mut self) {
        if let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) {
            let _ = stop.send(());
            self.runtime
                .block_on(task)
                .expect("server task")
                .expect("clean shutdown");
        }
    }

    fn strata(&self, args: &[&str]) -> Output {
        self.strata_with_stdin(args, None)
    }

    fn strata_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(STRATA)
            .args(args)
            .env("STRATA_URL", &self.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("strata runs")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts the exit code and that stderr mentions `needle`.
fn fails(o: Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains(needle),
        "stderr lacks {needle:?}: {}",
        stderr(&o)
    );
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

#[test]
fn append_read_and_stats() {
    let server = Server::start();

    let out = ok(server.strata(&[
        "append",
        "order-1",
        "--type",
        "OrderPlaced",
        "--expected",
        "no-stream",
        "--data",
        r#"{"qty": 3}"#,
    ]));
    assert!(
        out.starts_with("appended to order-1: revision 0, position 0"),
        "{out}"
    );
    let out = ok(server.strata_with_stdin(
        &[
            "append",
            "order-1",
            "--type",
            "OrderPaid",
            "--expected",
            "0",
            "--data",
            "-",
            "--metadata",
            r#"{"by":"cli"}"#,
            "--json",
        ],
        Some("{\"paid\": true}\n"),
    ));
    let written = &json_lines(&out)[0];
    assert_eq!(
        (&written["revision"], &written["position"]),
        (&1.into(), &1.into())
    );
    ok(server.strata(&[
        "append",
        "user-1",
        "--type",
        "Registered",
        "--expected",
        "any",
    ]));

    // Human output: one line per event.
    let out = ok(server.strata(&["read", "order-1"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("order-1@0  OrderPlaced"), "{out}");
    assert!(lines[0].ends_with(r#"{"qty":3}"#), "{out}");
    assert!(lines[1].contains("order-1@1  OrderPaid"), "{out}");

    // JSON output, every field.
    let events = json_lines(&ok(server.strata(&["read", "order-1", "--json"])));
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["type"], "OrderPaid");
    assert_eq!(events[1]["data"]["paid"], true);
    assert_eq!(events[1]["metadata"]["by"], "cli");
    assert_eq!(events[1]["content_type"], "application/json");
    assert_eq!(events[1]["id"], written["id"]);
    assert!(events[1]["recorded_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    // Backwards, from, limit, and $all.
    let events = json_lines(&ok(server.strata(&[
        "read",
        "$all",
        "--backwards",
        "--limit",
        "2",
        "--json",
    ])));
    let positions: Vec<&Value> = events.iter().map(|e| &e["position"]).collect();
    assert_eq!(positions, [&Value::from(2), &Value::from(1)]);
    let events = json_lines(&ok(
        server.strata(&["read", "order-1", "--from", "1", "--json"])
    ));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["revision"], 1);
    let events = json_lines(&ok(server.strata(&[
        "read",
        "$all",
        "--filter-stream",
        "user-",
        "--json",
    ])));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["stream"], "user-1");
    assert_eq!(events[0]["data"], "", "no --data: an empty payload");

    // Stats, both ways.
    let out = ok(server.strata(&["stats"]));
    assert!(out.contains("head position   3"), "{out}");
    assert!(out.contains("events          3"), "{out}");
    assert!(out.contains("disk use"), "{out}");
    let stats = &json_lines(&ok(server.strata(&["stats", "--json"])))[0];
    assert_eq!(stats["head_position"], 3);
    assert_eq!(stats["events"], 3);
    assert!(stats["disk_bytes"].as_u64().is_some_and(|b| b > 0));
}

#[test]
fn bad_input_fails_clearly_with_the_documented_exit_codes() {
    let server = Server::start();
    ok(server.strata(&["append", "s", "--type", "T", "--expected", "no-stream"]));

    // 3: conflict, naming the current revision.
    fails(
        server.strata(&["append", "s", "--type", "T", "--expected", "no-stream"]),
        3,
        "wrong expected version on stream 's': expected no_stream, current revision 0",
    );
    fails(
        server.strata(&["append", "s", "--type", "T", "--expected", "5"]),
        3,
        "current revision 0",
    );
    // 2: usage errors, before anything is sent.
    fails(
        server.strata(&["append", "s", "--type", "T", "--expected", "latest"]),
        2,
        "'latest' is not any, no-stream, exists or a revision number",
    );
    fails(
        server.strata(&["append", "s", "--type", "T", "--data", "{oops"]),
        2,
        "--data is not valid JSON",
    );
    fails(server.strata(&["append", "s"]), 2, "--type");
    fails(
        server.strata(&["read", "s", "--from", "middle"]),
        2,
        "'middle'",
    );
    fails(
        server.strata(&["read", "s", "--filter-type", "T"]),
        2,
        "apply only to '$all'",
    );
    fails(server.strata(&["tail", "s", "--from", "-3"]), 2, "-3");
    // 1: the server refused, or cannot be reached.
    fails(
        server.strata(&["append", "$system", "--type", "T"]),
        1,
        "invalid argument",
    );
    fails(server.strata(&["read", "missing"]), 1, "not found");
    let unreachable = Command::new(STRATA)
        .args(["stats", "--url", "http://127.0.0.1:1"])
        .output()
        .expect("runs");
    fails(unreachable, 1, "cannot connect to http://127.0.0.1:1");
    // Nothing was written by the failures.
    assert_eq!(ok(server.strata(&["read", "$all"])).lines().count(), 1);
}

/// A running `strata tail`: its stdout lines arrive on `lines`, and
/// `caught_up` receives once it reports being live.
struct Tail {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    caught_up: mpsc::Receiver<()>,
}

/// Runs `strata tail ARGS`.
fn tail(server: &Server, args: &[&str]) -> Tail {
    let mut child = Command::new(STRATA)
        .arg("tail")
        .args(args)
        .env("STRATA_URL", &server.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata tail");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let (tx, caught_up) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("caught up") {
                let _ = tx.send(());
            }
        }
    });
    Tail {
        child,
        lines,
        caught_up,
    }
}

impl Tail {
    /// Waits until the subscription is live: events appended after this
    /// are seen even by a tail started `--from end`.
    fn wait_live(&self) {
        self.caught_up
            .recv_timeout(Duration::from_secs(15))
            .expect("tail reports caught up within 15 s");
    }
}

fn lines(rx: &mpsc::Receiver<String>, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let line = rx
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("line {i} of {n} within 15 s"));
            serde_json::from_str(&line).expect("JSON line")
        })
        .collect()
}

#[test]
fn tail_follows_live_events_until_killed() {
    let server = Server::start();
    for i in 0..3 {
        ok(server.strata(&["append", &format!("cart-{i}"), "--type", "Added"]));
    }
    let mut whole = tail(&server, &["$all", "--from", "start", "--json"]);
    let mut carts = tail(
        &server,
        &[
            "$all",
            "--from",
            "1",
            "--filter-stream",
            "cart-",
            "--filter-type",
            "Add",
            "--json",
        ],
    );
    let mut one = tail(&server, &["cart-9", "--json"]);

    let caught_up = lines(&whole.lines, 3);
    let positions: Vec<u64> = caught_up
        .iter()
        .filter_map(|e| e["position"].as_u64())
        .collect();
    assert_eq!(positions, [0, 1, 2]);
    assert_eq!(
        lines(&carts.lines, 2)[0]["position"],
        1,
        "--from is inclusive"
    );
    for t in [&whole, &carts, &one] {
        t.wait_live();
    }

    // Live events, including the first of a stream that did not exist.
    ok(server.strata(&["append", "cart-9", "--type", "Added", "--data", "[1]"]));
    ok(server.strata(&["append", "other", "--type", "Added"]));
    let live = lines(&whole.lines, 2);
    assert_eq!(
        (&live[0]["stream"], &live[1]["stream"]),
        (&"cart-9".into(), &"other".into())
    );
    assert_eq!(lines(&carts.lines, 1)[0]["stream"], "cart-9");
    let first = &lines(&one.lines, 1)[0];
    assert_eq!(
        (&first["revision"], &first["data"]),
        (&0.into(), &serde_json::json!([1]))
    );

    for t in [&mut whole, &mut carts, &mut one] {
        assert!(
            t.child.try_wait().expect("status").is_none(),
            "still following"
        );
        t.child.kill().expect("kill tail");
        t.child.wait().expect("reaped");
    }
}

#[test]
fn verify_accepts_data_as_an_alias_of_data_dir() {
    let mut server = Server::start();
    ok(server.strata(&["append", "s", "--type", "T", "--data", "{}"]));
    server.stop();
    let dir = server.dir.path().to_str().expect("utf-8 path").to_owned();
    for flag in ["--data", "--data-dir"] {
        let out = ok(server.strata(&["verify", flag, &dir]));
        assert!(out.trim_end().ends_with("ok"), "{out}");
    }
}

#[test]
fn health_reports_serving_and_fails_without_a_server() {
    let server = Server::start();
    assert_eq!(ok(server.strata(&["health"])).trim(), "SERVING");
    let status = &json_lines(&ok(server.strata(&[
        "health",
        "--json",
        "--service",
        "strata.v1.Streams",
    ])))[0];
    assert_eq!(status["status"], "SERVING");
    fails(
        server.strata(&[
            "health",
            "--url",
            "http://127.0.0.1:1",
            "--timeout-ms",
            "500",
        ]),
        1,
        "cannot connect",
    );
}

#[test]
fn multi_append_writes_every_stream_or_none() {
    let server = Server::start();
    let doc = r#"{"appends": [
        {"stream": "order-1", "expected": "no-stream",
         "events": [{"type": "OrderPlaced", "data": {"total": 3}},
                    {"type": "OrderPaid", "metadata": {"by": "cli"}}]},
        {"stream": "customer-7", "events": [{"type": "OrderAdded", "data": {"order": "order-1"}}]}],
      "checks": [{"stream": "catalog", "expected": "no-stream"}]}"#;
    let out = ok(server.strata_with_stdin(&["multi-append", "--json"], Some(doc)));
    let written = &json_lines(&out)[0];
    assert_eq!(written["position"], 2);
    assert_eq!(written["results"][0]["stream"], "order-1");
    assert_eq!(written["results"][0]["revision"], 1);
    assert_eq!(written["results"][0]["position"], 1);
    assert_eq!(written["results"][1]["stream"], "customer-7");
    assert_eq!(written["results"][1]["position"], 2);
    let events = json_lines(&ok(server.strata(&["read", "$all", "--json"])));
    let streams: Vec<&str> = events
        .iter()
        .map(|e| e["stream"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(streams, ["order-1", "order-1", "customer-7"]);
    assert_eq!(events[0]["data"]["total"], 3);
    assert_eq!(events[1]["metadata"]["by"], "cli");

    // The same document again: order-1 exists now. Exit 3, every failed
    // condition named, nothing written.
    let file = server.dir.path().join("multi.json");
    std::fs::write(&file, doc).expect("write the document");
    let again = server.strata(&["multi-append", "--file", file.to_str().expect("utf-8 path")]);
    fails(again, 3, "order-1");
    let human = ok(server.strata_with_stdin(
        &["multi-append"],
        Some(r#"{"appends": [{"stream": "s", "events": [{"type": "T"}]}]}"#),
    ));
    assert!(
        human.starts_with("appended to s: revision 0, position 3"),
        "{human}"
    );
    assert_eq!(
        json_lines(&ok(server.strata(&["read", "$all", "--json"]))).len(),
        4
    );

    fails(
        server.strata_with_stdin(&["multi-append"], Some(r#"{"appends": []}"#)),
        2,
        "non-empty \"appends\"",
    );
    fails(server.strata(&["multi-append"]), 2, "not valid JSON");
}

#[test]
fn delete_and_tombstone_streams() {
    let server = Server::start();
    for _ in 0..2 {
        ok(server.strata(&["append", "cart-1", "--type", "Added"]));
    }

    // A stale expectation: exit 3, nothing deleted.
    fails(
        server.strata(&["delete", "cart-1", "--expected", "0"]),
        3,
        "wrong expected version on stream 'cart-1': expected exact(0), current revision 1",
    );
    assert_eq!(ok(server.strata(&["read", "cart-1"])).lines().count(), 2);
    let out = ok(server.strata(&["delete", "cart-1", "--expected", "1"]));
    assert_eq!(out.trim(), "deleted cart-1 at position 2");
    fails(server.strata(&["read", "cart-1"]), 1, "not found");
    fails(server.strata(&["delete", "cart-1"]), 1, "not found");
    fails(server.strata(&["delete", "never"]), 1, "not found");
    // Re-created by an append, its revisions continuing.
    let out = ok(server.strata(&[
        "append",
        "cart-1",
        "--type",
        "Added",
        "--expected",
        "no-stream",
    ]));
    assert!(out.starts_with("appended to cart-1: revision 2"), "{out}");

    let done = &json_lines(&ok(server.strata(&[
        "tombstone",
        "cart-1",
        "--expected",
        "exists",
        "--json",
    ])))[0];
    assert_eq!(
        (&done["stream"], &done["position"]),
        (&"cart-1".into(), &4.into())
    );
    for args in [
        &["append", "cart-1", "--type", "Added"][..],
        &["read", "cart-1"],
        &["delete", "cart-1"],
        &["tombstone", "cart-1"],
        &["metadata", "get", "cart-1"],
        &["metadata", "set", "cart-1", "--max-count", "1"],
    ] {
        fails(
            server.strata(args),
            1,
            "failed precondition: stream 'cart-1' is tombstoned",
        );
    }
    // A name that holds no stream can be reserved.
    let out = ok(server.strata(&["tombstone", "user-1", "--expected", "no-stream"]));
    assert_eq!(out.trim(), "tombstoned user-1 at position 5");

    fails(
        server.strata(&["tombstone", "s", "--expected", "latest"]),
        2,
        "'latest' is not any, no-stream, exists or a revision number",
    );
    fails(server.strata(&["delete"]), 2, "<STREAM>");
    fails(server.strata(&["delete", "$all"]), 1, "invalid argument");
}

#[test]
fn metadata_set_get_and_retention() {
    let server = Server::start();
    let never = &json_lines(&ok(server.strata(&["metadata", "get", "log-1", "--json"])))[0];
    assert_eq!(never["metadata_revision"], Value::Null);
    assert_eq!(never["max_count"], Value::Null);
    assert_eq!(never["custom"], Value::Null);

    // Before the stream exists, and only if it was never set.
    let out = ok(server.strata(&[
        "metadata",
        "set",
        "log-1",
        "--expected",
        "no-stream",
        "--max-count",
        "2",
        "--max-age",
        "7d",
        "--acl-read",
        "$role:auditor",
        "--acl-read",
        "ann",
        "--acl-metadata-write",
        "ops",
        "--custom",
        "owner=billing",
    ]));
    assert_eq!(
        out.trim(),
        "set the metadata of log-1: revision 0, position 0"
    );
    for _ in 0..3 {
        ok(server.strata(&["append", "log-1", "--type", "Logged"]));
    }
    let events = json_lines(&ok(server.strata(&["read", "log-1", "--json"])));
    let revisions: Vec<&Value> = events.iter().map(|e| &e["revision"]).collect();
    assert_eq!(
        revisions,
        [&Value::from(1), &Value::from(2)],
        "the newest 2"
    );

    // The default output is indented JSON; --json puts it on one line.
    let pretty = ok(server.strata(&["metadata", "get", "log-1"]));
    assert!(pretty.lines().count() > 1, "{pretty}");
    let got: Value = serde_json::from_str(&pretty).expect("JSON");
    assert_eq!(
        got,
        json_lines(&ok(server.strata(&["metadata", "get", "log-1", "--json"])))[0]
    );
    assert_eq!(got["stream"], "log-1");
    assert_eq!(got["metadata_revision"], 0);
    assert_eq!(got["max_count"], 2);
    assert_eq!(got["max_age"], "7d");
    assert_eq!(got["truncate_before"], Value::Null);
    assert_eq!(
        got["acl"]["read"],
        serde_json::json!(["$role:auditor", "ann"])
    );
    assert_eq!(got["acl"]["metadata_write"], serde_json::json!(["ops"]));
    assert_eq!(got["acl"]["write"], serde_json::json!([]));
    assert_eq!(
        (&got["custom"], &got["custom_encoding"]),
        (&"owner=billing".into(), &"utf-8".into())
    );

    // Checked against the metadata's revision, not the stream's: exit 3,
    // naming the metadata stream.
    fails(
        server.strata(&["metadata", "set", "log-1", "--expected", "no-stream"]),
        3,
        "wrong expected version on stream '$$log-1': expected no_stream, current revision 0",
    );
    fails(
        server.strata(&["metadata", "set", "log-1", "--expected", "2"]),
        3,
        "current revision 0",
    );
    // Set replaces everything: only truncate_before is left.
    let set = &json_lines(&ok(server.strata(&[
        "metadata",
        "set",
        "log-1",
        "--expected",
        "0",
        "--truncate-before",
        "2",
        "--json",
    ])))[0];
    assert_eq!(set["metadata_revision"], 1);
    assert_eq!(set["stream"], "log-1");
    assert!(set["position"].as_u64().is_some_and(|p| p > 0));
    let got = &json_lines(&ok(server.strata(&["metadata", "get", "log-1", "--json"])))[0];
    assert_eq!(
        (&got["metadata_revision"], &got["truncate_before"]),
        (&1.into(), &2.into())
    );
    assert_eq!(
        (&got["max_count"], &got["max_age"], &got["custom"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(got["acl"]["read"], serde_json::json!([]));
    assert_eq!(ok(server.strata(&["read", "log-1"])).lines().count(), 1);

    // Bad input: exit 2, saying what is wrong, before anything is sent.
    for (args, needle) in [
        (&["--max-age", "10x"][..], "'10x' is not a duration"),
        (&["--max-age", "30"], "'30' needs a unit"),
        (&["--max-age=-5s"], "'-5s' is not a duration"),
        (&["--max-age", "99999999999999999999d"], "too large"),
        (&["--max-count=-1"], "invalid digit"),
        (&["--max-count", "many"], "invalid digit"),
        (&["--truncate-before", "x"], "--truncate-before"),
        (&["--acl-write", ""], "must name a user"),
        (&["--expected", "newest"], "'newest' is not any"),
        (&["--acl-everyone", "x"], "--acl-everyone"),
    ] {
        let mut command = vec!["metadata", "set", "log-1"];
        command.extend_from_slice(args);
        fails(server.strata(&command), 2, needle);
    }
    fails(server.strata(&["metadata"]), 2, "Usage");
    fails(server.strata(&["metadata", "show", "log-1"]), 2, "show");
    fails(
        server.strata(&["metadata", "set", "$all", "--max-count", "1"]),
        1,
        "invalid argument",
    );
    let got = &json_lines(&ok(server.strata(&["metadata", "get", "log-1", "--json"])))[0];
    assert_eq!(got["metadata_revision"], 1, "the failures wrote nothing");
}
