//! Where a read puts the events it finds. The engine's own callers take
//! owned [`RecordedEvent`]s; the gRPC service takes wire bytes, encoded
//! straight from the log's buffer (see `service::wire`), so that a stored
//! event reaches the network without becoming an owned event first.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use super::record::EventRecord;
use super::types::RecordedEvent;

/// One encoding of a live batch, made by the first subscriber that takes
/// the whole batch and shared by every other one.
pub type SharedEncoding = OnceLock<Box<dyn Any + Send + Sync>>;

/// A batch of events being filled by a read or a subscription.
pub trait EventSink: Send + 'static {
    /// An empty batch; a sink may cut what it holds into pieces of at most
    /// `max_events` events (one response each).
    fn with_limit(max_events: usize) -> Self;
    /// Adds an event borrowed from the log.
    fn push_record(&mut self, rec: &EventRecord<'_>);
    /// Adds an owned event (by default, as an event borrowed from the log).
    fn push_event(&mut self, event: RecordedEvent) {
        self.push_record(&event.as_record());
    }
    /// Adds an event shared with others (a live batch's); by default, as an
    /// event borrowed from the log.
    fn push_shared(&mut self, event: &RecordedEvent) {
        self.push_record(&event.as_record());
    }
    /// Events held.
    fn len(&self) -> usize;
    /// Whether no event is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Revision of the last event held.
    fn last_revision(&self) -> Option<u64>;
    /// Every event of a live batch. `shared` belongs to the batch: a sink
    /// may keep its work there for the other subscribers.
    fn whole_batch(events: &[RecordedEvent], shared: &SharedEncoding, max_events: usize) -> Self
    where
        Self: Sized,
    {
        let _ = shared;
        // The batch's pieces are at most `max_events` long, and never
        // longer than the batch.
        let mut sink = Self::with_limit(max_events.min(events.len()));
        for e in events {
            sink.push_shared(e);
        }
        sink
    }
}

impl EventSink for Vec<RecordedEvent> {
    fn with_limit(_max_events: usize) -> Self {
        Vec::new()
    }

    fn push_record(&mut self, rec: &EventRecord<'_>) {
        // Consecutive events mostly share a stream: share its name.
        let stream = match self.last() {
            Some(last) if &*last.stream == rec.stream => last.stream.clone(),
            _ => Arc::from(rec.stream),
        };
        self.push(rec.to_event(stream));
    }

    fn push_event(&mut self, event: RecordedEvent) {
        self.push(event);
    }

    fn push_shared(&mut self, event: &RecordedEvent) {
        self.push(event.clone());
    }

    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn last_revision(&self) -> Option<u64> {
        self.last().map(|e| e.revision)
    }
}
