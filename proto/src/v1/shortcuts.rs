//! Constructors for the messages that only wrap a `oneof`.
//!
//! Spelling `ExpectedVersion { kind: Some(expected_version::Kind::Exact(3)) }`
//! at every call site buries the intent; `ExpectedVersion::exact(3)` does not.
//! Nothing here validates: the server decides what a request may contain.

use std::fmt;

use super::{
    expected_version, persistent_target, read_from, subscribe_from, ExpectedVersion,
    PersistentTarget, ReadFrom, SubscribeFrom,
};

/// A duration for the wire (`google.protobuf.Duration`). Saturates: no
/// duration near `i64::MAX` seconds (292 billion years) means anything but
/// "forever".
pub fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32, // < 10^9
    }
}

impl PersistentTarget {
    /// A consumer group of one stream.
    pub fn stream(name: impl Into<String>) -> Self {
        Self {
            kind: Some(persistent_target::Kind::Stream(name.into())),
        }
    }

    /// A consumer group of `$all`.
    pub fn all() -> Self {
        Self {
            kind: Some(persistent_target::Kind::All(())),
        }
    }
}

impl ExpectedVersion {
    /// No check: append whatever the stream's state.
    pub fn any() -> Self {
        Self {
            kind: Some(expected_version::Kind::Any(())),
        }
    }

    /// The stream must not exist yet.
    pub fn no_stream() -> Self {
        Self {
            kind: Some(expected_version::Kind::NoStream(())),
        }
    }

    /// The stream must hold at least one event.
    pub fn stream_exists() -> Self {
        Self {
            kind: Some(expected_version::Kind::StreamExists(())),
        }
    }

    /// The stream's last event must have exactly this revision.
    pub fn exact(revision: u64) -> Self {
        Self {
            kind: Some(expected_version::Kind::Exact(revision)),
        }
    }
}

/// The proto names: `any`, `no_stream`, `stream_exists`, `exact(N)`, or
/// `unset`; for error messages and logs.
impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            None => f.write_str("unset"),
            Some(expected_version::Kind::Any(())) => f.write_str("any"),
            Some(expected_version::Kind::NoStream(())) => f.write_str("no_stream"),
            Some(expected_version::Kind::StreamExists(())) => f.write_str("stream_exists"),
            Some(expected_version::Kind::Exact(revision)) => write!(f, "exact({revision})"),
        }
    }
}

impl ReadFrom {
    /// From the first event.
    pub fn start() -> Self {
        Self {
            kind: Some(read_from::Kind::Start(())),
        }
    }

    /// From the last event (for backwards reads).
    pub fn end() -> Self {
        Self {
            kind: Some(read_from::Kind::End(())),
        }
    }

    /// From this revision, inclusive (stream targets only).
    pub fn revision(revision: u64) -> Self {
        Self {
            kind: Some(read_from::Kind::Revision(revision)),
        }
    }

    /// From this global position, inclusive (`$all` only).
    pub fn position(position: u64) -> Self {
        Self {
            kind: Some(read_from::Kind::Position(position)),
        }
    }
}

impl SubscribeFrom {
    /// Catch up from the first event, then go live.
    pub fn start() -> Self {
        Self {
            kind: Some(subscribe_from::Kind::Start(())),
        }
    }

    /// Only events committed after the subscription is set up.
    pub fn end() -> Self {
        Self {
            kind: Some(subscribe_from::Kind::End(())),
        }
    }

    /// The events after this revision (stream targets only).
    pub fn after_revision(revision: u64) -> Self {
        Self {
            kind: Some(subscribe_from::Kind::AfterRevision(revision)),
        }
    }

    /// The events after this global position (`$all` only).
    pub fn after_position(position: u64) -> Self {
        Self {
            kind: Some(subscribe_from::Kind::AfterPosition(position)),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn expected_version_displays_proto_names() {
        assert_eq!(ExpectedVersion::any().to_string(), "any");
        assert_eq!(ExpectedVersion::no_stream().to_string(), "no_stream");
        assert_eq!(
            ExpectedVersion::stream_exists().to_string(),
            "stream_exists"
        );
        assert_eq!(ExpectedVersion::exact(7).to_string(), "exact(7)");
        assert_eq!(ExpectedVersion::default().to_string(), "unset");
    }

    #[test]
    fn empty_variants_survive_the_wire() {
        // A oneof holding google.protobuf.Empty must still be "set" after a
        // round trip, or `any` would decode as unset.
        for expected in [
            ExpectedVersion::any(),
            ExpectedVersion::no_stream(),
            ExpectedVersion::stream_exists(),
            ExpectedVersion::exact(0),
        ] {
            let decoded =
                ExpectedVersion::decode(expected.encode_to_vec().as_slice()).expect("decodes");
            assert_eq!(decoded, expected);
        }
        for from in [
            ReadFrom::start(),
            ReadFrom::end(),
            ReadFrom::revision(0),
            ReadFrom::position(9),
        ] {
            assert_eq!(
                ReadFrom::decode(from.encode_to_vec().as_slice()).expect("decodes"),
                from
            );
        }
        for from in [
            SubscribeFrom::start(),
            SubscribeFrom::end(),
            SubscribeFrom::after_revision(0),
            SubscribeFrom::after_position(9),
        ] {
            let decoded = SubscribeFrom::decode(from.encode_to_vec().as_slice()).expect("decodes");
            assert_eq!(decoded, from);
        }
    }
}
