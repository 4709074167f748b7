//! [`Client`]: one HTTP/2 channel to a Strata server (TLS and credentials
//! set up here, once, for every service) and the calls over it. Unary calls
//! (append, delete, tombstone, metadata, stats) live here; reads,
//! subscriptions, consumer groups and users in their own modules.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1;
use strata_proto::v1::streams_client::StreamsClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;
use tonic::{Request, Status};

use crate::auth::{AuthChannel, AuthHeader};
use crate::error::{error_from_status, Error};
use crate::event::{AppendResult, EventData, ExpectedVersion};
use crate::filter::Filter;
use crate::lifecycle::{
    DeleteResult, SetStreamMetadataResult, StreamMetadata, StreamMetadataResult,
};
use crate::multi::{MultiAppend, MultiAppendResult, StreamAppended, StreamConflict};
use crate::options::ClientOptions;
use crate::pipeline::Pipeline;
use crate::read::{EventStream, ReadOptions};
use crate::subscription::{SubscribeFrom, Subscription};

/// A connection to a Strata server. Cheap to clone: clones share one HTTP/2
/// channel, which reconnects by itself after the server comes back.
///
/// ```no_run
/// # async fn demo() -> Result<(), strata_client::Error> {
/// use strata_client::{Client, EventData, ExpectedVersion};
///
/// let client = Client::connect("http://127.0.0.1:2113").await?;
/// let other = client.clone(); // same connection
/// other
///     .append("greetings", ExpectedVersion::Any, [EventData::binary("Hello", b"world".to_vec())])
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    grpc: StreamsClient<AuthChannel>,
    channel: AuthChannel,
    options: Arc<ClientOptions>,
}

impl Client {
    /// Connects to the server at `url` (e.g. `http://127.0.0.1:2113`) with
    /// the default [`ClientOptions`]: no TLS, no credentials. Fails with
    /// [`Error::Connect`] when the server cannot be reached within the
    /// connect timeout.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), strata_client::Error> {
    /// let client = strata_client::Client::connect("http://127.0.0.1:2113").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: impl Into<String>) -> Result<Client, Error> {
        Self::connect_with(url, ClientOptions::default()).await
    }

    /// Connects to the server at `url` with the given options: over TLS
    /// when `url` is `https://` (the options must then name a CA),
    /// sending their credentials with every call. Fails with
    /// [`Error::InvalidOptions`] before connecting when the options do not
    /// fit the URL, and with [`Error::Connect`] when the server cannot be
    /// reached or its certificate is not trusted.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), strata_client::Error> {
    /// use strata_client::{Client, ClientOptions};
    ///
    /// let options = ClientOptions::new().deadline(None);
    /// let client = Client::connect_with("http://127.0.0.1:2113", options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(
        url: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Client, Error> {
        let url = url.into();
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|source| Error::InvalidUrl {
                url: url.clone(),
                source,
            })?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(options.keep_alive_interval)
            .keep_alive_timeout(options.keep_alive_interval)
            .keep_alive_while_idle(true);
        let endpoint = options.tls.apply(&url, endpoint)?;
        let header = AuthHeader::new(options.credentials.as_ref())?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| Error::Connect { url, source })?;
        let channel = InterceptedService::new(channel, header);
        // Only answers are limited here: an over-limit request is left to
        // the server, which refuses it with RESOURCE_EXHAUSTED (tonic's own
        // send-side check would surface as an opaque HTTP/2 reset).
        let grpc = StreamsClient::new(channel.clone())
            .max_decoding_message_size(options.max_message_size)
            .max_encoding_message_size(usize::MAX);
        Ok(Client {
            grpc,
            channel,
            options: Arc::new(options),
        })
    }

    /// The connection, with its TLS and credentials, for calling a service
    /// this crate does not wrap (e.g. `strata.v1.Operations` or
    /// `grpc.health.v1.Health`) through its generated client; the crate's
    /// own service clients use it too. Cheap: clones share the connection.
    /// No deadline or message limit applies to calls made through it but
    /// those given to the generated client. [`Error::from`] maps their
    /// statuses.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_proto::v1::{operations_client::OperationsClient, GetScavengeRequest};
    ///
    /// let mut operations = OperationsClient::new(client.channel());
    /// let status = operations.get_scavenge(GetScavengeRequest {}).await?.into_inner();
    /// println!("{} segments scavenged", status.segments_done);
    /// # Ok(()) }
    /// ```
    pub fn channel(&self) -> AuthChannel {
        self.channel.clone()
    }

    /// The options this client was connected with.
    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Appends `events` to `stream`, atomically, if the stream is in the
    /// `expected` state. A conflict is
    /// [`Error::WrongExpectedVersion`] carrying the stream's current
    /// revision; nothing was written then. Retrying with the same events
    /// (same ids) after a lost answer is safe: the server returns the
    /// original result and writes nothing.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{Error, EventData, ExpectedVersion};
    ///
    /// let event = EventData::binary("Opened", b"{}".to_vec());
    /// match client.append("account-7", ExpectedVersion::NoStream, [event]).await {
    ///     Ok(written) => println!("at revision {}", written.next_expected_revision),
    ///     Err(Error::WrongExpectedVersion { current, .. }) => println!("already open, at {current:?}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn append(
        &self,
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = EventData>,
    ) -> Result<AppendResult, Error> {
        let stream = stream.into();
        let request = append_request(stream.clone(), expected, events);
        let mut grpc = self.grpc.clone();
        let response = self
            .unary(request, |r| async move { grpc.append(r).await })
            .await?;
        append_outcome(stream, expected, response)
    }

    /// Appends to several streams in one atomic write, if every append's
    /// and check's expected version holds: their events take consecutive
    /// positions in the order the appends were added, or nothing is
    /// written and [`Error::MultiAppendConflict`] lists every condition that
    /// failed. Retrying the same multi-append returns the original result.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{EventData, ExpectedVersion, MultiAppend};
    /// let done = client
    ///     .multi_append(
    ///         MultiAppend::new()
    ///             .append("order-1", ExpectedVersion::NoStream, [EventData::binary("Placed", vec![])])
    ///             .append("stock-9", ExpectedVersion::Any, [EventData::binary("Reserved", vec![])])
    ///             .check("customer-7", ExpectedVersion::StreamExists),
    ///     )
    ///     .await?;
    /// println!("committed up to position {}", done.position);
    /// # Ok(()) }
    /// ```
    pub async fn multi_append(&self, multi: MultiAppend) -> Result<MultiAppendResult, Error> {
        use v1::multi_append_response::Result as Outcome;

        let expectations = multi.expectations();
        let mut grpc = self.grpc.clone();
        let response = self
            .unary(
                multi.into_wire(),
                |r| async move { grpc.multi_append(r).await },
            )
            .await?;
        match response.result {
            Some(Outcome::Success(s)) => Ok(MultiAppendResult {
                results: s
                    .results
                    .into_iter()
                    .map(|r| StreamAppended {
                        stream: r.stream,
                        next_expected_revision: r.next_expected_revision,
                        position: r.position,
                    })
                    .collect(),
                position: s.position,
            }),
            Some(Outcome::WrongExpectedVersion(w)) => Err(Error::MultiAppendConflict {
                conflicts: w
                    .conflicts
                    .into_iter()
                    .map(|c| StreamConflict {
                        expected: expectations
                            .iter()
                            .find(|(s, _)| *s == c.stream)
                            .map_or(ExpectedVersion::Any, |(_, e)| *e),
                        stream: c.stream,
                        current: c.current_revision,
                    })
                    .collect(),
            }),
            None => Err(Error::Protocol {
                message: "multi-append response without a result".into(),
            }),
        }
    }

    /// Opens a [`Pipeline`]: one `PipelinedAppend` call that any number of
    /// tasks append through, each awaiting its own answer. This is the way
    /// for many writers to share few connections.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{EventData, ExpectedVersion};
    /// let pipeline = client.pipeline().await?;
    /// let mut tasks = Vec::new();
    /// for i in 0..16 {
    ///     let p = pipeline.clone();
    ///     tasks.push(tokio::spawn(async move {
    ///         let event = EventData::binary("Tick", vec![i as u8]);
    ///         p.append(format!("meter-{i}"), ExpectedVersion::Any, [event]).await
    ///     }));
    /// }
    /// for t in tasks {
    ///     t.await.expect("task")?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pipeline(&self) -> Result<Pipeline, Error> {
        Pipeline::open(self.grpc.clone(), self.options.deadline).await
    }

    /// Deletes `stream` softly, if it is in the `expected` state: its
    /// events are hidden everywhere and reading it fails with
    /// [`Error::NotFound`]. A later append re-creates it, its revisions
    /// continuing after the last one before the delete (only the new events
    /// are visible), and it counts as not existing for expected versions
    /// until then. A conflict is [`Error::WrongExpectedVersion`], as for
    /// [`append`](Client::append); a stream that does not exist is
    /// [`Error::NotFound`], a tombstoned one [`Error::Tombstoned`].
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{EventData, ExpectedVersion};
    ///
    /// // Only if nobody appended after revision 4:
    /// let deleted = client.delete("cart-7", ExpectedVersion::Exact(4)).await?;
    /// println!("deleted at position {}", deleted.position);
    /// // Re-created by the next append, at revision 5:
    /// client.append("cart-7", ExpectedVersion::NoStream, [EventData::binary("Opened", vec![])]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(
        &self,
        stream: impl Into<String>,
        expected: ExpectedVersion,
    ) -> Result<DeleteResult, Error> {
        let stream = stream.into();
        let request = v1::DeleteRequest {
            stream: stream.clone(),
            expected: Some(expected.to_wire()),
        };
        let mut grpc = self.grpc.clone();
        let response = self
            .unary(request, |r| async move { grpc.delete(r).await })
            .await?;
        DeleteResult::from_delete_wire(stream, expected, response)
    }

    /// Deletes `stream` for good, if it is in the `expected` state: its
    /// events are hidden everywhere, and every later read, subscription,
    /// append, delete or metadata call on it fails with
    /// [`Error::Tombstoned`]. A name that holds no stream may be tombstoned
    /// too (with `Any` or `NoStream`), which reserves it. A conflict is
    /// [`Error::WrongExpectedVersion`], as for [`append`](Client::append).
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{Error, EventData, ExpectedVersion};
    ///
    /// client.tombstone("user-42", ExpectedVersion::Any).await?;
    /// let again = client.append("user-42", ExpectedVersion::Any, [EventData::binary("Registered", vec![])]);
    /// assert!(matches!(again.await, Err(Error::Tombstoned { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn tombstone(
        &self,
        stream: impl Into<String>,
        expected: ExpectedVersion,
    ) -> Result<DeleteResult, Error> {
        let stream = stream.into();
        let request = v1::TombstoneRequest {
            stream: stream.clone(),
            expected: Some(expected.to_wire()),
        };
        let mut grpc = self.grpc.clone();
        let response = self
            .unary(request, |r| async move { grpc.tombstone(r).await })
            .await?;
        DeleteResult::from_tombstone_wire(stream, expected, response)
    }

    /// The metadata of `stream` and its revision. Metadata that was never
    /// set is empty, with no revision; that includes a stream that does not
    /// exist. A tombstoned stream fails with [`Error::Tombstoned`].
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// let current = client.stream_metadata("order-1").await?;
    /// match current.revision {
    ///     Some(r) => println!("metadata revision {r}: keep {:?} events", current.metadata.max_count),
    ///     None => println!("no metadata"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream_metadata(
        &self,
        stream: impl Into<String>,
    ) -> Result<StreamMetadataResult, Error> {
        let request = v1::GetStreamMetadataRequest {
            stream: stream.into(),
        };
        let mut grpc = self.grpc.clone();
        let response = self
            .unary(
                request,
                |r| async move { grpc.get_stream_metadata(r).await },
            )
            .await?;
        StreamMetadataResult::from_wire(response)
    }

    /// Replaces the metadata of `stream` (which need not exist yet), if the
    /// metadata is in the `expected` state: `NoStream` when it was never
    /// set, `Exact(r)` when its revision is `r`. Retention takes effect at
    /// once on every read. A conflict is [`Error::WrongExpectedVersion`]
    /// naming the metadata stream `$$<stream>` and the metadata's current
    /// revision.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use std::time::Duration;
    /// use strata_client::{ExpectedVersion, StreamMetadata};
    ///
    /// let keep_a_day = StreamMetadata::new().with_max_age(Duration::from_secs(24 * 3600));
    /// let set = client.set_stream_metadata("sensor-1", ExpectedVersion::Any, keep_a_day).await?;
    /// println!("metadata revision {}", set.metadata_revision);
    /// # Ok(()) }
    /// ```
    pub async fn set_stream_metadata(
        &self,
        stream: impl Into<String>,
        expected: ExpectedVersion,
        metadata: StreamMetadata,
    ) -> Result<SetStreamMetadataResult, Error> {
        let stream = stream.into();
        let request = v1::SetStreamMetadataRequest {
            stream: stream.clone(),
            expected: Some(expected.to_wire()),
            metadata: Some(metadata.into_wire()),
        };
        let mut grpc = self.grpc.clone();
        let response = self
            .unary(
                request,
                |r| async move { grpc.set_stream_metadata(r).await },
            )
            .await?;
        SetStreamMetadataResult::from_wire(&stream, expected, response)
    }

    /// Counters of the store: head position, streams, events, disk use.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// let stats = client.stats().await?;
    /// println!("{} events in {} streams", stats.events, stats.streams);
    /// # Ok(()) }
    /// ```
    pub async fn stats(&self) -> Result<Stats, Error> {
        let mut grpc = self.grpc.clone();
        let s = self
            .unary(v1::StatsRequest {}, |r| async move { grpc.stats(r).await })
            .await?;
        Ok(Stats {
            head_position: s.head_position,
            streams: s.streams,
            events: s.events,
            disk_bytes: s.disk_bytes,
            format_version: s.format_version,
            indexed_position: s.indexed_position,
        })
    }

    /// Reads `stream` in the direction and from the point given by
    /// `options`. Fails with [`Error::NotFound`] when the stream does not
    /// exist. The result streams in batches; memory stays bounded however
    /// long the stream is.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{ReadOptions, TryStreamExt};
    ///
    /// // The last 10 events, newest first:
    /// let mut events = client.read_stream("order-1", ReadOptions::backwards().max_count(10)).await?;
    /// while let Some(event) = events.try_next().await? {
    ///     println!("{} {}", event.revision, event.event_type);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_stream(
        &self,
        stream: impl Into<String>,
        options: ReadOptions,
    ) -> Result<EventStream, Error> {
        let request = options.to_wire(v1::read_request::Target::Stream(stream.into()), None);
        self.read(request).await
    }

    /// Reads the global log `$all`, keeping only events that match `filter`
    /// (`max_count` then counts matching events).
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{Filter, ReadOptions, TryStreamExt};
    ///
    /// let orders = Filter::new().stream_prefix("order-");
    /// let events: Vec<_> = client
    ///     .read_all(ReadOptions::forwards().from_position(100).max_count(50), orders)
    ///     .await?
    ///     .try_collect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn read_all(
        &self,
        options: ReadOptions,
        filter: Filter,
    ) -> Result<EventStream, Error> {
        let target = v1::read_request::Target::All(v1::AllTarget {});
        let request = options.to_wire(target, filter.to_wire());
        self.read(request).await
    }

    async fn read(&self, request: v1::ReadRequest) -> Result<EventStream, Error> {
        let mut grpc = self.grpc.clone();
        let responses = self
            .unary(request, |r| async move { grpc.read(r).await })
            .await?;
        Ok(EventStream::new(responses, self.options.deadline))
    }

    /// Follows `stream`: the events after `from`, then live events as they
    /// are committed. The subscription resumes by itself after a
    /// disconnect or a server restart, from the last delivered revision, so
    /// no event is skipped or delivered twice; it ends only on an error
    /// that retrying cannot fix, or when dropped. The stream need not exist
    /// yet.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{SubscribeFrom, SubscriptionMessage, TryStreamExt};
    ///
    /// let mut sub = client.subscribe_to_stream("order-1", SubscribeFrom::Start);
    /// while let Some(message) = sub.try_next().await? {
    ///     match message {
    ///         SubscriptionMessage::Event(e) => println!("{} {}", e.revision, e.event_type),
    ///         SubscriptionMessage::CaughtUp { .. } => println!("live"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe_to_stream(
        &self,
        stream: impl Into<String>,
        from: SubscribeFrom,
    ) -> Subscription {
        Subscription::to_stream(self.clone(), stream.into(), from)
    }

    /// Follows the global log `$all`, keeping only events that match
    /// `filter`. A filtered subscription also yields
    /// [`Checkpoint`](crate::SubscriptionMessage::Checkpoint)s, so progress
    /// can be saved through long runs of non-matching events. Resumes by
    /// itself like [`subscribe_to_stream`](Client::subscribe_to_stream),
    /// from the last delivered event or checkpoint.
    ///
    /// ```no_run
    /// # async fn demo(client: strata_client::Client, saved: Option<u64>) -> Result<(), strata_client::Error> {
    /// use strata_client::{Filter, SubscribeFrom, SubscriptionMessage, TryStreamExt};
    ///
    /// let from = saved.map_or(SubscribeFrom::Start, SubscribeFrom::AfterPosition);
    /// let mut sub = client.subscribe_to_all(from, Filter::new().event_type_prefix("Order"));
    /// while let Some(message) = sub.try_next().await? {
    ///     if let Some(position) = message.resume_position() {
    ///         // save `position`: subscribe with AfterPosition(position) to continue here
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe_to_all(&self, from: SubscribeFrom, filter: Filter) -> Subscription {
        Subscription::to_all(self.clone(), from, filter)
    }

    /// Opens a subscription's server stream (used when starting and when
    /// resuming); the deadline covers only the opening.
    pub(crate) async fn open_subscription(
        &self,
        request: v1::SubscribeRequest,
    ) -> Result<tonic::Streaming<v1::SubscribeResponse>, Error> {
        let mut grpc = self.grpc.clone();
        self.unary(request, |r| async move { grpc.subscribe(r).await })
            .await
    }

    /// Runs one call under the deadline. When it passes, the call is
    /// dropped, which resets its HTTP/2 stream so the server stops too.
    /// (Not through `Request::set_timeout`: tonic reports that timeout as
    /// CANCELLED, indistinguishable from a reset connection.)
    pub(crate) async fn unary<Req, Resp, F, Fut>(
        &self,
        message: Req,
        call: F,
    ) -> Result<Resp, Error>
    where
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.unary_mapped(message, call, error_from_status).await
    }

    /// [`unary`](Client::unary) with the services' own status mapping
    /// (`error_from_other_status` for those where FAILED_PRECONDITION is
    /// no tombstone).
    pub(crate) async fn unary_mapped<Req, Resp, F, Fut>(
        &self,
        message: Req,
        call: F,
        map: fn(Status) -> Error,
    ) -> Result<Resp, Error>
    where
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let request = Request::new(message);
        let result = match self.options.deadline {
            None => call(request).await,
            Some(deadline) => within(deadline, call(request)).await,
        };
        result.map(tonic::Response::into_inner).map_err(map)
    }
}

/// An append for the wire (`Append`, `MultiAppend`, `PipelinedAppend`).
pub(crate) fn append_request(
    stream: String,
    expected: ExpectedVersion,
    events: impl IntoIterator<Item = EventData>,
) -> v1::AppendRequest {
    v1::AppendRequest {
        stream,
        expected: Some(expected.to_wire()),
        events: events.into_iter().map(EventData::into_wire).collect(),
    }
}

/// The result of an append from its wire answer.
pub(crate) fn append_outcome(
    stream: String,
    expected: ExpectedVersion,
    response: v1::AppendResponse,
) -> Result<AppendResult, Error> {
    use v1::append_response::Result as Outcome;
    match response.result {
        Some(Outcome::Success(s)) => Ok(AppendResult {
            next_expected_revision: s.next_expected_revision,
            position: s.position,
        }),
        Some(Outcome::WrongExpectedVersion(w)) => Err(Error::WrongExpectedVersion {
            stream,
            expected,
            current: w.current_revision,
        }),
        None => Err(Error::Protocol {
            message: "append response without a result".into(),
        }),
    }
}

/// Awaits `fut`, or a DEADLINE_EXCEEDED status once `deadline` has passed.
pub(crate) async fn within<T>(
    deadline: Duration,
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(deadline, fut)
        .await
        .unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "no answer within {deadline:?}"
            )))
        })
}

/// Counters describing the store, from [`Client::stats`].
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// let s = client.stats().await?;
/// assert!(s.indexed_position <= s.head_position);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Number of events in the global log: the position the next event gets.
    pub head_position: u64,
    /// Number of streams holding at least one event.
    pub streams: u64,
    /// Number of stored events.
    pub events: u64,
    /// Bytes the store occupies on disk (log, indexes, metadata).
    pub disk_bytes: u64,
    /// Version of the on-disk format.
    pub format_version: u32,
    /// Position up to which the stream index is built.
    pub indexed_position: u64,
}
