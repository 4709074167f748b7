//! Reads: [`ReadOptions`] (direction, start, limit) and [`EventStream`],
//! which flattens the server's batches into single events while holding at
//! most one batch in memory.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use strata_proto::v1;

use crate::client::within;
use crate::error::{error_from_status, Error};
use crate::event::RecordedEvent;

/// Which way a read walks.
///
/// ```
/// use strata_client::{Direction, ReadOptions};
///
/// assert_eq!(ReadOptions::backwards().direction(), Direction::Backwards);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forwards,
    /// Newest first.
    Backwards,
}

/// Where a read starts; the event there is included.
///
/// ```
/// use strata_client::{ReadFrom, ReadOptions};
///
/// assert_eq!(ReadOptions::forwards().from_revision(3).start(), ReadFrom::Revision(3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadFrom {
    /// The first event.
    Start,
    /// The last event (a forwards read from here yields nothing).
    End,
    /// This revision, inclusive: for stream reads.
    Revision(u64),
    /// This global position, inclusive: for `$all` reads.
    Position(u64),
}

/// What a read returns: direction, starting point and limit. Starts with
/// [`ReadOptions::forwards`] (from the first event) or
/// [`ReadOptions::backwards`] (from the last).
///
/// ```
/// use strata_client::ReadOptions;
///
/// // Events 10..=19 of a stream:
/// let page = ReadOptions::forwards().from_revision(10).max_count(10);
/// // The latest event of a stream:
/// let last = ReadOptions::backwards().max_count(1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadOptions {
    direction: Direction,
    start: ReadFrom,
    max_count: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self::forwards()
    }
}

impl ReadOptions {
    /// Oldest first, from the first event, no limit.
    ///
    /// ```
    /// let o = strata_client::ReadOptions::forwards();
    /// assert_eq!(o.start(), strata_client::ReadFrom::Start);
    /// ```
    pub fn forwards() -> Self {
        ReadOptions {
            direction: Direction::Forwards,
            start: ReadFrom::Start,
            max_count: 0,
        }
    }

    /// Newest first, from the last event, no limit.
    ///
    /// ```
    /// let o = strata_client::ReadOptions::backwards();
    /// assert_eq!(o.start(), strata_client::ReadFrom::End);
    /// ```
    pub fn backwards() -> Self {
        ReadOptions {
            direction: Direction::Backwards,
            start: ReadFrom::End,
            max_count: 0,
        }
    }

    /// Starts at `start`, inclusive.
    ///
    /// ```
    /// use strata_client::{ReadFrom, ReadOptions};
    /// let o = ReadOptions::backwards().start_at(ReadFrom::Revision(5));
    /// ```
    pub fn start_at(mut self, start: ReadFrom) -> Self {
        self.start = start;
        self
    }

    /// Starts at this revision, inclusive (stream reads).
    ///
    /// ```
    /// let o = strata_client::ReadOptions::forwards().from_revision(5);
    /// ```
    pub fn from_revision(self, revision: u64) -> Self {
        self.start_at(ReadFrom::Revision(revision))
    }

    /// Starts at this global position, inclusive (`$all` reads).
    ///
    /// ```
    /// let o = strata_client::ReadOptions::forwards().from_position(1000);
    /// ```
    pub fn from_position(self, position: u64) -> Self {
        self.start_at(ReadFrom::Position(position))
    }

    /// Returns at most `max_count` events in total; 0 means no limit.
    ///
    /// ```
    /// let o = strata_client::ReadOptions::forwards().max_count(100);
    /// assert_eq!(o.limit(), 100);
    /// ```
    pub fn max_count(mut self, max_count: u64) -> Self {
        self.max_count = max_count;
        self
    }

    /// The direction.
    ///
    /// ```
    /// # use strata_client::{Direction, ReadOptions};
    /// assert_eq!(ReadOptions::forwards().direction(), Direction::Forwards);
    /// ```
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The starting point.
    ///
    /// ```
    /// # use strata_client::{ReadFrom, ReadOptions};
    /// assert_eq!(ReadOptions::forwards().from_position(4).start(), ReadFrom::Position(4));
    /// ```
    pub fn start(&self) -> ReadFrom {
        self.start
    }

    /// The limit; 0 means none.
    ///
    /// ```
    /// assert_eq!(strata_client::ReadOptions::forwards().limit(), 0);
    /// ```
    pub fn limit(&self) -> u64 {
        self.max_count
    }

    pub(crate) fn to_wire(
        self,
        target: v1::read_request::Target,
        filter: Option<v1::Filter>,
    ) -> v1::ReadRequest {
        let from = match self.start {
            ReadFrom::Start => v1::ReadFrom::start(),
            ReadFrom::End => v1::ReadFrom::end(),
            ReadFrom::Revision(r) => v1::ReadFrom::revision(r),
            ReadFrom::Position(p) => v1::ReadFrom::position(p),
        };
        let direction = match self.direction {
            Direction::Forwards => v1::Direction::Forwards,
            Direction::Backwards => v1::Direction::Backwards,
        };
        v1::ReadRequest {
            target: Some(target),
            direction: direction.into(),
            from: Some(from),
            max_count: self.max_count,
            filter,
        }
    }
}

/// The events of a read, one by one, in read order: a
/// [`Stream`] of `Result<RecordedEvent, Error>`. It holds at most one of the
/// server's batches at a time, and ends after the last event or the first
/// error. Drop it to stop the read early.
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// use strata_client::{ReadOptions, StreamExt};
///
/// let mut events = client.read_stream("order-1", ReadOptions::forwards()).await?;
/// while let Some(event) = events.next().await {
///     let event = event?;
///     println!("{}: {}", event.revision, event.event_type);
/// }
/// # Ok(()) }
/// ```
pub struct EventStream {
    inner: BoxStream<'static, Result<RecordedEvent, Error>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

struct ReadState {
    responses: tonic::Streaming<v1::ReadResponse>,
    batch: VecDeque<v1::RecordedEvent>,
    deadline: Option<Duration>,
    done: bool,
}

impl EventStream {
    pub(crate) fn new(
        responses: tonic::Streaming<v1::ReadResponse>,
        deadline: Option<Duration>,
    ) -> Self {
        let state = ReadState {
            responses,
            batch: VecDeque::new(),
            deadline,
            done: false,
        };
        let inner = stream::unfold(state, |mut s| async move {
            loop {
                if s.done {
                    return None;
                }
                if let Some(event) = s.batch.pop_front() {
                    return Some((RecordedEvent::from_wire(event), s));
                }
                let next = match s.deadline {
                    Some(d) => within(d, s.responses.message()).await,
                    None => s.responses.message().await,
                };
                match next {
                    Ok(Some(response)) => s.batch = response.events.into(),
                    Ok(None) => return None,
                    Err(status) => {
                        s.done = true;
                        return Some((Err(error_from_status(status)), s));
                    }
                }
            }
        });
        EventStream {
            inner: inner.boxed(),
        }
    }
}

impl Stream for EventStream {
    type Item = Result<RecordedEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}
