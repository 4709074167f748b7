//! Record framing: `len u32 | crc u32 | payload`, little-endian, CRC-32 (IEEE,
//! as computed by crc32fast) over the length bytes and the payload. This
//! module turns events into bytes and back and never touches a file.

use std::sync::Arc;

use bytes::Bytes;

use super::types::{EventId, RecordedEvent};

/// Bytes of the frame header (length + CRC-32).
pub const FRAME_HEADER: usize = 8;
/// Bytes of the fixed part of an event payload.
pub const EVENT_HEADER: usize = 56;
/// Payload kind of an event record.
pub const KIND_EVENT: u8 = 1;
/// Flag: this event is the last of its append (the append's commit mark).
pub const FLAG_COMMIT: u8 = 1;
/// Largest payload the decoder accepts; larger lengths are corruption.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// Why bytes could not be decoded as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A zero length field: the end of written data in a preallocated segment.
    End,
    /// Fewer bytes than the frame announces: possibly a torn write.
    Truncated {
        /// Bytes the frame needs in total.
        needed: usize,
    },
    /// The checksum does not match.
    CrcMismatch {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// The checksum matches but the payload does not parse.
    Malformed(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::End => write!(f, "end of data"),
            DecodeError::Truncated { needed } => {
                write!(f, "record truncated ({needed} bytes needed)")
            }
            DecodeError::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "CRC-32 mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            DecodeError::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

/// The stored fields of one event record, borrowed from the encoded bytes
/// where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord<'a> {
    /// Commit flag and friends.
    pub flags: u8,
    /// Global position.
    pub position: u64,
    /// Stream revision.
    pub revision: u64,
    /// Commit time, µs since the Unix epoch.
    pub recorded_at_micros: i64,
    /// Event id.
    pub id: EventId,
    /// Stream name.
    pub stream: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Content type; empty when none.
    pub content_type: &'a str,
    /// Metadata bytes.
    pub metadata: &'a [u8],
    /// Data bytes.
    pub data: &'a [u8],
}

impl EventRecord<'_> {
    /// Whether this event closes its append.
    pub fn is_commit(&self) -> bool {
        self.flags & FLAG_COMMIT != 0
    }

    /// An owned event; `stream` lets callers share one name between events.
    pub fn to_event(&self, stream: Arc<str>) -> RecordedEvent {
        RecordedEvent {
            stream,
            revision: self.revision,
            position: self.position,
            id: self.id,
            event_type: self.event_type.to_owned(),
            data: Bytes::copy_from_slice(self.data),
            metadata: Bytes::copy_from_slice(self.metadata),
            content_type: (!self.content_type.is_empty()).then(|| self.content_type.to_owned()),
            recorded_at_micros: self.recorded_at_micros,
        }
    }
}

impl RecordedEvent {
    /// The event's fields, borrowed, as a record holds them.
    pub fn as_record(&self) -> EventRecord<'_> {
        EventRecord {
            flags: 0,
            position: self.position,
            revision: self.revision,
            recorded_at_micros: self.recorded_at_micros,
            id: self.id,
            stream: &self.stream,
            event_type: &self.event_type,
            content_type: self.content_type.as_deref().unwrap_or(""),
            metadata: &self.metadata,
            data: &self.data,
        }
    }
}

/// Size of the whole frame that encodes `event`.
pub fn encoded_len(
    stream: &str,
    event_type: &str,
    content_type: &str,
    meta: usize,
    data: usize,
) -> usize {
    FRAME_HEADER + EVENT_HEADER + stream.len() + event_type.len() + content_type.len() + meta + data
}

/// Appends the frame of one event to `buf`.
pub fn encode_event(buf: &mut Vec<u8>, rec: &EventRecord<'_>) {
    let payload_len = EVENT_HEADER
        + rec.stream.len()
        + rec.event_type.len()
        + rec.content_type.len()
        + rec.metadata.len()
        + rec.data.len();
    let start = buf.len();
    buf.reserve(FRAME_HEADER + payload_len);
    buf.extend_from_slice(&(payload_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // CRC, filled below
    buf.push(KIND_EVENT);
    buf.push(rec.flags);
    buf.extend_from_slice(&(rec.stream.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(rec.event_type.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(rec.content_type.len() as u16).to_le_bytes());
    buf.extend_from_slice(&rec.position.to_le_bytes());
    buf.extend_from_slice(&rec.revision.to_le_bytes());
    buf.extend_from_slice(&rec.recorded_at_micros.to_le_bytes());
    buf.extend_from_slice(&rec.id.0);
    buf.extend_from_slice(&(rec.metadata.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(rec.data.len() as u32).to_le_bytes());
    buf.extend_from_slice(rec.stream.as_bytes());
    buf.extend_from_slice(rec.event_type.as_bytes());
    buf.extend_from_slice(rec.content_type.as_bytes());
    buf.extend_from_slice(rec.metadata);
    buf.extend_from_slice(rec.data);
    let crc = frame_crc(&buf[start..start + 4], &buf[start + FRAME_HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn frame_crc(len_bytes: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_bytes);
    h.update(payload);
    h.finalize()
}

/// Bytes the records of one append take in the log.
pub fn append_len(a: &super::types::AppendRequest) -> u64 {
    a.events
        .iter()
        .map(|e| {
            encoded_len(
                &a.stream,
                &e.event_type,
                e.content_type.as_deref().unwrap_or(""),
                e.metadata.len(),
                e.data.len(),
            ) as u64
        })
        .sum()
}

/// Reads the payload length announced at the start of `bytes`, if 4 bytes are there.
pub fn peek_len(bytes: &[u8]) -> Option<usize> {
    bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Whether `rest`, which runs to the end of a segment file, is nothing but
/// the zero fill of a preallocated segment. A segment can end with fewer
/// free bytes than a length field (1 to 3), which `decode` reports as
/// `Truncated`; only at the end of the file may callers read that as the end.
pub fn is_zero_fill(rest: &[u8]) -> bool {
    // Whole 64-byte blocks first (the compiler vectorizes the fold), so
    // that checking the zero tail of a large segment at open stays cheap.
    let mut blocks = rest.chunks_exact(64);
    blocks.all(|b| b.iter().fold(0, |acc, &x| acc | x) == 0)
        && blocks.remainder().iter().all(|&b| b == 0)
}

/// Decodes the frame at the start of `bytes`; returns the record and the
/// number of bytes the frame occupies.
pub fn decode(bytes: &[u8]) -> Result<(EventRecord<'_>, usize), DecodeError> {
    let Some(len) = peek_len(bytes) else {
        return Err(DecodeError::Truncated { needed: 4 });
    };
    if len == 0 {
        return Err(DecodeError::End);
    }
    if len > MAX_PAYLOAD {
        return Err(DecodeError::Malformed("length over the format maximum"));
    }
    let total = FRAME_HEADER + len;
    if bytes.len() < total {
        return Err(DecodeError::Truncated { needed: total });
    }
    let stored = u32_at(bytes, 4);
    let payload = &bytes[FRAME_HEADER..total];
    let computed = frame_crc(&bytes[..4], payload);
    if stored != computed {
        return Err(DecodeError::CrcMismatch { stored, computed });
    }
    Ok((decode_payload(payload)?, total))
}

fn decode_payload(p: &[u8]) -> Result<EventRecord<'_>, DecodeError> {
    if p.len() < EVENT_HEADER {
        return Err(DecodeError::Malformed(
            "payload shorter than the event header",
        ));
    }
    if p[0] != KIND_EVENT {
        return Err(DecodeError::Malformed("unknown record kind"));
    }
    let flags = p[1];
    let stream_len = u16_at(p, 2) as usize;
    let type_len = u16_at(p, 4) as usize;
    let ct_len = u16_at(p, 6) as usize;
    let position = u64_at(p, 8);
    let revision = u64_at(p, 16);
    let recorded_at_micros = u64_at(p, 24) as i64;
    let mut id = [0u8; 16];
    id.copy_from_slice(&p[32..48]);
    let meta_len = u32_at(p, 48) as usize;
    let data_len = u32_at(p, 52) as usize;
    if EVENT_HEADER + stream_len + type_len + ct_len + meta_len + data_len != p.len() {
        return Err(DecodeError::Malformed(
            "field lengths do not add up to the payload length",
        ));
    }
    let mut at = EVENT_HEADER;
    let mut take = |n: usize| {
        let s = &p[at..at + n];
        at += n;
        s
    };
    let stream = std::str::from_utf8(take(stream_len))
        .map_err(|_| DecodeError::Malformed("stream name is not UTF-8"))?;
    let event_type = std::str::from_utf8(take(type_len))
        .map_err(|_| DecodeError::Malformed("event type is not UTF-8"))?;
    let content_type = std::str::from_utf8(take(ct_len))
        .map_err(|_| DecodeError::Malformed("content type is not UTF-8"))?;
    let metadata = take(meta_len);
    let data = take(data_len);
    Ok(EventRecord {
        flags,
        position,
        revision,
        recorded_at_micros,
        id: EventId(id),
        stream,
        event_type,
        content_type,
        metadata,
        data,
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(data: &'a [u8]) -> EventRecord<'a> {
        EventRecord {
            flags: FLAG_COMMIT,
            position: 42,
            revision: 7,
            recorded_at_micros: 1_700_000_000_000_000,
            id: EventId([9; 16]),
            stream: "order-1",
            event_type: "Placed",
            content_type: "application/json",
            metadata: b"{}",
            data,
        }
    }

    #[test]
    fn round_trip() {
        let data = b"{\"qty\":3}";
        let mut buf = Vec::new();
        encode_event(&mut buf, &sample(data));
        assert_eq!(
            buf.len(),
            encoded_len("order-1", "Placed", "application/json", 2, data.len())
        );
        let (rec, used) = decode(&buf).expect("decodes");
        assert_eq!(used, buf.len());
        assert_eq!(rec, sample(data));
        assert!(rec.is_commit());
    }

    #[test]
    fn zero_length_is_end() {
        assert_eq!(decode(&[0u8; 64]).expect_err("zeros"), DecodeError::End);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_event(&mut buf, &sample(b"payload"));
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                if let Ok((rec, _)) = decode(&bad) {
                    panic!("flip at {byte}:{bit} decoded as {rec:?}");
                }
            }
        }
    }

    #[test]
    fn zero_fill_is_only_zeros() {
        assert!(is_zero_fill(&[]));
        assert!(is_zero_fill(&[0; 3]));
        assert!(is_zero_fill(&[0; 200]));
        for len in [1, 3, 63, 64, 65, 200] {
            for at in 0..len {
                let mut b = vec![0u8; len];
                b[at] = 0x80;
                assert!(!is_zero_fill(&b), "len {len}, non-zero at {at}");
            }
        }
    }

    #[test]
    fn every_truncation_is_reported() {
        let mut buf = Vec::new();
        encode_event(&mut buf, &sample(b"payload"));
        for cut in 1..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Err(DecodeError::Truncated { .. })),
                "cut {cut}"
            );
        }
    }
}
