//! Stored events to KurrentDB's wire bytes: the [`EventSink`] the layer's
//! reads and catch-up subscriptions take their events with.
//!
//! KurrentDB answers a read with one `ReadResp` per event. Each is written
//! here straight from the log's buffer (or a live batch) into one buffer
//! per batch, as prost would write the message `convert::read_event`
//! builds (the tests decode one and compare it with the other), and goes to
//! tonic as an [`Encoded`] slice of that buffer: no generated message, map,
//! or owned string per event.

use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encoded_len_varint, WireType};
use strata_proto::kurrentdb::streams::read_req::options::uuid_option::Content as UuidForm;
use strata_proto::v1::encoded::{
    delimited_len, key, text_len, varint_field_len as varint_len, Encoded,
};
use strata_proto::v1::hyphenated_ascii;

use super::convert::OCTET_STREAM;
use super::{convert, metadata, position};
use crate::store::{EventRecord, EventSink};

/// The form event ids are sent in, chosen by the read (`uuid_option`).
pub(super) trait IdForm: Send + 'static {
    /// Whether ids go as hyphenated text rather than two integers.
    const TEXT: bool;
}

/// Ids as `structured` (KurrentDB's default).
pub(super) struct Structured;

/// Ids as `string`.
pub(super) struct Text;

impl IdForm for Structured {
    const TEXT: bool = false;
}

impl IdForm for Text {
    const TEXT: bool = true;
}

/// Whether a read's `uuid_option` asks for text ids.
pub(super) fn wants_text(form: Option<&UuidForm>) -> bool {
    matches!(form, Some(UuidForm::String(_)))
}

/// One batch of events, each encoded as a whole `ReadResp` carrying it.
pub(super) struct KurrentEvents<F> {
    buf: BytesMut,
    /// Where each message ends in `buf`.
    ends: Vec<usize>,
    /// Events the batch is expected to hold at most.
    limit: usize,
    /// The last `created` written, by its time in µs (the events of one
    /// append share it).
    created: Option<(i64, Decimal)>,
    last_revision: Option<u64>,
    form: PhantomData<F>,
}

impl<F> KurrentEvents<F> {
    /// The messages, at most `limit` of them, in order.
    pub(super) fn into_messages(mut self, limit: usize) -> Messages {
        self.ends.truncate(limit);
        let end = self.ends.last().copied().unwrap_or(0);
        self.buf.truncate(end);
        Messages {
            body: self.buf.freeze(),
            ends: self.ends,
            next: 0,
            start: 0,
        }
    }
}

/// Encoded messages in one buffer, taken one at a time. Each is cut from
/// the buffer only when taken, by the task that sends it (so the buffer's
/// shared count is touched by one thread).
#[derive(Debug, Default)]
pub(super) struct Messages {
    body: Bytes,
    /// Where each message ends in `body`.
    ends: Vec<usize>,
    /// The next message's index, and where it starts.
    next: usize,
    start: usize,
}

impl Messages {
    /// One message.
    pub(super) fn one(message: Encoded) -> Self {
        let body = message.to_bytes();
        Messages {
            ends: vec![body.len()],
            body,
            next: 0,
            start: 0,
        }
    }

    /// Messages not taken yet.
    pub(super) fn len(&self) -> usize {
        self.ends.len() - self.next
    }

    /// Every message not taken yet, each as `f` makes it.
    pub(super) fn rewrite(self, f: impl FnMut(Encoded) -> Encoded) -> Self {
        let mut body = BytesMut::new();
        let mut ends = Vec::with_capacity(self.len());
        for m in Iterator::map(self, f) {
            body.put_slice(&m.to_bytes());
            ends.push(body.len());
        }
        Messages {
            body: body.freeze(),
            ends,
            next: 0,
            start: 0,
        }
    }
}

impl Iterator for Messages {
    type Item = Encoded;

    fn next(&mut self) -> Option<Encoded> {
        let end = *self.ends.get(self.next)?;
        let message = Encoded::raw(self.body.slice(self.start..end));
        self.start = end;
        self.next += 1;
        Some(message)
    }
}

impl<F: IdForm> EventSink for KurrentEvents<F> {
    fn with_limit(max_events: usize) -> Self {
        KurrentEvents {
            buf: BytesMut::new(),
            ends: Vec::with_capacity(max_events.min(1024)),
            limit: max_events,
            created: None,
            last_revision: None,
            form: PhantomData,
        }
    }

    fn push_record(&mut self, rec: &EventRecord<'_>) {
        let shown = metadata::shown_data(rec.stream, rec.event_type, rec.data);
        let data = shown.as_deref().unwrap_or(rec.data);
        let created = match self.created {
            Some((micros, created)) if micros == rec.recorded_at_micros => created,
            _ => {
                let created = Decimal::of(convert::ticks_from_micros(rec.recorded_at_micros));
                self.created = Some((rec.recorded_at_micros, created));
                created
            }
        };
        let message = Message::of::<F>(rec, data, created);
        let len = message.len();
        if self.buf.capacity() - self.buf.len() < len {
            // Room for the rest of the batch at this event's size: one
            // allocation for a batch of like events.
            let left = self.limit.saturating_sub(self.ends.len()).max(1);
            self.buf
                .reserve(len.saturating_mul(left).min(MAX_RESERVE).max(len));
        }
        message.put::<F>(&mut self.buf);
        debug_assert_eq!(self.buf.len() - self.ends.last().copied().unwrap_or(0), len);
        self.ends.push(self.buf.len());
        self.last_revision = Some(rec.revision);
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn last_revision(&self) -> Option<u64> {
        self.last_revision
    }
}

// Field numbers, from `proto/kurrentdb/streams.proto`.
/// `ReadResp.event`.
const RESP_EVENT: u32 = 1;
/// `ReadResp.ReadEvent.event`.
const READ_EVENT_EVENT: u32 = 1;
/// `ReadResp.ReadEvent.commit_position`.
const READ_EVENT_COMMIT: u32 = 3;
/// `RecordedEvent` fields.
const ID: u32 = 1;
const STREAM: u32 = 2;
const REVISION: u32 = 3;
const PREPARE: u32 = 4;
const COMMIT: u32 = 5;
const METADATA: u32 = 6;
const CUSTOM_METADATA: u32 = 7;
const DATA: u32 = 8;
/// `StreamIdentifier.stream_name`.
const STREAM_NAME: u32 = 3;
/// `UUID.structured`, `UUID.string`.
const UUID_STRUCTURED: u32 = 1;
const UUID_STRING: u32 = 2;
/// `UUID.Structured` fields.
const MOST: u32 = 1;
const LEAST: u32 = 2;

/// Writes a varint byte by byte (inlined: a copy of a few bytes through
/// `put_slice` costs a call to `memmove`).
#[inline]
fn put_raw_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Writes a one-byte key (every key here is below 0x80) and a varint.
#[inline]
fn put_key_and_varint(buf: &mut BytesMut, key: u64, value: u64) {
    buf.put_u8(key as u8);
    put_raw_varint(buf, value);
}

fn put_delimited_head(buf: &mut BytesMut, field: u32, len: usize) {
    put_key_and_varint(buf, key(field, WireType::LengthDelimited), len as u64);
}

fn put_text(buf: &mut BytesMut, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_delimited_head(buf, field, bytes.len());
        buf.put_slice(bytes);
    }
}

fn put_varint(buf: &mut BytesMut, field: u32, value: u64) {
    if value != 0 {
        put_key_and_varint(buf, key(field, WireType::Varint), value);
    }
}

/// `created` in decimal, without allocating: up to 20 characters.
#[derive(Clone, Copy)]
struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    fn of(value: i64) -> Decimal {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if value < 0 {
            at -= 1;
            digits[at] = b'-';
        }
        Decimal { digits, start: at }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// A `metadata` map entry's fixed start: the key field and the key, then
/// the value's key byte (`"type"`, `"content-type"` and `"created"` are
/// never empty, so the key is always written). `N` is the prefix's length.
struct Entry<const N: usize> {
    prefix: [u8; N],
}

// Each prefix is `[0x0a, key length, key…, 0x12]`.
const TYPE_ENTRY: Entry<7> = Entry {
    prefix: *b"\x0a\x04type\x12",
};
const CONTENT_TYPE_ENTRY: Entry<15> = Entry {
    prefix: *b"\x0a\x0ccontent-type\x12",
};
const CREATED_ENTRY: Entry<10> = Entry {
    prefix: *b"\x0a\x07created\x12",
};

impl<const N: usize> Entry<N> {
    /// Bytes of the entry's message; an empty value is left out, as prost
    /// leaves it.
    fn len(&self, value: &[u8]) -> usize {
        if value.is_empty() {
            N - 1
        } else {
            N + encoded_len_varint(value.len() as u64) + value.len()
        }
    }

    fn put(&self, buf: &mut BytesMut, value: &[u8]) {
        put_delimited_head(buf, METADATA, self.len(value));
        // The prefix's length is a constant: copied inline.
        buf.put_slice(&self.prefix);
        if value.is_empty() {
            // Without the value's key byte.
            buf.truncate(buf.len() - 1);
        } else {
            put_raw_varint(buf, value.len() as u64);
            buf.put_slice(value);
        }
    }
}

/// Most bytes a batch reserves ahead of its events (the store cuts batches
/// at about 1 MiB of payloads).
const MAX_RESERVE: usize = 2 << 20;

/// One event's message, measured before it is written.
struct Message<'r, 'a> {
    rec: &'r EventRecord<'a>,
    data: &'r [u8],
    wire: u64,
    content_type: &'a str,
    created: Decimal,
    most: u64,
    least: u64,
    /// Bytes of the `UUID` message's one field's value (the text, or the
    /// `Structured` message).
    id_value_len: usize,
    recorded_len: usize,
    read_event_len: usize,
}

impl<'r, 'a> Message<'r, 'a> {
    /// The message of `rec`, whose data is sent as `data`.
    fn of<F: IdForm>(rec: &'r EventRecord<'a>, data: &'r [u8], created: Decimal) -> Self {
        let wire = position::to_wire(rec.position);
        let content_type = match rec.content_type {
            "" => OCTET_STREAM,
            c => c,
        };
        let (most, least) = uuid::Uuid::from_bytes(rec.id.0).as_u64_pair();
        let id_value_len = if F::TEXT {
            36
        } else {
            varint_len(most) + varint_len(least)
        };
        let recorded_len = delimited_len(delimited_len(id_value_len))
            + delimited_len(text_len(rec.stream.len()))
            + varint_len(rec.revision)
            + varint_len(wire)
            + varint_len(wire)
            + delimited_len(TYPE_ENTRY.len(rec.event_type.as_bytes()))
            + delimited_len(CONTENT_TYPE_ENTRY.len(content_type.as_bytes()))
            + delimited_len(CREATED_ENTRY.len(created.as_bytes()))
            + text_len(rec.metadata.len())
            + text_len(data.len());
        // The oneof `position` is written even when 0.
        let read_event_len = delimited_len(recorded_len) + 1 + encoded_len_varint(wire);
        Message {
            rec,
            data,
            wire,
            content_type,
            created,
            most,
            least,
            id_value_len,
            recorded_len,
            read_event_len,
        }
    }

    /// Bytes of the whole `ReadResp`.
    fn len(&self) -> usize {
        delimited_len(self.read_event_len)
    }

    /// Appends `ReadResp { event: ReadEvent { event, commit_position } }`.
    fn put<F: IdForm>(&self, buf: &mut BytesMut) {
        let rec = self.rec;
        put_delimited_head(buf, RESP_EVENT, self.read_event_len);
        put_delimited_head(buf, READ_EVENT_EVENT, self.recorded_len);
        put_delimited_head(buf, ID, delimited_len(self.id_value_len));
        if F::TEXT {
            put_delimited_head(buf, UUID_STRING, self.id_value_len);
            buf.put_slice(&hyphenated_ascii(&rec.id.0));
        } else {
            put_delimited_head(buf, UUID_STRUCTURED, self.id_value_len);
            // int64 fields: the two's-complement bits, as varints.
            put_varint(buf, MOST, self.most);
            put_varint(buf, LEAST, self.least);
        }
        put_delimited_head(buf, STREAM, text_len(rec.stream.len()));
        put_text(buf, STREAM_NAME, rec.stream.as_bytes());
        put_varint(buf, REVISION, rec.revision);
        put_varint(buf, PREPARE, self.wire);
        put_varint(buf, COMMIT, self.wire);
        TYPE_ENTRY.put(buf, rec.event_type.as_bytes());
        CONTENT_TYPE_ENTRY.put(buf, self.content_type.as_bytes());
        CREATED_ENTRY.put(buf, self.created.as_bytes());
        put_text(buf, CUSTOM_METADATA, rec.metadata);
        put_text(buf, DATA, self.data);
        // The oneof `position` is written even when 0.
        put_key_and_varint(buf, key(READ_EVENT_COMMIT, WireType::Varint), self.wire);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use prost::Message as _;
    use strata_proto::kurrentdb::shared::Empty;
    use strata_proto::kurrentdb::streams::read_resp::Content;
    use strata_proto::kurrentdb::streams::ReadResp;

    use super::*;
    use crate::store::{EventId, RecordedEvent};

    /// An event of type `T` with data `d`, no metadata, no content type.
    fn event(stream: &str, revision: u64, position: u64) -> RecordedEvent {
        RecordedEvent {
            stream: Arc::from(stream),
            revision,
            position,
            id: EventId(ID),
            event_type: "T".to_owned(),
            content_type: None,
            metadata: Bytes::new(),
            data: Bytes::from_static(b"d"),
            recorded_at_micros: 1,
        }
    }

    /// Encodes `events` through the sink and checks each message against
    /// the generated message `convert::read_event` builds: the same length
    /// (which does not depend on the map's order) and the same decoded
    /// message.
    fn assert_agrees<F: IdForm>(events: &[RecordedEvent]) {
        let form = F::TEXT.then_some(UuidForm::String(Empty {}));
        let mut sink = KurrentEvents::<F>::with_limit(events.len());
        for e in events {
            sink.push_event(e.clone());
        }
        assert_eq!(sink.len(), events.len());
        assert_eq!(
            sink.last_revision(),
            events.last().map(|e| e.revision),
            "last revision"
        );
        let messages: Vec<Encoded> = sink.into_messages(usize::MAX).collect();
        assert_eq!(messages.len(), events.len());
        for (m, e) in messages.iter().zip(events) {
            let expected = ReadResp {
                content: Some(Content::Event(convert::read_event(e, form))),
            };
            let bytes = m.to_bytes();
            assert_eq!(bytes.len(), expected.encoded_len(), "length of {e:?}");
            let decoded = ReadResp::decode(bytes).expect("decodes");
            assert_eq!(decoded, expected, "message of {e:?}");
        }
    }

    const ID: [u8; 16] = [
        0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f, 0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95,
        0x0e,
    ];

    /// One event's message written out by hand from the protobuf rules and
    /// streams.proto, so that a change on both sides at once cannot pass.
    #[test]
    fn golden_message() {
        let e = RecordedEvent {
            data: Bytes::from_static(b"x"),
            ..event("s", 1, 0)
        };
        let mut sink = KurrentEvents::<Text>::with_limit(1);
        sink.push_event(e);
        let bytes = sink
            .into_messages(1)
            .next()
            .expect("one message")
            .to_bytes();
        let mut recorded = Vec::new();
        // id: UUID { string (2): 36 characters }
        recorded.extend_from_slice(&[0x0a, 38, 0x12, 36]);
        recorded.extend_from_slice(b"0f8fad5b-d9cb-469f-a165-70867728950e");
        // stream_identifier: { stream_name (3): "s" }
        recorded.extend_from_slice(&[0x12, 3, 0x1a, 1, b's']);
        // stream_revision 1, prepare_position 1, commit_position 1
        recorded.extend_from_slice(&[0x18, 1, 0x20, 1, 0x28, 1]);
        // metadata entries: type, content-type, created (1 µs = 10 ticks)
        recorded.extend_from_slice(&[0x32, 9, 0x0a, 4]);
        recorded.extend_from_slice(b"type");
        recorded.extend_from_slice(&[0x12, 1, b'T']);
        recorded.extend_from_slice(&[0x32, 40, 0x0a, 12]);
        recorded.extend_from_slice(b"content-type");
        recorded.extend_from_slice(&[0x12, 24]);
        recorded.extend_from_slice(b"application/octet-stream");
        recorded.extend_from_slice(&[0x32, 13, 0x0a, 7]);
        recorded.extend_from_slice(b"created");
        recorded.extend_from_slice(&[0x12, 2]);
        recorded.extend_from_slice(b"10");
        // no custom_metadata; data "x"
        recorded.extend_from_slice(&[0x42, 1, b'x']);
        let mut read_event = vec![0x0a, recorded.len() as u8];
        read_event.extend_from_slice(&recorded);
        // commit_position (3) 1
        read_event.extend_from_slice(&[0x18, 1]);
        let mut expected = vec![0x0a, read_event.len() as u8];
        expected.extend_from_slice(&read_event);
        assert_eq!(bytes.as_ref(), expected.as_slice());
    }

    #[test]
    fn structured_ids_negative_halves_and_large_values_agree() {
        let high = [0xff; 16];
        let events = [
            RecordedEvent {
                id: EventId([0; 16]),
                data: Bytes::new(),
                recorded_at_micros: 0,
                ..event("a", 0, 0)
            },
            RecordedEvent {
                id: EventId(high),
                content_type: Some("application/json".into()),
                metadata: Bytes::from_static(b"m"),
                data: Bytes::from_static(b"{}"),
                recorded_at_micros: -5,
                ..event("a", 1, 1)
            },
            RecordedEvent {
                event_type: "Type".into(),
                content_type: Some("text/plain".into()),
                metadata: Bytes::from(vec![1; 300]),
                data: Bytes::from(vec![2; 70_000]),
                recorded_at_micros: i64::MAX / 10,
                ..event("stream-with-a-longer-name", u64::MAX, u64::MAX - 1)
            },
        ];
        assert_agrees::<Structured>(&events);
        assert_agrees::<Text>(&events);
    }

    #[test]
    fn metadata_stream_versions_are_rewritten_like_the_generated_path() {
        let events = [
            RecordedEvent {
                event_type: metadata::EVENT_TYPE.into(),
                content_type: Some("application/json".into()),
                data: Bytes::from_static(br#"{"max_count":2}"#),
                ..event("$$orders", 0, 3)
            },
            RecordedEvent {
                event_type: metadata::EVENT_TYPE.into(),
                data: Bytes::from_static(b"not json"),
                ..event("$$orders", 1, 4)
            },
        ];
        assert_agrees::<Structured>(&events);
    }

    #[test]
    fn a_limit_keeps_the_first_messages() {
        let mut sink = KurrentEvents::<Structured>::with_limit(3);
        for r in 0..3 {
            sink.push_event(event("s", r, r));
        }
        let all: Vec<Encoded> = sink.into_messages(usize::MAX).collect();
        let mut sink = KurrentEvents::<Structured>::with_limit(3);
        for r in 0..3 {
            sink.push_event(event("s", r, r));
        }
        let first = sink.into_messages(2);
        assert_eq!(first.len(), 2);
        assert_eq!(first.collect::<Vec<_>>(), all[..2].to_vec());
    }

    #[test]
    fn entry_prefixes_spell_the_keys_reads_are_built_with() {
        for (prefix, key) in [
            (&TYPE_ENTRY.prefix[..], convert::TYPE),
            (&CONTENT_TYPE_ENTRY.prefix[..], convert::CONTENT_TYPE),
            (&CREATED_ENTRY.prefix[..], convert::CREATED),
        ] {
            let mut expected = vec![0x0a, key.len() as u8];
            expected.extend_from_slice(key.as_bytes());
            expected.push(0x12);
            assert_eq!(prefix, expected.as_slice(), "{key}");
        }
    }

    #[test]
    fn decimals_match_to_string() {
        for v in [
            0,
            1,
            9,
            10,
            -1,
            -10,
            i64::MAX,
            i64::MIN,
            17_000_000_001_234_560,
        ] {
            assert_eq!(Decimal::of(v).as_bytes(), v.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn any_event_agrees_with_the_generated_message(
            stream in "[a-z$-]{0,20}",
            revision in any::<u64>(),
            position in 0..u64::MAX,
            id in any::<[u8; 16]>(),
            event_type in "[A-Za-z.]{0,12}",
            content_type in proptest::option::of("[a-z/+]{0,20}"),
            metadata in proptest::collection::vec(any::<u8>(), 0..200),
            data in proptest::collection::vec(any::<u8>(), 0..400),
            micros in any::<i64>().prop_map(|m| m / 10),
        ) {
            let e = RecordedEvent {
                id: EventId(id),
                event_type,
                content_type: content_type.filter(|c| !c.is_empty()),
                metadata: metadata.into(),
                data: data.into(),
                recorded_at_micros: micros,
                ..event(&stream, revision, position)
            };
            assert_agrees::<Structured>(std::slice::from_ref(&e));
            assert_agrees::<Text>(&[e]);
        }
    }
}
