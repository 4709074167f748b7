//! Event ids on the wire: the `Uuid` message and its two accepted forms.
//!
//! docs/API.md lets a client send an event id as 16 raw bytes or as the 36-character
//! text form. This module turns either into the 16 bytes and back, by hand:
//! the grammar is small, and owning it keeps the accepted forms exactly those
//! the contract names. It knows nothing of gRPC status codes; the server maps
//! [`UuidError`] to `INVALID_ARGUMENT`.

use std::fmt;

use super::{uuid::Value, Uuid};

/// Length of a UUID in bytes.
pub const UUID_LEN: usize = 16;

/// Length of the hyphenated text form, e.g. `123e4567-e89b-12d3-a456-426614174000`.
const HYPHENATED_LEN: usize = 36;

/// Length of the text form without hyphens: 32 hex digits.
const SIMPLE_LEN: usize = 32;

/// Byte offsets of the hyphens in the hyphenated text form.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// Why a [`Uuid`] (or a UUID string) could not be turned into 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UuidError {
    /// The message has neither `text` nor `raw` set.
    #[error("uuid is missing: neither `text` nor `raw` is set")]
    Missing,
    /// `text` or `raw` is set but empty.
    #[error("uuid is empty")]
    Empty,
    /// `raw` is not exactly 16 bytes long.
    #[error("uuid `raw` must be exactly 16 bytes, got {len}")]
    RawLength {
        /// Length received, in bytes.
        len: usize,
    },
    /// `text` is neither 36 (hyphenated) nor 32 (hex digits only) bytes long.
    #[error(
        "uuid text must be 36 characters (hyphenated) or 32 (hex digits only), got {len} bytes"
    )]
    TextLength {
        /// Length received, in bytes.
        len: usize,
    },
    /// `text` has something other than a hex digit where one is required.
    #[error("uuid text has {found:?} at byte {index}, expected a hex digit")]
    InvalidHexDigit {
        /// Byte offset of the offending character.
        index: usize,
        /// The offending character.
        found: char,
    },
    /// The 36-character form lacks a hyphen at byte 8, 13, 18 or 23.
    #[error("uuid text has {found:?} at byte {index}, expected '-'")]
    ExpectedHyphen {
        /// Byte offset of the offending character.
        index: usize,
        /// The offending character.
        found: char,
    },
}

/// Parses the text form of a UUID: 36 characters with hyphens
/// (`123e4567-e89b-12d3-a456-426614174000`) or 32 hex digits without them.
/// Hex digits are case-insensitive. Braces, `urn:uuid:` prefixes and
/// surrounding whitespace are not accepted.
pub fn parse_uuid(text: &str) -> Result<[u8; UUID_LEN], UuidError> {
    let bytes = text.as_bytes();
    let hyphenated = match bytes.len() {
        0 => return Err(UuidError::Empty),
        HYPHENATED_LEN => true,
        SIMPLE_LEN => false,
        len => return Err(UuidError::TextLength { len }),
    };

    let mut out = [0u8; UUID_LEN];
    let mut digits = 0usize;
    for (index, &byte) in bytes.iter().enumerate() {
        if hyphenated && HYPHENS.contains(&index) {
            if byte != b'-' {
                return Err(UuidError::ExpectedHyphen {
                    index,
                    found: char_at(text, index),
                });
            }
            continue;
        }
        let nibble = hex_value(byte).ok_or_else(|| UuidError::InvalidHexDigit {
            index,
            found: char_at(text, index),
        })?;
        // The length check above guarantees exactly 32 digits, so `digits / 2`
        // stays below 16.
        out[digits / 2] |= if digits.is_multiple_of(2) {
            nibble << 4
        } else {
            nibble
        };
        digits += 1;
    }
    Ok(out)
}

/// Formats 16 bytes as the 36-character lowercase hyphenated text form.
/// Every event a read returns goes through here: a table lookup per digit,
/// no `core::fmt`.
pub fn format_uuid(bytes: &[u8; UUID_LEN]) -> String {
    String::from_utf8_lossy(&hyphenated_ascii(bytes)).into_owned()
}

/// The 36 ASCII bytes of the lowercase hyphenated text form.
pub fn hyphenated_ascii(bytes: &[u8; UUID_LEN]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (index, byte) in bytes.iter().enumerate() {
        // Hyphens go before bytes 4, 6, 8 and 10: the 8-4-4-4-12 grouping.
        if matches!(index, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    out
}

/// Displays 16 bytes as the 36-character lowercase hyphenated text form,
/// without allocating (e.g. as a `tracing` field: `id = %Hyphenated(bytes)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hyphenated(pub [u8; UUID_LEN]);

impl fmt::Display for Hyphenated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ascii = hyphenated_ascii(&self.0);
        // Hex digits and hyphens only: always UTF-8.
        f.write_str(std::str::from_utf8(&ascii).map_err(|_| fmt::Error)?)
    }
}

impl Uuid {
    /// The id in the `text` form (36 characters, lowercase, hyphenated): the
    /// form the server answers with.
    pub fn from_bytes(bytes: [u8; UUID_LEN]) -> Self {
        Self {
            value: Some(Value::Text(format_uuid(&bytes))),
        }
    }

    /// The id in the `raw` form (16 bytes): the more compact form to send.
    pub fn from_bytes_raw(bytes: [u8; UUID_LEN]) -> Self {
        Self {
            value: Some(Value::Raw(bytes.to_vec())),
        }
    }

    /// The 16 bytes of the id, whichever form was sent.
    pub fn to_bytes(&self) -> Result<[u8; UUID_LEN], UuidError> {
        match &self.value {
            None => Err(UuidError::Missing),
            Some(Value::Text(text)) => parse_uuid(text),
            Some(Value::Raw(raw)) if raw.is_empty() => Err(UuidError::Empty),
            Some(Value::Raw(raw)) => <[u8; UUID_LEN]>::try_from(raw.as_slice())
                .map_err(|_| UuidError::RawLength { len: raw.len() }),
        }
    }
}

/// Shows the canonical text form when the id is valid; otherwise what was
/// received, marked as invalid, so a log line never hides a malformed id.
impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.to_bytes(), &self.value) {
            (Ok(bytes), _) => Hyphenated(bytes).fmt(f),
            (Err(_), None) => f.write_str("<unset uuid>"),
            (Err(_), Some(Value::Text(text))) => write!(f, "<invalid uuid {text:?}>"),
            (Err(_), Some(Value::Raw(raw))) => write!(f, "<invalid uuid: {} raw bytes>", raw.len()),
        }
    }
}

/// Value of one ASCII hex digit, either case.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The character starting at `index`. Only called where every earlier byte was
/// ASCII, so `index` is a character boundary; the fallback is never used.
fn char_at(text: &str, index: usize) -> char {
    text.get(index..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table formatter against `core::fmt`, byte by byte.
    #[test]
    fn formats_like_core_fmt() {
        let reference = |b: &[u8; UUID_LEN]| -> String {
            let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                hex[..4].concat(),
                hex[4..6].concat(),
                hex[6..8].concat(),
                hex[8..10].concat(),
                hex[10..].concat()
            )
        };
        let mut b = [0u8; UUID_LEN];
        for round in 0..=255u8 {
            for (i, x) in b.iter_mut().enumerate() {
                *x = round
                    .wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(17));
            }
            b[round as usize % UUID_LEN] = round;
            assert_eq!(format_uuid(&b), reference(&b));
            assert_eq!(Hyphenated(b).to_string(), reference(&b));
            assert_eq!(parse_uuid(&format_uuid(&b)), Ok(b));
        }
        assert_eq!(format_uuid(&[0xff; UUID_LEN]), reference(&[0xff; UUID_LEN]));
    }

    const TEXT: &str = "123e4567-e89b-12d3-a456-426614174000";
    const BYTES: [u8; 16] = [
        0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40,
        0x00,
    ];

    fn text(s: &str) -> Uuid {
        Uuid {
            value: Some(Value::Text(s.to_owned())),
        }
    }

    fn raw(b: &[u8]) -> Uuid {
        Uuid {
            value: Some(Value::Raw(b.to_vec())),
        }
    }

    #[test]
    fn parses_hyphenated_lowercase() {
        assert_eq!(parse_uuid(TEXT), Ok(BYTES));
        assert_eq!(text(TEXT).to_bytes(), Ok(BYTES));
    }

    #[test]
    fn parses_hyphenated_uppercase_and_mixed_case() {
        assert_eq!(parse_uuid(&TEXT.to_uppercase()), Ok(BYTES));
        assert_eq!(
            parse_uuid("123E4567-e89B-12d3-A456-426614174000"),
            Ok(BYTES)
        );
    }

    #[test]
    fn parses_simple_form_without_hyphens() {
        assert_eq!(parse_uuid(&TEXT.replace('-', "")), Ok(BYTES));
    }

    #[test]
    fn parses_extremes() {
        assert_eq!(
            parse_uuid("00000000-0000-0000-0000-000000000000"),
            Ok([0; 16])
        );
        assert_eq!(
            parse_uuid("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            Ok([0xff; 16])
        );
    }

    #[test]
    fn accepts_raw_16_bytes() {
        assert_eq!(raw(&BYTES).to_bytes(), Ok(BYTES));
        assert_eq!(Uuid::from_bytes_raw(BYTES).to_bytes(), Ok(BYTES));
    }

    #[test]
    fn from_bytes_sets_canonical_text() {
        let id = Uuid::from_bytes(BYTES);
        assert_eq!(id.value, Some(Value::Text(TEXT.to_owned())));
        assert_eq!(id.to_bytes(), Ok(BYTES));
    }

    #[test]
    fn format_round_trips() {
        assert_eq!(format_uuid(&BYTES), TEXT);
        assert_eq!(Hyphenated(BYTES).to_string(), TEXT);
        let upper = text(&TEXT.to_uppercase());
        assert_eq!(upper.to_string(), TEXT);
    }

    #[test]
    fn rejects_missing_and_empty() {
        assert_eq!(Uuid::default().to_bytes(), Err(UuidError::Missing));
        assert_eq!(text("").to_bytes(), Err(UuidError::Empty));
        assert_eq!(raw(&[]).to_bytes(), Err(UuidError::Empty));
    }

    #[test]
    fn rejects_wrong_raw_length() {
        assert_eq!(
            raw(&[0; 15]).to_bytes(),
            Err(UuidError::RawLength { len: 15 })
        );
        assert_eq!(
            raw(&[0; 17]).to_bytes(),
            Err(UuidError::RawLength { len: 17 })
        );
        // The 36 bytes of the text form sent in `raw` are not a text form.
        assert_eq!(
            raw(TEXT.as_bytes()).to_bytes(),
            Err(UuidError::RawLength { len: 36 })
        );
    }

    #[test]
    fn rejects_wrong_text_length() {
        assert_eq!(
            parse_uuid(&TEXT[..35]),
            Err(UuidError::TextLength { len: 35 })
        );
        assert_eq!(
            parse_uuid(&format!("{TEXT}0")),
            Err(UuidError::TextLength { len: 37 })
        );
        assert_eq!(
            parse_uuid(&format!("{{{TEXT}}}")),
            Err(UuidError::TextLength { len: 38 })
        );
        assert_eq!(
            parse_uuid(&format!(" {TEXT}")),
            Err(UuidError::TextLength { len: 37 })
        );
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!(
            parse_uuid("g23e4567-e89b-12d3-a456-426614174000"),
            Err(UuidError::InvalidHexDigit {
                index: 0,
                found: 'g'
            })
        );
        assert_eq!(
            parse_uuid("123e4567-e89b-12d3-a456-42661417400z"),
            Err(UuidError::InvalidHexDigit {
                index: 35,
                found: 'z'
            })
        );
        // A hyphen where a digit belongs in the 32-character form.
        assert_eq!(
            parse_uuid("123e4567-e89b12d3a45642661417400"),
            Err(UuidError::InvalidHexDigit {
                index: 8,
                found: '-'
            })
        );
        // Multi-byte characters are reported whole, at their byte offset.
        assert_eq!(
            parse_uuid("123e4567-e89b-12d3-a456-4266141740é"),
            Err(UuidError::InvalidHexDigit {
                index: 34,
                found: 'é'
            })
        );
    }

    #[test]
    fn rejects_misplaced_hyphens() {
        assert_eq!(
            parse_uuid("123e45670e89b-12d3-a456-426614174000"),
            Err(UuidError::ExpectedHyphen {
                index: 8,
                found: '0'
            })
        );
        assert_eq!(
            parse_uuid("123e4567-e89b-12d3-a4564-26614174000"),
            Err(UuidError::ExpectedHyphen {
                index: 23,
                found: '4'
            })
        );
    }

    #[test]
    fn display_marks_invalid_ids() {
        assert_eq!(Uuid::default().to_string(), "<unset uuid>");
        assert_eq!(text("nope").to_string(), "<invalid uuid \"nope\">");
        assert_eq!(raw(&[1, 2, 3]).to_string(), "<invalid uuid: 3 raw bytes>");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = UuidError::InvalidHexDigit {
            index: 3,
            found: 'x',
        };
        assert_eq!(
            err.to_string(),
            "uuid text has 'x' at byte 3, expected a hex digit"
        );
        assert_eq!(
            UuidError::RawLength { len: 4 }.to_string(),
            "uuid `raw` must be exactly 16 bytes, got 4"
        );
    }
}
