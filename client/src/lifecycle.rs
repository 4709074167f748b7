//! The stream lifecycle: what a delete or tombstone answers
//! ([`DeleteResult`]), a stream's metadata ([`StreamMetadata`], with its
//! access lists [`StreamAcl`]) and the answers of reading and replacing it
//! ([`StreamMetadataResult`], [`SetStreamMetadataResult`]), with their wire
//! conversions.

use std::time::Duration;

use bytes::Bytes;
use strata_proto::v1;

use crate::error::Error;
use crate::event::ExpectedVersion;

/// Where a delete or tombstone was recorded, from
/// [`Client::delete`](crate::Client::delete) and
/// [`Client::tombstone`](crate::Client::tombstone).
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// use strata_client::ExpectedVersion;
///
/// let deleted = client.delete("cart-7", ExpectedVersion::Any).await?;
/// println!("deleted at position {}", deleted.position);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeleteResult {
    /// Position of the delete's (or tombstone's) record in the global log.
    pub position: u64,
}

impl DeleteResult {
    pub(crate) fn from_delete_wire(
        stream: String,
        expected: ExpectedVersion,
        response: v1::DeleteResponse,
    ) -> Result<Self, Error> {
        use v1::delete_response::Result as Outcome;
        match response.result {
            Some(Outcome::Success(s)) => Ok(DeleteResult {
                position: s.position,
            }),
            Some(Outcome::WrongExpectedVersion(w)) => Err(conflict(stream, expected, w)),
            None => Err(protocol("delete response without a result")),
        }
    }

    pub(crate) fn from_tombstone_wire(
        stream: String,
        expected: ExpectedVersion,
        response: v1::TombstoneResponse,
    ) -> Result<Self, Error> {
        use v1::tombstone_response::Result as Outcome;
        match response.result {
            Some(Outcome::Success(s)) => Ok(DeleteResult {
                position: s.position,
            }),
            Some(Outcome::WrongExpectedVersion(w)) => Err(conflict(stream, expected, w)),
            None => Err(protocol("tombstone response without a result")),
        }
    }
}

/// Who may do what to a stream. Each list holds user names or
/// `$role:NAME`; a non-empty list replaces the server's role default for
/// that operation (enforced when the server has authentication on).
///
/// ```
/// use strata_client::StreamAcl;
///
/// let acl = StreamAcl::new().allow_read("$role:auditor").allow_read("ann").allow_write("ann");
/// assert_eq!(acl.read, ["$role:auditor", "ann"]);
/// assert!(acl.delete.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StreamAcl {
    /// May read the stream.
    pub read: Vec<String>,
    /// May append to it.
    pub write: Vec<String>,
    /// May delete it.
    pub delete: Vec<String>,
    /// May read its metadata.
    pub metadata_read: Vec<String>,
    /// May change its metadata.
    pub metadata_write: Vec<String>,
}

impl StreamAcl {
    /// Empty lists: the role defaults apply to every operation.
    ///
    /// ```
    /// assert_eq!(strata_client::StreamAcl::new(), Default::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `who` (a user name or `$role:NAME`) to the readers.
    ///
    /// ```
    /// let acl = strata_client::StreamAcl::new().allow_read("ann");
    /// assert_eq!(acl.read, ["ann"]);
    /// ```
    pub fn allow_read(mut self, who: impl Into<String>) -> Self {
        self.read.push(who.into());
        self
    }

    /// Adds `who` to those who may append.
    ///
    /// ```
    /// let acl = strata_client::StreamAcl::new().allow_write("$role:writer");
    /// assert_eq!(acl.write, ["$role:writer"]);
    /// ```
    pub fn allow_write(mut self, who: impl Into<String>) -> Self {
        self.write.push(who.into());
        self
    }

    /// Adds `who` to those who may delete the stream.
    ///
    /// ```
    /// let acl = strata_client::StreamAcl::new().allow_delete("ops");
    /// assert_eq!(acl.delete, ["ops"]);
    /// ```
    pub fn allow_delete(mut self, who: impl Into<String>) -> Self {
        self.delete.push(who.into());
        self
    }

    /// Adds `who` to those who may read the metadata.
    ///
    /// ```
    /// let acl = strata_client::StreamAcl::new().allow_metadata_read("ops");
    /// assert_eq!(acl.metadata_read, ["ops"]);
    /// ```
    pub fn allow_metadata_read(mut self, who: impl Into<String>) -> Self {
        self.metadata_read.push(who.into());
        self
    }

    /// Adds `who` to those who may change the metadata.
    ///
    /// ```
    /// let acl = strata_client::StreamAcl::new().allow_metadata_write("ops");
    /// assert_eq!(acl.metadata_write, ["ops"]);
    /// ```
    pub fn allow_metadata_write(mut self, who: impl Into<String>) -> Self {
        self.metadata_write.push(who.into());
        self
    }

    fn into_wire(self) -> v1::StreamAcl {
        v1::StreamAcl {
            read: self.read,
            write: self.write,
            delete: self.delete,
            metadata_read: self.metadata_read,
            metadata_write: self.metadata_write,
        }
    }

    fn from_wire(acl: v1::StreamAcl) -> Self {
        StreamAcl {
            read: acl.read,
            write: acl.write,
            delete: acl.delete,
            metadata_read: acl.metadata_read,
            metadata_write: acl.metadata_write,
        }
    }
}

/// A stream's metadata: retention, access lists and application data.
/// Retention hides an event when its revision is below `truncate_before`,
/// or it is not among the newest `max_count` of its stream, or it was
/// recorded longer than `max_age` ago; it takes effect at once on every
/// read and catch-up. The default, empty metadata hides nothing.
///
/// Setting metadata replaces all of it: to change one field, read it with
/// [`Client::stream_metadata`](crate::Client::stream_metadata), change that
/// field, and write it back.
///
/// ```
/// use std::time::Duration;
/// use strata_client::{StreamAcl, StreamMetadata};
///
/// // Keep the newest 100 events, none older than a week:
/// let metadata = StreamMetadata::new()
///     .with_max_count(100)
///     .with_max_age(Duration::from_secs(7 * 24 * 3600))
///     .with_acl(StreamAcl::new().allow_read("$role:auditor"))
///     .with_custom(b"owner=billing".to_vec());
/// assert_eq!(metadata.max_count, Some(100));
/// assert_eq!(metadata.truncate_before, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StreamMetadata {
    /// Keep only the newest `max_count` events visible.
    pub max_count: Option<u64>,
    /// Hide events recorded longer ago than this.
    pub max_age: Option<Duration>,
    /// Hide events below this revision.
    pub truncate_before: Option<u64>,
    /// Who may do what to the stream.
    pub acl: StreamAcl,
    /// Application data, opaque to the server.
    pub custom: Bytes,
}

impl StreamMetadata {
    /// Empty metadata: no retention, default access, no custom data.
    ///
    /// ```
    /// let empty = strata_client::StreamMetadata::new();
    /// assert_eq!((empty.max_count, empty.max_age), (None, None));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only the newest `max_count` events visible (0 hides them all;
    /// the stream still exists).
    ///
    /// ```
    /// let m = strata_client::StreamMetadata::new().with_max_count(2);
    /// assert_eq!(m.max_count, Some(2));
    /// ```
    pub fn with_max_count(mut self, max_count: u64) -> Self {
        self.max_count = Some(max_count);
        self
    }

    /// Hides events recorded longer ago than `max_age`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let m = strata_client::StreamMetadata::new().with_max_age(Duration::from_secs(3600));
    /// assert_eq!(m.max_age, Some(Duration::from_secs(3600)));
    /// ```
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Hides the events below revision `revision`.
    ///
    /// ```
    /// let m = strata_client::StreamMetadata::new().with_truncate_before(10);
    /// assert_eq!(m.truncate_before, Some(10));
    /// ```
    pub fn with_truncate_before(mut self, revision: u64) -> Self {
        self.truncate_before = Some(revision);
        self
    }

    /// Sets the access lists.
    ///
    /// ```
    /// use strata_client::{StreamAcl, StreamMetadata};
    /// let m = StreamMetadata::new().with_acl(StreamAcl::new().allow_write("ann"));
    /// assert_eq!(m.acl.write, ["ann"]);
    /// ```
    pub fn with_acl(mut self, acl: StreamAcl) -> Self {
        self.acl = acl;
        self
    }

    /// Sets the application data, opaque to the server.
    ///
    /// ```
    /// let m = strata_client::StreamMetadata::new().with_custom("owner=billing");
    /// assert_eq!(&m.custom[..], b"owner=billing");
    /// ```
    pub fn with_custom(mut self, custom: impl Into<Bytes>) -> Self {
        self.custom = custom.into();
        self
    }

    /// Sets the application data to `value` serialized as JSON.
    ///
    /// ```
    /// let m = strata_client::StreamMetadata::new()
    ///     .with_custom_json(&serde_json::json!({"owner": "billing"}))?;
    /// assert_eq!(&m.custom[..], br#"{"owner":"billing"}"#);
    /// # Ok::<(), strata_client::Error>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn with_custom_json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        Ok(self.with_custom(serde_json::to_vec(value)?))
    }

    /// Deserializes the application data from JSON.
    ///
    /// ```
    /// let m = strata_client::StreamMetadata::new().with_custom(r#"{"owner":"billing"}"#);
    /// let custom: serde_json::Value = m.custom_json()?;
    /// assert_eq!(custom["owner"], "billing");
    /// # Ok::<(), strata_client::Error>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn custom_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.custom)?)
    }

    pub(crate) fn into_wire(self) -> v1::StreamMetadata {
        v1::StreamMetadata {
            max_count: self.max_count,
            max_age: self.max_age.map(v1::duration),
            truncate_before: self.truncate_before,
            acl: Some(self.acl.into_wire()),
            custom: self.custom.into(),
        }
    }

    pub(crate) fn from_wire(m: v1::StreamMetadata) -> Result<Self, Error> {
        let max_age = m
            .max_age
            .map(Duration::try_from)
            .transpose()
            .map_err(|e| protocol(&format!("metadata max_age: {e}")))?;
        Ok(StreamMetadata {
            max_count: m.max_count,
            max_age,
            truncate_before: m.truncate_before,
            acl: StreamAcl::from_wire(m.acl.unwrap_or_default()),
            custom: m.custom.into(),
        })
    }
}

/// A stream's metadata and its revision, from
/// [`Client::stream_metadata`](crate::Client::stream_metadata).
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// let current = client.stream_metadata("order-1").await?;
/// // Change one field, and only if nobody else changed the metadata meanwhile:
/// let mut metadata = current.metadata.clone();
/// metadata.max_count = Some(1000);
/// client.set_stream_metadata("order-1", current.expected_version(), metadata).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamMetadataResult {
    /// The metadata; empty when it was never set (also for a stream that
    /// does not exist).
    pub metadata: StreamMetadata,
    /// Revision of the metadata (its index in the stream `$$<stream>`);
    /// `None` when it was never set.
    pub revision: Option<u64>,
}

impl StreamMetadataResult {
    /// The check that the metadata is still the one read:
    /// `Exact(revision)`, or `NoStream` when it was never set.
    ///
    /// ```
    /// # fn demo(r: strata_client::StreamMetadataResult) {
    /// let expected = r.expected_version();
    /// # }
    /// ```
    pub fn expected_version(&self) -> ExpectedVersion {
        ExpectedVersion::from_revision(self.revision)
    }

    pub(crate) fn from_wire(response: v1::StreamMetadataResponse) -> Result<Self, Error> {
        Ok(StreamMetadataResult {
            metadata: StreamMetadata::from_wire(response.metadata.unwrap_or_default())?,
            revision: response.metadata_revision,
        })
    }
}

/// Where new metadata was recorded, from
/// [`Client::set_stream_metadata`](crate::Client::set_stream_metadata).
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// use strata_client::{ExpectedVersion, StreamMetadata};
///
/// let set = client
///     .set_stream_metadata("order-1", ExpectedVersion::NoStream, StreamMetadata::new().with_max_count(10))
///     .await?;
/// assert_eq!(set.metadata_revision, 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SetStreamMetadataResult {
    /// The metadata's new revision: pass it as [`ExpectedVersion::Exact`]
    /// for the next change.
    pub metadata_revision: u64,
    /// Position of its record in the global log.
    pub position: u64,
}

impl SetStreamMetadataResult {
    /// `ExpectedVersion::Exact(metadata_revision)`.
    ///
    /// ```
    /// # fn demo(r: strata_client::SetStreamMetadataResult) {
    /// let next = r.next_expected_version();
    /// # }
    /// ```
    pub fn next_expected_version(&self) -> ExpectedVersion {
        ExpectedVersion::Exact(self.metadata_revision)
    }

    /// The answer to a change of the metadata of `stream`; a conflict
    /// names the metadata stream `$$<stream>`, whose revision it is.
    pub(crate) fn from_wire(
        stream: &str,
        expected: ExpectedVersion,
        response: v1::SetStreamMetadataResponse,
    ) -> Result<Self, Error> {
        use v1::set_stream_metadata_response::Result as Outcome;
        match response.result {
            Some(Outcome::Success(s)) => Ok(SetStreamMetadataResult {
                metadata_revision: s.metadata_revision,
                position: s.position,
            }),
            Some(Outcome::WrongExpectedVersion(w)) => {
                Err(conflict(metadata_stream(stream), expected, w))
            }
            None => Err(protocol("set-metadata response without a result")),
        }
    }
}

/// The stream holding the metadata history of `stream`.
fn metadata_stream(stream: &str) -> String {
    format!("$${stream}")
}

fn conflict(
    stream: String,
    expected: ExpectedVersion,
    w: v1::append_response::WrongExpectedVersion,
) -> Error {
    Error::WrongExpectedVersion {
        stream,
        expected,
        current: w.current_revision,
    }
}

fn protocol(message: &str) -> Error {
    Error::Protocol {
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_goes_to_the_wire_and_back() {
        let metadata = StreamMetadata::new()
            .with_max_count(3)
            .with_max_age(Duration::new(90, 5))
            .with_truncate_before(7)
            .with_acl(
                StreamAcl::new()
                    .allow_read("ann")
                    .allow_metadata_write("ops"),
            )
            .with_custom(vec![0, 1]);
        let wire = metadata.clone().into_wire();
        let age = wire.max_age.expect("max_age");
        assert_eq!((age.seconds, age.nanos), (90, 5));
        let acl = wire.acl.as_ref().expect("acl");
        assert_eq!(
            (&acl.read, &acl.metadata_write),
            (&vec!["ann".to_owned()], &vec!["ops".to_owned()])
        );
        assert_eq!(StreamMetadata::from_wire(wire).expect("valid"), metadata);

        let empty = StreamMetadata::new().into_wire();
        assert_eq!(empty.max_age, None);
        assert_eq!(
            StreamMetadata::from_wire(v1::StreamMetadata::default()).expect("valid"),
            StreamMetadata::new()
        );
    }

    #[test]
    fn huge_ages_saturate_and_negative_ones_are_refused() {
        let wire = StreamMetadata::new()
            .with_max_age(Duration::MAX)
            .into_wire();
        assert_eq!(wire.max_age.map(|a| a.seconds), Some(i64::MAX));
        let mut negative = v1::StreamMetadata::default();
        negative.max_age.insert(Default::default()).seconds = -1;
        assert!(matches!(
            StreamMetadata::from_wire(negative),
            Err(Error::Protocol { .. })
        ));
    }

    #[test]
    fn a_metadata_conflict_names_the_metadata_stream() {
        let response = v1::SetStreamMetadataResponse {
            result: Some(
                v1::set_stream_metadata_response::Result::WrongExpectedVersion(
                    v1::append_response::WrongExpectedVersion {
                        current_revision: Some(0),
                        expected: Some(ExpectedVersion::NoStream.to_wire()),
                    },
                ),
            ),
        };
        let e = SetStreamMetadataResult::from_wire("m", ExpectedVersion::NoStream, response)
            .expect_err("a conflict");
        assert!(
            matches!(&e, Error::WrongExpectedVersion { stream, current: Some(0), .. } if stream == "$$m"),
            "{e:?}"
        );
    }
}
