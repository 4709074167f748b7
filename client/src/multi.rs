//! [`MultiAppend`]: appends to several streams, and conditions on others,
//! committed in one atomic write by [`Client::multi_append`](crate::Client::multi_append).

use strata_proto::v1;

use crate::client::append_request;
use crate::event::{EventData, ExpectedVersion};

/// A multi-append being built: appends (each to a different stream) and
/// checks on streams that are not written.
///
/// ```
/// use strata_client::{EventData, ExpectedVersion, MultiAppend};
/// let m = MultiAppend::new()
///     .append("order-1", ExpectedVersion::NoStream, [EventData::binary("Placed", vec![])])
///     .append("stock-9", ExpectedVersion::Any, [EventData::binary("Reserved", vec![])])
///     .check("customer-7", ExpectedVersion::StreamExists);
/// assert_eq!(m.len(), 2);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MultiAppend {
    appends: Vec<(String, ExpectedVersion, Vec<EventData>)>,
    checks: Vec<(String, ExpectedVersion)>,
}

impl MultiAppend {
    /// An empty multi-append (at least one append is needed to send it).
    pub fn new() -> Self {
        MultiAppend::default()
    }

    /// Adds an append; its events take positions after those of the
    /// appends added before it.
    pub fn append(
        mut self,
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = EventData>,
    ) -> Self {
        self.appends
            .push((stream.into(), expected, events.into_iter().collect()));
        self
    }

    /// Adds a condition on a stream that is not written.
    pub fn check(mut self, stream: impl Into<String>, expected: ExpectedVersion) -> Self {
        self.checks.push((stream.into(), expected));
        self
    }

    /// Number of appends.
    pub fn len(&self) -> usize {
        self.appends.len()
    }

    /// Whether it holds no append.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty()
    }

    /// The expectations of the appends and checks, by stream, in request order.
    pub(crate) fn expectations(&self) -> Vec<(String, ExpectedVersion)> {
        self.appends
            .iter()
            .map(|(s, e, _)| (s.clone(), *e))
            .chain(self.checks.iter().cloned())
            .collect()
    }

    pub(crate) fn into_wire(self) -> v1::MultiAppendRequest {
        v1::MultiAppendRequest {
            appends: self
                .appends
                .into_iter()
                .map(|(stream, expected, events)| append_request(stream, expected, events))
                .collect(),
            checks: self
                .checks
                .into_iter()
                .map(|(stream, expected)| v1::StreamCheck {
                    stream,
                    expected: Some(expected.to_wire()),
                })
                .collect(),
        }
    }
}

/// Where a committed multi-append's events landed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MultiAppendResult {
    /// One per append, in the order they were added: the stream, the
    /// revision and the position of its last event.
    pub results: Vec<StreamAppended>,
    /// Position of the last event written.
    pub position: u64,
}

/// One append of a committed multi-append.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamAppended {
    /// The stream.
    pub stream: String,
    /// Revision of its last written event.
    pub next_expected_revision: u64,
    /// Position of its last written event.
    pub position: u64,
}

/// A stream whose expected version did not hold in a multi-append.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConflict {
    /// The stream.
    pub stream: String,
    /// What the request expected.
    pub expected: ExpectedVersion,
    /// Revision of its last event now; `None` when it does not exist.
    pub current: Option<u64>,
}
