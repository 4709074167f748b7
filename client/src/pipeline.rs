//! [`Pipeline`]: many appends over one `PipelinedAppend` call. A cheap,
//! cloneable handle: every task appends through it and awaits its own
//! answer, matched by correlation id; a reader task hands each answer to the
//! append that waits for it. When the call breaks, every waiting append
//! fails with the reason, and later appends fail at once (open a new
//! pipeline to go on).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use strata_proto::v1;
use strata_proto::v1::pipelined_append_response::Outcome;
use strata_proto::v1::streams_client::StreamsClient;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

use crate::auth::AuthChannel;
use crate::client::{append_outcome, append_request};
use crate::error::{error_from_status, Error};
use crate::event::{AppendResult, EventData, ExpectedVersion};

/// Requests queued on the client side before `append` waits.
const QUEUE: usize = 256;

type Answer = Result<v1::AppendResponse, Status>;

/// Appends in flight, by correlation id; `None` once the call has ended.
type Waiting = Mutex<Option<HashMap<u64, oneshot::Sender<Answer>>>>;

/// A shared `PipelinedAppend` call. See [`Client::pipeline`](crate::Client::pipeline).
#[derive(Clone, Debug)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: mpsc::Sender<v1::PipelinedAppendRequest>,
    waiting: Arc<Waiting>,
    next_id: AtomicU64,
    deadline: Option<Duration>,
}

impl Pipeline {
    pub(crate) async fn open(
        mut grpc: StreamsClient<AuthChannel>,
        deadline: Option<Duration>,
    ) -> Result<Pipeline, Error> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let outgoing =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let mut answers = grpc
            .pipelined_append(outgoing)
            .await
            .map_err(error_from_status)?
            .into_inner();
        let waiting: Arc<Waiting> = Arc::new(Mutex::new(Some(HashMap::new())));
        let w = waiting.clone();
        tokio::spawn(async move {
            let end = loop {
                match answers.next().await {
                    Some(Ok(a)) => {
                        let answer = match a.outcome {
                            Some(Outcome::Result(r)) => Ok(r),
                            Some(Outcome::Error(e)) => Err(Status::with_details(
                                Code::from(e.code),
                                e.message,
                                e.details.into(),
                            )),
                            None => Err(Status::internal("pipelined answer without an outcome")),
                        };
                        let to = lock(&w).as_mut().and_then(|m| m.remove(&a.correlation_id));
                        if let Some(to) = to {
                            let _ = to.send(answer);
                        }
                    }
                    Some(Err(status)) => break status,
                    None => break Status::unavailable("the pipelined call ended"),
                }
            };
            // Fail everything still waiting; later appends fail at once.
            let left = lock(&w).take().unwrap_or_default();
            for (_, to) in left {
                let _ = to.send(Err(end.clone()));
            }
        });
        Ok(Pipeline {
            inner: Arc::new(Inner {
                requests: tx,
                waiting,
                next_id: AtomicU64::new(1),
                deadline,
            }),
        })
    }

    /// Appends `events` to `stream` atomically, with exactly
    /// [`Client::append`](crate::Client::append)'s semantics, and waits for
    /// this append's own answer. Appends in flight at the same time are
    /// independent and may commit in any order: to chain expected versions
    /// on one stream, await each answer before the next append to it.
    pub async fn append(
        &self,
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = EventData>,
    ) -> Result<AppendResult, Error> {
        let stream = stream.into();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        match lock(&self.inner.waiting).as_mut() {
            Some(m) => {
                m.insert(id, tx);
            }
            None => return Err(ended()),
        }
        // However this future ends (answered, timed out, dropped), its entry
        // does not outlive it.
        let _forget = Forget { pipeline: self, id };
        let request = v1::PipelinedAppendRequest {
            correlation_id: id,
            append: Some(append_request(stream.clone(), expected, events)),
        };
        let exchange = async {
            // While the request waits for room, the call may end: its end
            // reaches `rx`.
            tokio::select! {
                sent = self.inner.requests.send(request) => {
                    if sent.is_err() {
                        return Err(ended());
                    }
                }
                early = &mut rx => return answer(stream.clone(), expected, early),
            }
            answer(stream.clone(), expected, rx.await)
        };
        match self.inner.deadline {
            None => exchange.await,
            Some(d) => tokio::time::timeout(d, exchange).await.unwrap_or_else(|_| {
                Err(error_from_status(Status::deadline_exceeded(format!(
                    "no answer within {d:?}"
                ))))
            }),
        }
    }

    fn forget(&self, id: u64) {
        if let Some(m) = lock(&self.inner.waiting).as_mut() {
            m.remove(&id);
        }
    }
}

/// Removes an append's entry from the waiting map when its future ends.
struct Forget<'a> {
    pipeline: &'a Pipeline,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.pipeline.forget(self.id);
    }
}

/// The result of one append from what its waiter received.
fn answer(
    stream: String,
    expected: ExpectedVersion,
    got: Result<Answer, oneshot::error::RecvError>,
) -> Result<AppendResult, Error> {
    match got {
        Ok(Ok(response)) => append_outcome(stream, expected, response),
        Ok(Err(status)) => Err(error_from_status(status)),
        Err(_) => Err(ended()),
    }
}

fn lock(w: &Waiting) -> std::sync::MutexGuard<'_, Option<HashMap<u64, oneshot::Sender<Answer>>>> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

fn ended() -> Error {
    error_from_status(Status::unavailable("the pipelined call has ended"))
}
