//! Stored events to wire bytes: the [`EventSink`] the service reads and
//! subscribes with. Each event is encoded from the log's buffer (or a live
//! batch) straight into the response's bytes; a live batch taken whole is
//! encoded once for every subscriber.

use strata_proto::v1::encoded::{EncodedEvents, EventFields, EventsEncoder};

use crate::store::{EventRecord, EventSink, RecordedEvent, SharedEncoding};

/// Largest bytes one response carries (a single larger event goes alone).
const RESPONSE_BYTES: usize = 1 << 20;

/// Encoded events, cut into responses of at most `max_events` events and
/// about [`RESPONSE_BYTES`] bytes.
pub struct WireEvents {
    done: Vec<EncodedEvents>,
    current: EventsEncoder,
    max_events: usize,
    count: usize,
    last_revision: Option<u64>,
}

fn fields<'a>(rec: &EventRecord<'a>) -> EventFields<'a> {
    EventFields {
        stream: rec.stream,
        revision: rec.revision,
        position: rec.position,
        id: rec.id.0,
        event_type: rec.event_type,
        data: rec.data,
        metadata: rec.metadata,
        content_type: rec.content_type,
        recorded_at_micros: rec.recorded_at_micros,
    }
}

impl WireEvents {
    /// The responses' event batches, in order.
    pub fn into_batches(mut self) -> Vec<EncodedEvents> {
        if !self.current.is_empty() {
            self.done.push(self.current.finish());
        }
        self.done
    }
}

impl EventSink for WireEvents {
    fn with_limit(max_events: usize) -> Self {
        WireEvents {
            done: Vec::new(),
            current: EventsEncoder::default(),
            max_events: max_events.max(1),
            count: 0,
            last_revision: None,
        }
    }

    fn push_record(&mut self, rec: &EventRecord<'_>) {
        let event = fields(rec);
        let len = event.encoded_len();
        // A response closes before the event that would take it past the
        // byte budget: a large event goes alone, so a response stays under
        // what clients accept by default (4 MiB) unless one event is larger.
        if !self.current.is_empty()
            && (self.current.count() >= self.max_events
                || self.current.bytes() + len > RESPONSE_BYTES)
        {
            let full = std::mem::take(&mut self.current);
            self.done.push(full.finish());
        }
        self.current.push_sized(&event, len);
        self.count += 1;
        self.last_revision = Some(rec.revision);
    }

    fn len(&self) -> usize {
        self.count
    }

    fn last_revision(&self) -> Option<u64> {
        self.last_revision
    }

    fn whole_batch(events: &[RecordedEvent], shared: &SharedEncoding, max_events: usize) -> Self {
        let encode = || {
            let mut w = WireEvents::with_limit(max_events);
            for e in events {
                w.push_shared(e);
            }
            w
        };
        let batches = shared
            .get_or_init(|| Box::new(encode().into_batches()))
            .downcast_ref::<Vec<EncodedEvents>>();
        match batches {
            Some(batches) => WireEvents {
                done: batches.clone(),
                current: EventsEncoder::default(),
                max_events,
                count: events.len(),
                last_revision: events.last().map(|e| e.revision),
            },
            // Another kind of sink got there first.
            None => encode(),
        }
    }
}
