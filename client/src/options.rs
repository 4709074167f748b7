//! [`ClientOptions`]: timeouts, message limits and the resume policy of
//! subscriptions.

use std::time::Duration;

use crate::client::Client;
use crate::error::Error;

/// How a [`Client`] connects and how long it waits. Build one with the
/// setters, then call [`ClientOptions::connect`].
///
/// ```no_run
/// # async fn demo() -> Result<(), strata_client::Error> {
/// use std::time::Duration;
/// use strata_client::ClientOptions;
///
/// let client = ClientOptions::new()
///     .connect_timeout(Duration::from_secs(2))
///     .deadline(Some(Duration::from_secs(5)))
///     .connect("http://127.0.0.1:2113")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) keep_alive_interval: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) resume_backoff_initial: Duration,
    pub(crate) resume_backoff_max: Duration,
    pub(crate) max_resume_attempts: Option<u32>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            deadline: Some(Duration::from_secs(30)),
            keep_alive_interval: Duration::from_secs(10),
            max_message_size: 64 << 20,
            resume_backoff_initial: Duration::from_millis(50),
            resume_backoff_max: Duration::from_secs(2),
            max_resume_attempts: None,
        }
    }
}

impl ClientOptions {
    /// The defaults: 5 s to connect, a 30 s deadline per call, HTTP/2
    /// keep-alive pings every 10 s, 64 MiB messages, and subscriptions that
    /// resume forever with a backoff from 50 ms doubling up to 2 s.
    ///
    /// ```
    /// let options = strata_client::ClientOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long establishing the TCP + HTTP/2 connection may take.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let options = strata_client::ClientOptions::new().connect_timeout(Duration::from_millis(500));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The deadline of each call: an append or stats call must be answered
    /// within it, a read must deliver each batch within it, and a
    /// subscription must be (re)opened within it (live waiting is never
    /// limited). `None` waits forever. A call that misses it fails with
    /// [`Error::DeadlineExceeded`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// let options = strata_client::ClientOptions::new().deadline(Some(Duration::from_secs(1)));
    /// ```
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Interval of HTTP/2 keep-alive pings, which also detect a dead
    /// connection under an idle subscription.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let options = strata_client::ClientOptions::new().keep_alive_interval(Duration::from_secs(30));
    /// ```
    pub fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.keep_alive_interval = interval;
        self
    }

    /// Largest gRPC message the client accepts, in bytes: a read batch or
    /// subscription message above it fails with
    /// [`Error::MessageTooLarge`]. Must be above the server's largest event
    /// (default 1 MiB). Requests are limited by the server only.
    ///
    /// ```
    /// let options = strata_client::ClientOptions::new().max_message_size(32 << 20);
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Backoff between attempts to resume a broken subscription: `initial`
    /// after the first failure, doubling after each further one, capped at
    /// `max`. A delivered message resets it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let options = strata_client::ClientOptions::new()
    ///     .resume_backoff(Duration::from_millis(100), Duration::from_secs(10));
    /// ```
    pub fn resume_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.resume_backoff_initial = initial;
        self.resume_backoff_max = max.max(initial);
        self
    }

    /// How many consecutive failed attempts to resume a subscription are
    /// made before it ends with the last error; `None` (the default) never
    /// gives up.
    ///
    /// ```
    /// let options = strata_client::ClientOptions::new().max_resume_attempts(Some(10));
    /// ```
    pub fn max_resume_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_resume_attempts = attempts;
        self
    }

    /// Connects to the server at `url` (e.g. `http://127.0.0.1:2113`) with
    /// these options.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), strata_client::Error> {
    /// let client = strata_client::ClientOptions::new().connect("http://127.0.0.1:2113").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(self, url: impl Into<String>) -> Result<Client, Error> {
        Client::connect_with(url, self).await
    }

    /// Whether a long-lived call (a subscription, a group consumer) tries
    /// again after its `failures`-th failure in a row, with `error`: only a
    /// transient error, and only within `max_resume_attempts`.
    pub(crate) fn resumes(&self, error: &Error, failures: u32) -> bool {
        error.is_transient() && self.max_resume_attempts.is_none_or(|max| failures <= max)
    }

    /// The delay before resume attempt `attempt` (1 for the first retry).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.resume_backoff_initial
            .saturating_mul(factor)
            .min(self.resume_backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = ClientOptions::new()
            .resume_backoff(Duration::from_millis(10), Duration::from_millis(65));
        let delays: Vec<u128> = (1..=6).map(|a| o.backoff(a).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 65, 65, 65]);
        assert_eq!(o.backoff(u32::MAX), Duration::from_millis(65));
    }
}
