//! Streamed answers the server sends already encoded.
//!
//! A read or a subscription turns stored events into wire bytes with
//! [`EventsEncoder`]: one buffer per batch, each event written straight from
//! borrowed fields, with no per-event message, allocation or copy beyond the
//! one into the buffer. The result goes to tonic as a [`ReadResponse`] or a
//! [`SubscribeResponse`], whose protobuf encoding is those bytes (the server
//! stubs are generated with these types in place of the generated ones).
//!
//! [`Encoded`] holds any message as its encoding; the KurrentDB layer sends
//! its read answers (`event_store.client.streams.ReadResp`) that way too.
//!
//! The encoder writes exactly what prost writes for the generated
//! [`super::RecordedEvent`]: fields in number order, proto3 defaults left
//! out, `id` in its `text` form, `recorded_at` always present. The tests
//! compare the two byte for byte.

use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{encode_varint, encoded_len_varint, DecodeContext, WireType};
use prost::{DecodeError, Message};

use super::id::hyphenated_ascii;

/// Field number of `events` in both `ReadResponse` and `EventBatch`.
const EVENTS_FIELD: u32 = 1;
/// Field number of `events` (the `EventBatch`) in `SubscribeResponse`.
const SUBSCRIBE_EVENTS_FIELD: u32 = 1;
/// Bytes of the `text` form of an event id.
const UUID_TEXT: usize = 36;
/// Bytes of an encoded `Uuid` message: key, length, 36 characters.
const UUID_MESSAGE: usize = 2 + UUID_TEXT;

/// The fields of one stored event, borrowed, in wire terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// `stream` (1).
    pub stream: &'a str,
    /// `revision` (2).
    pub revision: u64,
    /// `position` (3).
    pub position: u64,
    /// `id` (4), as 16 bytes; sent in the `text` form.
    pub id: [u8; 16],
    /// `type` (5).
    pub event_type: &'a str,
    /// `data` (6).
    pub data: &'a [u8],
    /// `metadata` (7).
    pub metadata: &'a [u8],
    /// `content_type` (8); empty when none.
    pub content_type: &'a str,
    /// `recorded_at` (9), in microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
}

/// The key of field `field` (one byte for fields below 16). The sizing
/// helpers below are shared with the server's other hand-written encoders.
pub fn key(field: u32, wire_type: WireType) -> u64 {
    (u64::from(field) << 3) | wire_type as u64
}

/// Bytes of a length-delimited field of `len` bytes (key of one byte),
/// written even when empty (a set message field).
pub fn delimited_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Bytes of a string or bytes field: nothing when empty (the proto3 default).
pub fn text_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        delimited_len(len)
    }
}

/// Bytes of a varint field (key of one byte): nothing when 0.
pub fn varint_field_len(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(value)
    }
}

/// `recorded_at` as a `google.protobuf.Timestamp`: seconds and
/// non-negative nanoseconds.
fn timestamp(micros: i64) -> (i64, i32) {
    let seconds = micros.div_euclid(1_000_000);
    // rem_euclid is in 0..1_000_000, so the product fits an i32.
    let nanos = (micros.rem_euclid(1_000_000) * 1000) as i32;
    (seconds, nanos)
}

/// Bytes of the encoded `Timestamp` message (int64 and int32 are varints of
/// the value sign-extended to 64 bits).
fn timestamp_len(seconds: i64, nanos: i32) -> usize {
    varint_field_len(seconds as u64) + varint_field_len(i64::from(nanos) as u64)
}

impl EventFields<'_> {
    /// Bytes of the encoded `RecordedEvent` message.
    pub fn encoded_len(&self) -> usize {
        let (seconds, nanos) = timestamp(self.recorded_at_micros);
        text_len(self.stream.len())
            + varint_field_len(self.revision)
            + varint_field_len(self.position)
            + delimited_len(UUID_MESSAGE)
            + text_len(self.event_type.len())
            + text_len(self.data.len())
            + text_len(self.metadata.len())
            + text_len(self.content_type.len())
            + delimited_len(timestamp_len(seconds, nanos))
    }

    /// Writes the encoded `RecordedEvent` message (without key or length).
    pub fn encode(&self, buf: &mut impl BufMut) {
        fn text(buf: &mut impl BufMut, field: u32, bytes: &[u8]) {
            if !bytes.is_empty() {
                encode_varint(key(field, WireType::LengthDelimited), buf);
                encode_varint(bytes.len() as u64, buf);
                buf.put_slice(bytes);
            }
        }
        fn varint(buf: &mut impl BufMut, field: u32, value: u64) {
            if value != 0 {
                encode_varint(key(field, WireType::Varint), buf);
                encode_varint(value, buf);
            }
        }
        text(buf, 1, self.stream.as_bytes());
        varint(buf, 2, self.revision);
        varint(buf, 3, self.position);
        encode_varint(key(4, WireType::LengthDelimited), buf);
        encode_varint(UUID_MESSAGE as u64, buf);
        encode_varint(key(1, WireType::LengthDelimited), buf);
        encode_varint(UUID_TEXT as u64, buf);
        buf.put_slice(&hyphenated_ascii(&self.id));
        text(buf, 5, self.event_type.as_bytes());
        text(buf, 6, self.data);
        text(buf, 7, self.metadata);
        text(buf, 8, self.content_type.as_bytes());
        let (seconds, nanos) = timestamp(self.recorded_at_micros);
        encode_varint(key(9, WireType::LengthDelimited), buf);
        encode_varint(timestamp_len(seconds, nanos) as u64, buf);
        varint(buf, 1, seconds as u64);
        varint(buf, 2, i64::from(nanos) as u64);
    }
}

/// Builds the `repeated RecordedEvent events = 1` entries of one batch in
/// one buffer: the body of a `ReadResponse` and of an `EventBatch` alike.
#[derive(Debug, Default)]
pub struct EventsEncoder {
    buf: BytesMut,
    count: usize,
}

impl EventsEncoder {
    /// An encoder with room for `bytes` bytes before it grows.
    pub fn with_capacity(bytes: usize) -> Self {
        EventsEncoder {
            buf: BytesMut::with_capacity(bytes),
            count: 0,
        }
    }

    /// Appends one event.
    pub fn push(&mut self, event: &EventFields<'_>) {
        self.push_sized(event, event.encoded_len());
    }

    /// Appends one event whose `encoded_len()` the caller already has.
    pub fn push_sized(&mut self, event: &EventFields<'_>, len: usize) {
        debug_assert_eq!(len, event.encoded_len());
        self.buf.reserve(1 + encoded_len_varint(len as u64) + len);
        encode_varint(key(EVENTS_FIELD, WireType::LengthDelimited), &mut self.buf);
        encode_varint(len as u64, &mut self.buf);
        event.encode(&mut self.buf);
        self.count += 1;
    }

    /// Events pushed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether no event was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The encoded batch.
    pub fn finish(self) -> EncodedEvents {
        EncodedEvents {
            body: self.buf.freeze(),
            count: self.count,
        }
    }
}

/// An encoded batch of events; cheap to clone (the bytes are shared).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedEvents {
    body: Bytes,
    count: usize,
}

impl EncodedEvents {
    /// Events in the batch.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded entries.
    pub fn as_bytes(&self) -> &Bytes {
        &self.body
    }
}

/// A message held as its encoding: a short head written before a shared
/// body. Decoding keeps every field as it came, so that a decoded message
/// encodes to the same bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    head: Head,
    body: Bytes,
}

/// Up to a key and a length varint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Head {
    bytes: [u8; 11],
    len: u8,
}

impl Head {
    fn delimited(field: u32, len: usize) -> Head {
        let mut head = Head::default();
        let mut out = &mut head.bytes[..];
        encode_varint(key(field, WireType::LengthDelimited), &mut out);
        encode_varint(len as u64, &mut out);
        let left = out.len();
        head.len = (head.bytes.len() - left) as u8;
        head
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A `strata.v1.ReadResponse` held as its encoding.
pub type ReadResponse = Encoded;
/// A `strata.v1.SubscribeResponse` held as its encoding.
pub type SubscribeResponse = Encoded;

impl Encoded {
    /// A `ReadResponse` carrying `events`.
    pub fn read_response(events: &EncodedEvents) -> Encoded {
        Encoded {
            head: Head::default(),
            body: events.body.clone(),
        }
    }

    /// A `SubscribeResponse` whose `events` batch carries `events`.
    pub fn subscribe_events(events: &EncodedEvents) -> Encoded {
        Encoded {
            head: Head::delimited(SUBSCRIBE_EVENTS_FIELD, events.body.len()),
            body: events.body.clone(),
        }
    }

    /// A message whose whole encoding is `bytes` (written by an encoder of
    /// its own, such as the KurrentDB layer's for its read answers).
    pub fn raw(bytes: Bytes) -> Encoded {
        Encoded {
            head: Head::default(),
            body: bytes,
        }
    }

    /// Any message, encoded by prost (for the small, rare answers).
    pub fn of(message: &impl Message) -> Encoded {
        Encoded {
            head: Head::default(),
            body: message.encode_to_vec().into(),
        }
    }

    /// The whole encoding.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode_raw(&mut out);
        out.freeze()
    }
}

impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.head.as_slice());
        buf.put_slice(&self.body);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        use prost::encoding::{bytes, fixed32, fixed64, skip_field};
        // Kept as it came: the key, then the value in its wire form.
        let mut field = BytesMut::from(self.to_bytes().as_ref());
        let start = field.len();
        encode_varint(key(tag, wire_type), &mut field);
        match wire_type {
            WireType::Varint => {
                encode_varint(prost::encoding::decode_varint(buf)?, &mut field);
            }
            WireType::SixtyFourBit => {
                let mut v = 0u64;
                fixed64::merge(wire_type, &mut v, buf, ctx)?;
                field.put_u64_le(v);
            }
            WireType::ThirtyTwoBit => {
                let mut v = 0u32;
                fixed32::merge(wire_type, &mut v, buf, ctx)?;
                field.put_u32_le(v);
            }
            WireType::LengthDelimited => {
                let mut v = Bytes::new();
                bytes::merge(wire_type, &mut v, buf, ctx)?;
                encode_varint(v.len() as u64, &mut field);
                field.put_slice(&v);
            }
            // No message held this way has groups: skipped, like any field
            // a decoder does not know.
            WireType::StartGroup | WireType::EndGroup => {
                field.truncate(start);
                skip_field(wire_type, tag, buf, ctx)?;
            }
        }
        *self = Encoded {
            head: Head::default(),
            body: field.freeze(),
        };
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        usize::from(self.head.len) + self.body.len()
    }

    fn clear(&mut self) {
        *self = Encoded::default();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use crate::v1;

    /// What the generated types make of the same event.
    fn generated(e: &EventFields<'_>) -> v1::RecordedEvent {
        let (seconds, nanos) = timestamp(e.recorded_at_micros);
        v1::RecordedEvent {
            stream: e.stream.to_owned(),
            revision: e.revision,
            position: e.position,
            id: Some(v1::Uuid::from_bytes(e.id)),
            r#type: e.event_type.to_owned(),
            data: Bytes::copy_from_slice(e.data),
            metadata: Bytes::copy_from_slice(e.metadata),
            content_type: e.content_type.to_owned(),
            recorded_at: Some(prost_types::Timestamp { seconds, nanos }),
        }
    }

    fn assert_agrees(events: &[EventFields<'_>]) {
        let mut enc = EventsEncoder::default();
        for e in events {
            enc.push(e);
        }
        let batch = enc.finish();
        assert_eq!(batch.count(), events.len());
        let wire = v1::ReadResponse {
            events: events.iter().map(generated).collect(),
        };
        let read = Encoded::read_response(&batch);
        assert_eq!(read.to_bytes(), wire.encode_to_vec(), "ReadResponse bytes");
        assert_eq!(read.encoded_len(), wire.encoded_len());
        let sub = v1::SubscribeResponse {
            content: Some(v1::subscribe_response::Content::Events(v1::EventBatch {
                events: wire.events.clone(),
            })),
        };
        let ours = Encoded::subscribe_events(&batch);
        assert_eq!(
            ours.to_bytes(),
            sub.encode_to_vec(),
            "SubscribeResponse bytes"
        );
        assert_eq!(ours.encoded_len(), sub.encoded_len());
        for e in events {
            let mut one = Vec::new();
            e.encode(&mut one);
            assert_eq!(one.len(), e.encoded_len());
            assert_eq!(one, generated(e).encode_to_vec());
        }
    }

    const ID: [u8; 16] = [
        0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40,
        0x00,
    ];

    /// The encoding of one known event, written out by hand from the
    /// protobuf rules, so a change on both sides at once cannot pass.
    #[test]
    fn golden_event() {
        let e = EventFields {
            stream: "s",
            revision: 1,
            position: 300,
            id: ID,
            event_type: "T",
            data: b"{}",
            metadata: b"",
            content_type: "",
            recorded_at_micros: 1_500_001,
        };
        let mut expected: Vec<u8> = vec![0x0a, 0x01, b's', 0x10, 0x01, 0x18, 0xac, 0x02];
        expected.extend([0x22, 0x26, 0x0a, 0x24]);
        expected.extend(b"123e4567-e89b-12d3-a456-426614174000");
        expected.extend([0x2a, 0x01, b'T', 0x32, 0x02, b'{', b'}']);
        // recorded_at: 1 s and 500,001,000 ns (0x1dcd_68e8, five bytes as a varint).
        expected.extend([0x4a, 0x08, 0x08, 0x01, 0x10, 0xe8, 0xd1, 0xb5, 0xee, 0x01]);
        let mut ours = Vec::new();
        e.encode(&mut ours);
        assert_eq!(ours, expected);
        assert_agrees(&[e]);
    }

    #[test]
    fn every_field_empty_and_full() {
        let empty = EventFields {
            stream: "",
            revision: 0,
            position: 0,
            id: [0; 16],
            event_type: "",
            data: b"",
            metadata: b"",
            content_type: "",
            recorded_at_micros: 0,
        };
        let full = EventFields {
            stream: "orders-1",
            revision: u64::MAX,
            position: u64::MAX,
            id: [0xff; 16],
            event_type: "OrderPlaced",
            data: &[7; 300],
            metadata: b"{\"m\":1}",
            content_type: "application/json",
            recorded_at_micros: i64::MAX,
        };
        let before_epoch = EventFields {
            recorded_at_micros: -1,
            ..full
        };
        let oldest = EventFields {
            recorded_at_micros: i64::MIN,
            ..full
        };
        assert_agrees(&[empty]);
        assert_agrees(&[full]);
        assert_agrees(&[empty, full, before_epoch, oldest]);
        assert_agrees(&[]);
    }

    /// Lengths and values on each side of every varint width.
    #[test]
    fn varint_boundaries() {
        let widths: Vec<u64> = (1..10)
            .flat_map(|bytes| {
                let top = 1u64 << (7 * bytes);
                [top - 1, top]
            })
            .chain([u64::MAX])
            .collect();
        let big = vec![b'x'; (1 << 21) + 1];
        for &v in &widths {
            let len = usize::try_from(v).unwrap_or(usize::MAX).min(big.len());
            let e = EventFields {
                stream: "s",
                revision: v,
                position: v,
                id: ID,
                event_type: std::str::from_utf8(&big[..len.min(1 << 15)]).expect("ascii"),
                data: &big[..len],
                metadata: &big[..len.min(200)],
                content_type: "",
                recorded_at_micros: v as i64,
            };
            assert_agrees(&[e]);
        }
    }

    #[test]
    fn a_decoded_message_encodes_to_the_same_bytes() {
        let e = EventFields {
            stream: "s",
            revision: 2,
            position: 9,
            id: ID,
            event_type: "T",
            data: b"d",
            metadata: b"m",
            content_type: "c",
            recorded_at_micros: 5,
        };
        let mut enc = EventsEncoder::default();
        enc.push(&e);
        enc.push(&e);
        let sent = Encoded::subscribe_events(&enc.finish()).to_bytes();
        let decoded = Encoded::decode(sent.clone()).expect("decodes");
        assert_eq!(decoded.to_bytes(), sent);
        let generated = v1::SubscribeResponse::decode(sent).expect("generated decodes");
        let Some(v1::subscribe_response::Content::Events(batch)) = generated.content else {
            panic!("events expected");
        };
        assert_eq!(batch.events.len(), 2);
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-zA-Z0-9$ é-]{1,40}", "x{120,140}"]
    }

    fn blob() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            prop::collection::vec(any::<u8>(), 1..300),
            prop::collection::vec(any::<u8>(), 16_380..16_390),
        ]
    }

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0u64), any::<u64>(), (0u32..64).prop_map(|b| 1u64 << b)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn agrees_with_the_generated_encoding(
            events in prop::collection::vec(
                (text(), number(), number(), any::<[u8; 16]>(), text(), blob(), blob(), text(), any::<i64>()),
                0..6,
            )
        ) {
            let fields: Vec<EventFields<'_>> = events
                .iter()
                .map(|(s, r, p, id, t, d, m, c, at)| EventFields {
                    stream: s,
                    revision: *r,
                    position: *p,
                    id: *id,
                    event_type: t,
                    data: d,
                    metadata: m,
                    content_type: c,
                    recorded_at_micros: *at,
                })
                .collect();
            assert_agrees(&fields);
        }
    }
}
