//! Events as the client writes them ([`EventData`]) and reads them
//! ([`RecordedEvent`]), the expected-version check of an append
//! ([`ExpectedVersion`]) and its result ([`AppendResult`]), with their wire
//! conversions.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use strata_proto::v1;
use uuid::Uuid;

use crate::error::Error;

/// Media type set by the JSON constructors.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// The state a stream must be in for an append to go through. When it is
/// not, the append fails with
/// [`Error::WrongExpectedVersion`](crate::Error::WrongExpectedVersion) and
/// writes nothing.
///
/// ```
/// use strata_client::ExpectedVersion;
///
/// // After reading a stream up to revision 7, append only if nobody else did:
/// let expected = ExpectedVersion::Exact(7);
/// assert_eq!(expected.to_string(), "exact(7)");
/// // A fresh stream:
/// assert_eq!(ExpectedVersion::from_revision(None), ExpectedVersion::NoStream);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The stream must not exist yet (hold no event).
    NoStream,
    /// The stream must hold at least one event.
    StreamExists,
    /// The stream's last event must have exactly this revision.
    Exact(u64),
}

impl ExpectedVersion {
    /// The check that a stream is still where a reader left it: `Exact(r)`
    /// after reading up to revision `r`, `NoStream` when it read nothing.
    ///
    /// ```
    /// use strata_client::ExpectedVersion;
    ///
    /// assert_eq!(ExpectedVersion::from_revision(Some(3)), ExpectedVersion::Exact(3));
    /// ```
    pub fn from_revision(last_revision: Option<u64>) -> Self {
        match last_revision {
            Some(r) => ExpectedVersion::Exact(r),
            None => ExpectedVersion::NoStream,
        }
    }

    pub(crate) fn to_wire(self) -> v1::ExpectedVersion {
        match self {
            ExpectedVersion::Any => v1::ExpectedVersion::any(),
            ExpectedVersion::NoStream => v1::ExpectedVersion::no_stream(),
            ExpectedVersion::StreamExists => v1::ExpectedVersion::stream_exists(),
            ExpectedVersion::Exact(r) => v1::ExpectedVersion::exact(r),
        }
    }
}

/// The proto names: `any`, `no_stream`, `stream_exists`, `exact(N)`.
impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_wire(), f)
    }
}

/// One event to append. Its id makes the append idempotent: it is a random
/// UUID v4 unless given with [`EventData::with_id`]; keep the same `EventData`
/// when retrying an append whose answer was lost.
///
/// ```
/// use strata_client::EventData;
///
/// let raw = EventData::binary("Pinged", vec![1, 2, 3]);
/// assert_eq!(raw.event_type(), "Pinged");
///
/// # #[cfg(feature = "json")] {
/// #[derive(serde::Serialize)]
/// struct Deposited { amount: u64 }
/// let event = EventData::json("Deposited", &Deposited { amount: 50 })?
///     .with_metadata(br#"{"user":"ann"}"#.to_vec());
/// assert_eq!(event.data(), br#"{"amount":50}"#);
/// assert_eq!(event.content_type(), Some("application/json"));
/// # }
/// # Ok::<(), strata_client::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventData {
    id: Uuid,
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    content_type: Option<String>,
}

impl EventData {
    /// An event with an opaque payload and a fresh random id.
    ///
    /// ```
    /// let e = strata_client::EventData::binary("Tick", b"\x00\x01".to_vec());
    /// assert_eq!(e.data(), b"\x00\x01");
    /// assert_eq!(e.content_type(), None);
    /// ```
    pub fn binary(event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        EventData {
            id: Uuid::new_v4(),
            event_type: event_type.into(),
            data: data.into(),
            metadata: Vec::new(),
            content_type: None,
        }
    }

    /// An event whose payload is `value` serialized as JSON, with content
    /// type `application/json` and a fresh random id.
    ///
    /// ```
    /// let e = strata_client::EventData::json("Renamed", &serde_json::json!({"name": "Ann"}))?;
    /// assert_eq!(e.data(), br#"{"name":"Ann"}"#);
    /// # Ok::<(), strata_client::Error>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(
        event_type: impl Into<String>,
        value: &T,
    ) -> Result<Self, Error> {
        Ok(Self::binary(event_type, serde_json::to_vec(value)?)
            .with_content_type(JSON_CONTENT_TYPE))
    }

    /// Replaces the random id, e.g. with one derived from a command id so
    /// that a repeated command appends nothing new.
    ///
    /// ```
    /// use strata_client::{EventData, Uuid};
    ///
    /// let id = Uuid::new_v4();
    /// assert_eq!(EventData::binary("T", vec![]).with_id(id).id(), id);
    /// ```
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Sets the metadata (correlation ids and the like), opaque to the server.
    ///
    /// ```
    /// let e = strata_client::EventData::binary("T", vec![]).with_metadata(b"trace=1".to_vec());
    /// assert_eq!(e.metadata(), b"trace=1");
    /// ```
    pub fn with_metadata(mut self, metadata: impl Into<Vec<u8>>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Sets the metadata to `value` serialized as JSON.
    ///
    /// ```
    /// let e = strata_client::EventData::binary("T", vec![])
    ///     .with_metadata_json(&serde_json::json!({"user": "ann"}))?;
    /// assert_eq!(e.metadata(), br#"{"user":"ann"}"#);
    /// # Ok::<(), strata_client::Error>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn with_metadata_json<T: serde::Serialize + ?Sized>(
        self,
        value: &T,
    ) -> Result<Self, Error> {
        Ok(self.with_metadata(serde_json::to_vec(value)?))
    }

    /// Sets the media type of the payload, e.g. `text/plain`.
    ///
    /// ```
    /// let e = strata_client::EventData::binary("T", vec![]).with_content_type("text/plain");
    /// assert_eq!(e.content_type(), Some("text/plain"));
    /// ```
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// The event's id.
    ///
    /// ```
    /// let e = strata_client::EventData::binary("T", vec![]);
    /// assert_eq!(e.id().get_version_num(), 4);
    /// ```
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The event's type.
    ///
    /// ```
    /// assert_eq!(strata_client::EventData::binary("T", vec![]).event_type(), "T");
    /// ```
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload.
    ///
    /// ```
    /// assert_eq!(strata_client::EventData::binary("T", vec![7]).data(), [7]);
    /// ```
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The metadata.
    ///
    /// ```
    /// assert!(strata_client::EventData::binary("T", vec![]).metadata().is_empty());
    /// ```
    pub fn metadata(&self) -> &[u8] {
        &self.metadata
    }

    /// The payload's media type, if one was set.
    ///
    /// ```
    /// assert_eq!(strata_client::EventData::binary("T", vec![]).content_type(), None);
    /// ```
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    pub(crate) fn into_wire(self) -> v1::EventData {
        v1::EventData {
            id: Some(v1::Uuid::from_bytes_raw(self.id.into_bytes())),
            r#type: self.event_type,
            data: self.data.into(),
            metadata: self.metadata.into(),
            content_type: self.content_type,
        }
    }
}

/// A stored event, as returned by reads and subscriptions.
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// use strata_client::{ReadOptions, TryStreamExt};
///
/// let mut events = client.read_stream("order-1", ReadOptions::forwards()).await?;
/// while let Some(event) = events.try_next().await? {
///     println!("{}@{} (position {}): {}", event.stream, event.revision, event.position, event.event_type);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// The stream the event belongs to.
    pub stream: String,
    /// Its 0-based index inside the stream.
    pub revision: u64,
    /// Its 0-based index in the global log (`$all`).
    pub position: u64,
    /// The id it was appended with.
    pub id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its payload, as received (decoded without a copy).
    pub data: Bytes,
    /// Its metadata, as received (decoded without a copy).
    pub metadata: Bytes,
    /// Media type of the payload; `None` when the appender gave none.
    pub content_type: Option<String>,
    /// When the server committed it (server clock).
    pub recorded_at: SystemTime,
}

impl RecordedEvent {
    /// Deserializes the payload from JSON.
    ///
    /// ```no_run
    /// # fn demo(event: strata_client::RecordedEvent) -> Result<(), strata_client::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct Deposited { amount: u64 }
    /// let Deposited { amount } = event.json()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.data)?)
    }

    /// Deserializes the metadata from JSON.
    ///
    /// ```no_run
    /// # fn demo(event: strata_client::RecordedEvent) -> Result<(), strata_client::Error> {
    /// let meta: serde_json::Value = event.metadata_json()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "json")]
    pub fn metadata_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.metadata)?)
    }

    pub(crate) fn from_wire(e: v1::RecordedEvent) -> Result<Self, Error> {
        let id =
            e.id.as_ref()
                .ok_or_else(|| protocol("event without an id"))?
                .to_bytes()
                .map_err(|err| protocol(&format!("event id: {err}")))?;
        let recorded_at = match e.recorded_at {
            Some(ts) => timestamp(ts.seconds, ts.nanos)
                .ok_or_else(|| protocol("recorded_at out of range"))?,
            None => SystemTime::UNIX_EPOCH,
        };
        Ok(RecordedEvent {
            stream: e.stream,
            revision: e.revision,
            position: e.position,
            id: Uuid::from_bytes(id),
            event_type: e.r#type,
            data: e.data,
            metadata: e.metadata,
            content_type: Some(e.content_type).filter(|c| !c.is_empty()),
            recorded_at,
        })
    }
}

fn protocol(message: &str) -> Error {
    Error::Protocol {
        message: message.to_owned(),
    }
}

fn timestamp(seconds: i64, nanos: i32) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(u64::try_from(nanos).ok()?);
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds.unsigned_abs()) + nanos)
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(Duration::from_secs(seconds.unsigned_abs()))?
            .checked_add(nanos)
    }
}

/// Where a successful append put its events.
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// use strata_client::{EventData, ExpectedVersion};
///
/// let written = client
///     .append("order-1", ExpectedVersion::NoStream, [EventData::binary("Placed", vec![])])
///     .await?;
/// assert_eq!(written.next_expected_revision, 0);
/// // The next append continues exactly where this one ended:
/// client.append("order-1", written.next_expected_version(), [EventData::binary("Paid", vec![])]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AppendResult {
    /// Revision of the last written event: pass it as
    /// [`ExpectedVersion::Exact`] for the next append to the stream.
    pub next_expected_revision: u64,
    /// Global position of the last written event.
    pub position: u64,
}

impl AppendResult {
    /// `ExpectedVersion::Exact(next_expected_revision)`.
    ///
    /// ```
    /// # fn demo(r: strata_client::AppendResult) {
    /// let next = r.next_expected_version();
    /// # }
    /// ```
    pub fn next_expected_version(&self) -> ExpectedVersion {
        ExpectedVersion::Exact(self.next_expected_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_goes_to_the_wire_with_its_id() {
        let id = Uuid::new_v4();
        let wire = EventData::binary("T", vec![1])
            .with_id(id)
            .with_metadata(vec![2])
            .with_content_type("x/y")
            .into_wire();
        assert_eq!(
            wire.id.as_ref().map(|i| i.to_bytes()),
            Some(Ok(id.into_bytes()))
        );
        assert_eq!(
            (
                wire.r#type.as_str(),
                &wire.data[..],
                &wire.metadata[..],
                wire.content_type.as_deref()
            ),
            ("T", &[1u8][..], &[2u8][..], Some("x/y"))
        );
        assert_ne!(
            EventData::binary("T", vec![]).id(),
            EventData::binary("T", vec![]).id()
        );
    }

    #[test]
    fn recorded_event_from_the_wire() {
        let id = Uuid::new_v4();
        let mut wire = v1::RecordedEvent {
            stream: "s".into(),
            revision: 1,
            position: 9,
            id: Some(v1::Uuid::from_bytes(id.into_bytes())),
            r#type: "T".into(),
            data: b"{}".to_vec().into(),
            recorded_at: Some(Default::default()),
            ..Default::default()
        };
        if let Some(ts) = wire.recorded_at.as_mut() {
            (ts.seconds, ts.nanos) = (1_700_000_000, 5_000);
        }
        let e = RecordedEvent::from_wire(wire.clone()).expect("valid");
        assert_eq!((e.id, e.revision, e.position), (id, 1, 9));
        assert_eq!(e.content_type, None);
        assert_eq!(
            e.recorded_at,
            SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5_000)
        );
        let no_id = v1::RecordedEvent { id: None, ..wire };
        assert!(matches!(
            RecordedEvent::from_wire(no_id),
            Err(Error::Protocol { .. })
        ));
    }
}
