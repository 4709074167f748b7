//! The lifecycle round of the crash tiers: deletes, tombstones and metadata
//! changes mixed with appends, the server killed at a random moment, and
//! after each restart every stream compared with a model of what was
//! acknowledged.
//!
//! Each agent owns one stream at a time and does one operation after the
//! other, so it knows exactly what the stream must look like: its visible
//! revisions and data, whether reading it is NOT_FOUND (deleted) or
//! FAILED_PRECONDITION (tombstoned), and its metadata revision. An
//! acknowledged change must be there after the crash; the one operation in
//! flight when the server died must be there entirely or not at all. A
//! tombstoned stream is followed by a fresh one.
//!
//! Meanwhile a scavenge runs again and again (`Operations.StartScavenge`),
//! so that kills also land while it rewrites segments: a scavenge may only
//! remove what no read can see, so the same checks cover it.

use super::*;

/// Agents per round, each on its own connection.
const AGENTS: usize = 4;

/// What an agent's stream must look like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    /// Every event ever appended: revision and data.
    events: Vec<(u64, String)>,
    next_revision: u64,
    deleted_before: u64,
    tombstoned: bool,
    metadata_revision: Option<u64>,
    truncate_before: u64,
    max_count: Option<u64>,
    /// Every revision below this has been hidden at some moment: a
    /// scavenge may have removed it for good, even if later metadata would
    /// show it again.
    ever_hidden_before: u64,
}

/// What a reader sees of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum View {
    Tombstoned,
    /// Not found, with the metadata revision.
    NotFound(Option<u64>),
    /// The visible events, the metadata revision and the stream's last
    /// revision (which hidden events still count in).
    Visible(Vec<(u64, String)>, Option<u64>, Option<u64>),
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<String>, Expect),
    Delete,
    SetMetadata {
        expected: Option<u64>,
        truncate_before: u64,
        max_count: Option<u64>,
    },
    Tombstone,
}

/// What the server answered.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Done,
    Conflict,
    NotFound,
    Tombstoned,
}

impl Model {
    fn current(&self) -> Option<u64> {
        let deleted = self.deleted_before > 0 && self.next_revision <= self.deleted_before;
        (self.next_revision > 0 && !deleted).then(|| self.next_revision - 1)
    }

    fn view(&self) -> View {
        if self.tombstoned {
            return View::Tombstoned;
        }
        if self.current().is_none() {
            return View::NotFound(self.metadata_revision);
        }
        let floor = self.floor();
        let visible = self
            .events
            .iter()
            .filter(|(r, _)| *r >= floor)
            .cloned()
            .collect();
        View::Visible(visible, self.metadata_revision, self.current())
    }

    /// Revisions below this are hidden now.
    fn floor(&self) -> u64 {
        let mut floor = self.deleted_before.max(self.truncate_before);
        if let Some(max) = self.max_count {
            floor = floor.max(self.next_revision.saturating_sub(max));
        }
        floor
    }

    /// Whether a reader may see `seen`: the model's view, except that
    /// events hidden at some earlier moment may be missing (scavenged).
    fn accepts(&self, seen: &View) -> bool {
        match (self.view(), seen) {
            (View::Visible(want, md, current), View::Visible(got, seen_md, seen_current)) => {
                let mut rest = got.iter().peekable();
                let subsequence = want.iter().all(|e| {
                    if rest.peek() == Some(&e) {
                        rest.next();
                        true
                    } else {
                        e.0 < self.ever_hidden_before
                    }
                });
                subsequence && rest.next().is_none() && md == *seen_md && current == *seen_current
            }
            (view, seen) => view == *seen,
        }
    }

    /// The model after `op`, and the answer it must get.
    fn apply(&self, op: &Op) -> (Model, Answer) {
        let mut m = self.clone();
        if m.tombstoned {
            return (m, Answer::Tombstoned);
        }
        let answer = match op {
            Op::Append(data, expected) => {
                let current = m.current();
                let holds = match expected {
                    Expect::Any => true,
                    Expect::NoStream => current.is_none(),
                    Expect::StreamExists => current.is_some(),
                    Expect::Exact(r) => current == Some(*r),
                };
                if !holds {
                    return (m, Answer::Conflict);
                }
                for d in data {
                    m.events.push((m.next_revision, d.clone()));
                    m.next_revision += 1;
                }
                Answer::Done
            }
            Op::Delete => {
                if m.current().is_none() {
                    return (m, Answer::NotFound);
                }
                m.deleted_before = m.next_revision;
                Answer::Done
            }
            Op::SetMetadata {
                expected,
                truncate_before,
                max_count,
            } => {
                if *expected != m.metadata_revision {
                    return (m, Answer::Conflict);
                }
                m.metadata_revision = Some(m.metadata_revision.map_or(0, |r| r + 1));
                m.truncate_before = *truncate_before;
                m.max_count = *max_count;
                Answer::Done
            }
            Op::Tombstone => {
                m.tombstoned = true;
                Answer::Done
            }
        };
        m.ever_hidden_before = m.ever_hidden_before.max(m.floor());
        (m, answer)
    }
}

struct Agent {
    index: usize,
    stream: String,
    model: Model,
    /// The operation whose answer the crash took, if any.
    in_doubt: Option<Op>,
    /// Events appended so far (their data is `e<serial>`).
    serial: u64,
    /// Streams it tombstoned; they must stay tombstoned.
    retired: Vec<String>,
}

impl Agent {
    /// After a tombstone: on to a fresh stream.
    fn retire(&mut self) {
        let next = format!("life-{}-{}", self.index, self.retired.len() + 1);
        self.retired.push(std::mem::replace(&mut self.stream, next));
        self.model = Model::default();
    }
}

fn expected_wire(expected: Option<u64>) -> v1::ExpectedVersion {
    match expected {
        None => v1::ExpectedVersion::no_stream(),
        Some(r) => v1::ExpectedVersion::exact(r),
    }
}

/// Sends `op`; `None` when the answer was lost (the server went away).
async fn send(client: &mut Client, stream: &str, op: &Op) -> Option<Answer> {
    use tonic::Code;
    let status = |e: tonic::Status| match e.code() {
        Code::NotFound => Some(Answer::NotFound),
        Code::FailedPrecondition => Some(Answer::Tombstoned),
        _ => None,
    };
    match op {
        Op::Append(data, expected) => {
            let events = data
                .iter()
                .map(|d| v1::EventData {
                    id: Some(v1::Uuid::from_bytes(*uuid::Uuid::new_v4().as_bytes())),
                    r#type: "L".into(),
                    data: d.clone().into_bytes().into(),
                    metadata: Vec::new().into(),
                    content_type: None,
                })
                .collect();
            let req = v1::AppendRequest {
                stream: stream.into(),
                expected: Some(expected.wire()),
                events,
            };
            match client.append(req).await {
                Ok(r) => match r.into_inner().result {
                    Some(AppendResult::Success(_)) => Some(Answer::Done),
                    Some(AppendResult::WrongExpectedVersion(_)) => Some(Answer::Conflict),
                    None => None,
                },
                Err(e) => status(e),
            }
        }
        Op::Delete => {
            let req = v1::DeleteRequest {
                stream: stream.into(),
                expected: Some(v1::ExpectedVersion::any()),
            };
            match client.delete(req).await {
                Ok(r) => match r.into_inner().result {
                    Some(v1::delete_response::Result::Success(_)) => Some(Answer::Done),
                    Some(_) => Some(Answer::Conflict),
                    None => None,
                },
                Err(e) => status(e),
            }
        }
        Op::SetMetadata {
            expected,
            truncate_before,
            max_count,
        } => {
            let req = v1::SetStreamMetadataRequest {
                stream: stream.into(),
                expected: Some(expected_wire(*expected)),
                metadata: Some(v1::StreamMetadata {
                    truncate_before: Some(*truncate_before),
                    max_count: *max_count,
                    ..Default::default()
                }),
            };
            match client.set_stream_metadata(req).await {
                Ok(r) => match r.into_inner().result {
                    Some(v1::set_stream_metadata_response::Result::Success(_)) => {
                        Some(Answer::Done)
                    }
                    Some(_) => Some(Answer::Conflict),
                    None => None,
                },
                Err(e) => status(e),
            }
        }
        Op::Tombstone => {
            let req = v1::TombstoneRequest {
                stream: stream.into(),
                expected: Some(v1::ExpectedVersion::any()),
            };
            match client.tombstone(req).await {
                Ok(r) => match r.into_inner().result {
                    Some(v1::tombstone_response::Result::Success(_)) => Some(Answer::Done),
                    Some(_) => Some(Answer::Conflict),
                    None => None,
                },
                Err(e) => status(e),
            }
        }
    }
}

/// What the server shows of `stream`; `Err` when it did not answer.
async fn observe(client: &mut Client, stream: &str) -> Result<View, String> {
    use tonic::Code;
    let md = client
        .get_stream_metadata(v1::GetStreamMetadataRequest {
            stream: stream.into(),
        })
        .await;
    let md_revision = match md {
        Ok(r) => r.into_inner().metadata_revision,
        Err(e) if e.code() == Code::FailedPrecondition => return Ok(View::Tombstoned),
        Err(e) => return Err(format!("metadata of {stream}: {e}")),
    };
    let req = v1::ReadRequest {
        target: Some(v1::read_request::Target::Stream(stream.into())),
        direction: v1::Direction::Forwards as i32,
        from: None,
        max_count: 0,
        filter: None,
    };
    let mut call = match client.read(req).await {
        Ok(c) => c.into_inner(),
        Err(e) if e.code() == Code::NotFound => return Ok(View::NotFound(md_revision)),
        Err(e) if e.code() == Code::FailedPrecondition => return Ok(View::Tombstoned),
        Err(e) => return Err(format!("read of {stream}: {e}")),
    };
    let mut events = Vec::new();
    loop {
        match call.message().await {
            Ok(Some(b)) => events.extend(
                b.events
                    .iter()
                    .map(|e| (e.revision, String::from_utf8_lossy(&e.data).into_owned())),
            ),
            Ok(None) => break,
            Err(e) if e.code() == Code::NotFound => return Ok(View::NotFound(md_revision)),
            Err(e) if e.code() == Code::FailedPrecondition => return Ok(View::Tombstoned),
            Err(e) => return Err(format!("read of {stream}: {e}")),
        }
    }
    // Hidden events still count: an append that cannot hold tells the
    // stream's last revision, and writes nothing.
    let probe = v1::AppendRequest {
        stream: stream.into(),
        expected: Some(v1::ExpectedVersion::exact(u64::MAX)),
        events: vec![v1::EventData {
            id: Some(v1::Uuid::from_bytes(*uuid::Uuid::new_v4().as_bytes())),
            r#type: "probe".into(),
            data: Vec::new().into(),
            metadata: Vec::new().into(),
            content_type: None,
        }],
    };
    let current = match client.append(probe).await.map(|r| r.into_inner().result) {
        Ok(Some(AppendResult::WrongExpectedVersion(w))) => w.current_revision,
        other => return Err(format!("probe of {stream}: {other:?}")),
    };
    Ok(View::Visible(events, md_revision, current))
}

fn pick(rng: &mut Rng, m: &Model, serial: &mut u64) -> Op {
    // Data is unique per agent: its serial never goes back, across streams.
    let roll = rng.range(0, 100);
    if roll < 50 {
        let n = rng.range(1, 4);
        let data = (0..n)
            .map(|_| {
                *serial += 1;
                format!("e{serial}")
            })
            .collect();
        let expected = match (rng.range(0, 4), m.current()) {
            (0, _) => Expect::Any,
            (1, None) | (2, None) => Expect::NoStream,
            (1, Some(r)) | (2, Some(r)) => Expect::Exact(r),
            // Sometimes wrong on purpose: a conflict changes nothing.
            (_, Some(r)) => Expect::Exact(r + 1),
            (_, None) => Expect::StreamExists,
        };
        Op::Append(data, expected)
    } else if roll < 65 {
        Op::Delete
    } else if roll < 97 {
        let expected = if rng.chance(90) {
            m.metadata_revision
        } else {
            Some(m.metadata_revision.map_or(5, |r| r + 2))
        };
        Op::SetMetadata {
            expected,
            truncate_before: rng.range(0, m.next_revision + 1),
            max_count: rng.chance(50).then(|| rng.range(0, 6)),
        }
    } else {
        Op::Tombstone
    }
}

/// Runs `rounds` lifecycle rounds on one data directory; panics on the
/// first violation.
pub async fn run(tier: Tier, disk: &mut dyn Disk) {
    let name = tier.name;
    let rounds = env_u64(
        &format!("{}_LIFECYCLE_ROUNDS", tier.env),
        tier.default_rounds,
    );
    let seed = tier.seed();
    println!(
        "{name} lifecycle: {rounds} rounds, {}_SEED={seed}",
        tier.env
    );
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = disk.fresh(tmp.path());
    let log = tmp.path().join("strata.log");
    // Small segments, so that there are sealed ones for the scavenge.
    let segment_size = 16 << 10;
    let mut agents: Vec<Agent> = (0..AGENTS)
        .map(|i| Agent {
            index: i,
            stream: format!("life-{i}-0"),
            model: Model::default(),
            in_doubt: None,
            serial: 0,
            retired: Vec::new(),
        })
        .collect();
    let (mut ops, mut resolved_applied, mut resolved_lost) = (0u64, 0u64, 0u64);
    let mut scavenged = Scavenged::default();
    let fail = |violation: String, log: &Path| -> ! {
        panic!(
            "{name} lifecycle: {violation}\nserver log tail:\n{}",
            log_tail(log)
        );
    };
    for round in 0..rounds {
        let (mut server, mut client) = start_server(&data, &log, segment_size).await;
        // Every stream must be what its model (with or without the
        // operation in doubt) says.
        for a in agents.iter_mut() {
            let seen = observe(&mut client, &a.stream)
                .await
                .unwrap_or_else(|e| fail(e, &log));
            let without = a.model.view();
            match a.in_doubt.take() {
                None if a.model.accepts(&seen) => {}
                None => fail(
                    format!(
                        "round {round}: {} is {seen:?}, acknowledged {without:?}",
                        a.stream
                    ),
                    &log,
                ),
                Some(op) => {
                    let (after, _) = a.model.apply(&op);
                    if after.accepts(&seen) {
                        a.model = after;
                        resolved_applied += 1;
                    } else if a.model.accepts(&seen) {
                        resolved_lost += 1;
                    } else {
                        fail(
                            format!(
                                "round {round}: {} is {seen:?}; with {op:?} in doubt it must be {:?} or {without:?}",
                                a.stream,
                                after.view()
                            ),
                            &log,
                        );
                    }
                }
            }
            if a.model.tombstoned {
                a.retire();
            }
            for old in &a.retired {
                match observe(&mut client, old).await {
                    Ok(View::Tombstoned) => {}
                    other => fail(
                        format!("round {round}: tombstoned {old} is {other:?}"),
                        &log,
                    ),
                }
            }
        }
        if round + 1 == rounds {
            stop_gracefully(&mut server, &log);
            break;
        }
        // Load, then a kill at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, mut a) in std::mem::take(&mut agents).into_iter().enumerate() {
            let mut c = client.clone();
            let stop = stop.clone();
            let mut r = Rng(rng.next() ^ i as u64);
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                let mut violation = None;
                while !stop.load(Ordering::Acquire) {
                    let op = pick(&mut r, &a.model, &mut a.serial);
                    let (after, expected) = a.model.apply(&op);
                    match send(&mut c, &a.stream, &op).await {
                        Some(answer) if answer == expected => {
                            a.model = after;
                            done += 1;
                            if a.model.tombstoned {
                                a.retire();
                            }
                        }
                        Some(answer) => {
                            violation = Some(format!(
                                "{}: {op:?} on {:?} answered {answer:?}, expected {expected:?}",
                                a.stream, a.model
                            ));
                            break;
                        }
                        None => {
                            a.in_doubt = Some(op);
                            break;
                        }
                    }
                }
                (a, done, violation)
            }));
        }
        let scavenger = tokio::spawn(scavenge_repeatedly(server.addr, stop.clone()));
        tokio::time::sleep(Duration::from_millis(rng.range(30, 300))).await;
        kill9(&mut server);
        stop.store(true, Ordering::Release);
        scavenged.add(scavenger.await.expect("scavenger task"));
        for t in tasks {
            let (a, done, violation) = t.await.expect("agent task");
            if let Some(v) = violation {
                fail(format!("round {round}: {v}"), &log);
            }
            ops += done;
            agents.push(a);
        }
        disk.after_kill(tmp.path());
    }
    disk.retire(tmp.path());
    println!(
        "{name} lifecycle summary: {rounds} rounds, {ops} acknowledged operations, in doubt: {resolved_applied} were written, {resolved_lost} were not; scavenges: {} started, {} finished, {} segments gone through, {} bytes reclaimed; {}",
        scavenged.started,
        scavenged.finished,
        scavenged.segments,
        scavenged.bytes,
        disk.summary()
    );
}

/// What the scavenges of the rounds did, as far as their status showed
/// before each kill.
#[derive(Debug, Default)]
struct Scavenged {
    started: u64,
    finished: u64,
    segments: u64,
    bytes: u64,
}

impl Scavenged {
    fn add(&mut self, other: Scavenged) {
        self.started += other.started;
        self.finished += other.finished;
        self.segments += other.segments;
        self.bytes += other.bytes;
    }
}

/// Starts a scavenge, waits for it, and starts another, until `stop` (or
/// the server dies under it).
async fn scavenge_repeatedly(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> Scavenged {
    use v1::operations_client::OperationsClient;
    use v1::scavenge_status::State;
    let mut seen = Scavenged::default();
    let Ok(channel) = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
    else {
        return seen;
    };
    let mut ops = OperationsClient::new(channel);
    while !stop.load(Ordering::Acquire) {
        match ops.start_scavenge(v1::StartScavengeRequest {}).await {
            Ok(_) => seen.started += 1,
            Err(e) if e.code() == tonic::Code::AlreadyExists => {}
            Err(_) => return seen,
        }
        loop {
            let Ok(status) = ops.get_scavenge(v1::GetScavengeRequest {}).await else {
                return seen;
            };
            let status = status.into_inner();
            match status.state() {
                State::Running => tokio::time::sleep(Duration::from_millis(2)).await,
                State::Failed => panic!("a scavenge failed: {}", status.error),
                _ => {
                    seen.finished += 1;
                    seen.segments += status.segments_done;
                    seen.bytes += status.bytes_reclaimed;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}
