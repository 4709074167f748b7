//! How the client subcommands print events and sizes: one human-readable
//! line, or one JSON object, per event.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use strata_client::RecordedEvent;

/// One line for a person: `position  stream@revision  type  time  data`.
pub fn event_line(e: &RecordedEvent) -> String {
    format!(
        "{:>8}  {}@{}  {}  {}  {}",
        e.position,
        e.stream,
        e.revision,
        e.event_type,
        rfc3339(e.recorded_at),
        payload_text(&e.data)
    )
}

/// One JSON object for a script. `data` and `metadata` are JSON values when
/// the bytes are JSON; otherwise strings, with `data_encoding` /
/// `metadata_encoding` set to `utf-8` or `hex`.
pub fn event_json(e: &RecordedEvent) -> String {
    let mut o = Map::new();
    o.insert("stream".into(), json!(e.stream));
    o.insert("revision".into(), json!(e.revision));
    o.insert("position".into(), json!(e.position));
    o.insert("id".into(), json!(e.id.to_string()));
    o.insert("type".into(), json!(e.event_type));
    o.insert("recorded_at".into(), json!(rfc3339(e.recorded_at)));
    o.insert("content_type".into(), json!(e.content_type));
    insert_payload(&mut o, "data", &e.data);
    if !e.metadata.is_empty() {
        insert_payload(&mut o, "metadata", &e.metadata);
    }
    Value::Object(o).to_string()
}

/// Inserts `bytes` under `key`: as a JSON value when they are JSON,
/// otherwise as a string with `<key>_encoding` set to `utf-8` or `hex`.
pub fn insert_payload(o: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        o.insert(key.into(), value);
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        o.insert(key.into(), json!(text));
        o.insert(format!("{key}_encoding"), json!("utf-8"));
    } else {
        o.insert(key.into(), json!(hex(bytes)));
        o.insert(format!("{key}_encoding"), json!("hex"));
    }
}

/// A payload on one line: compact JSON, escaped text, or its size.
fn payload_text(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return value.to_string();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.escape_debug().to_string(),
        Err(_) => format!("<{} bytes of binary data>", bytes.len()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `2024-05-01T12:34:56.789012Z` (UTC, microseconds).
pub fn rfc3339(t: SystemTime) -> String {
    let (secs, micros) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(_) => (0, 0), // before 1970: not produced by the server
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `1.5 MiB` and the like.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 123_456_000);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.123456Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn payloads_print_on_one_line() {
        assert_eq!(payload_text(b"{ \"a\" :\n 1 }"), r#"{"a":1}"#);
        assert_eq!(payload_text(b"two\nlines"), r"two\nlines");
        assert_eq!(payload_text(&[0xff, 0x00]), "<2 bytes of binary data>");
        assert_eq!(payload_text(b""), "-");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}
