//! [`ClientOptions`]: timeouts, message limits, the resume policy of
//! subscriptions, TLS and credentials.

use std::path::Path;
use std::time::Duration;

use crate::auth::Credentials;
use crate::client::Client;
use crate::error::Error;
use crate::tls::TlsOptions;

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
///
/// Over TLS, with a user's credentials (see [`Credentials`]):
///
/// ```no_run
/// # async fn demo() -> Result<(), strata_client::Error> {
/// use strata_client::{ClientOptions, Credentials};
///
/// let client = ClientOptions::new()
///     .tls_ca_file("/etc/strata/ca.pem")?
///     .credentials(Credentials::basic("alice", "correct horse battery staple"))
///     .connect("https://strata.internal:2113")
///     .await?;
/// # Ok(()) }
/// ```
///
/// Its `Debug` output shows no password, key or private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) keep_alive_interval: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) resume_backoff_initial: Duration,
    pub(crate) resume_backoff_max: Duration,
    pub(crate) max_resume_attempts: Option<u32>,
    pub(crate) tls: TlsOptions,
    pub(crate) credentials: Option<Credentials>,
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
            tls: TlsOptions::default(),
            credentials: None,
        }
    }
}

impl ClientOptions {
    /// The defaults: 5 s to connect, a 30 s deadline per call, HTTP/2
    /// keep-alive pings every 10 s, 64 MiB messages, subscriptions that
    /// resume forever with a backoff from 50 ms doubling up to 2 s, no TLS
    /// settings and no credentials.
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

    /// Trusts the certificate authorities in `pem` (one or more PEM
    /// certificates) to sign the server's certificate; needed for an
    /// `https://` URL, since the client has no built-in root store. With an
    /// `http://` URL, connecting fails with [`Error::InvalidOptions`]
    /// rather than ignore it.
    ///
    /// ```
    /// # let pem = b"-----BEGIN CERTIFICATE-----\n...".to_vec();
    /// let options = strata_client::ClientOptions::new().tls_ca_pem(pem);
    /// ```
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.ca_pem = Some(pem.into());
        self
    }

    /// [`tls_ca_pem`](ClientOptions::tls_ca_pem) with the contents of the
    /// file at `path`, read now: [`Error::ReadFile`] if it cannot be.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), strata_client::Error> {
    /// let options = strata_client::ClientOptions::new().tls_ca_file("/etc/strata/ca.pem")?;
    /// # Ok(()) }
    /// ```
    pub fn tls_ca_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let pem = read(path.as_ref())?;
        Ok(self.tls_ca_pem(pem))
    }

    /// The name the server's certificate must be valid for, when it is not
    /// the URL's host (e.g. connecting by IP address to a certificate
    /// issued for a DNS name).
    ///
    /// ```
    /// let options = strata_client::ClientOptions::new().tls_domain("strata.internal");
    /// ```
    pub fn tls_domain(mut self, name: impl Into<String>) -> Self {
        self.tls.domain = Some(name.into());
        self
    }

    /// The client's own certificate chain and private key (PEM), presented
    /// to a server that requires client certificates (mTLS; the server
    /// takes the certificate's common name as the user).
    ///
    /// ```
    /// # let (cert, key) = (Vec::<u8>::new(), Vec::<u8>::new());
    /// let options = strata_client::ClientOptions::new().tls_client_identity(cert, key);
    /// ```
    pub fn tls_client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// [`tls_client_identity`](ClientOptions::tls_client_identity) with the
    /// contents of two files, read now: [`Error::ReadFile`] if one cannot
    /// be.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), strata_client::Error> {
    /// let options = strata_client::ClientOptions::new()
    ///     .tls_client_identity_files("/etc/strata/billing.pem", "/etc/strata/billing.key")?;
    /// # Ok(()) }
    /// ```
    pub fn tls_client_identity_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let cert = read(cert.as_ref())?;
        let key = read(key.as_ref())?;
        Ok(self.tls_client_identity(cert, key))
    }

    /// The credentials sent with every call (see [`Credentials`]). Without
    /// them, a server with authentication on answers every call with
    /// [`Error::Unauthenticated`]. Send them over `https://` only, unless
    /// the network is trusted: over `http://` they travel in clear text.
    ///
    /// ```
    /// use strata_client::{ClientOptions, Credentials};
    /// let options = ClientOptions::new().credentials(Credentials::api_key("sk_0123456789abcdef"));
    /// ```
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
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

/// The whole file at `path`.
fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credentials;

    /// A CA certificate (PEM) and a client certificate and key it signed.
    fn pems() -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).expect("CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["alice".to_owned()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("client certificate");
        (ca.pem(), cert.pem(), key.serialize_pem())
    }

    /// Connecting with `options` to a port nobody listens on: the options
    /// are checked before any connection attempt.
    async fn refused(options: ClientOptions, url: &str) -> Error {
        options
            .connect_timeout(Duration::from_millis(200))
            .connect(url)
            .await
            .expect_err("connecting fails")
    }

    fn invalid_options(e: &Error) -> &str {
        match e {
            Error::InvalidOptions { message } => message,
            other => panic!("expected InvalidOptions, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn https_needs_a_ca() {
        let e = refused(ClientOptions::new(), "https://127.0.0.1:1").await;
        assert!(invalid_options(&e).contains("no CA is set"), "{e}");
        let (_, cert, key) = pems();
        let e = refused(
            ClientOptions::new().tls_client_identity(cert, key),
            "https://127.0.0.1:1",
        )
        .await;
        assert!(invalid_options(&e).contains("no CA is set"), "{e}");
    }

    #[tokio::test]
    async fn tls_options_with_http_are_refused() {
        let (ca, cert, key) = pems();
        for options in [
            ClientOptions::new().tls_ca_pem(ca.clone()),
            ClientOptions::new().tls_domain("localhost"),
            ClientOptions::new().tls_client_identity(cert, key),
        ] {
            let e = refused(options, "http://127.0.0.1:1").await;
            assert!(invalid_options(&e).contains("plain text"), "{e}");
        }
    }

    #[tokio::test]
    async fn other_schemes_are_refused() {
        for url in ["ftp://127.0.0.1:1", "127.0.0.1:1"] {
            let e = refused(ClientOptions::new(), url).await;
            assert!(invalid_options(&e).contains("http:// or https://"), "{e}");
        }
        // Schemes are case-insensitive: this one is TLS, as for tonic.
        let e = refused(ClientOptions::new(), "HTTPS://127.0.0.1:1").await;
        assert!(invalid_options(&e).contains("no CA is set"), "{e}");
    }

    #[tokio::test]
    async fn pem_that_is_no_certificate_is_refused() {
        let e = refused(
            ClientOptions::new().tls_ca_pem("not a pem"),
            "https://127.0.0.1:1",
        )
        .await;
        assert!(
            invalid_options(&e).contains("CA is not a PEM certificate"),
            "{e}"
        );

        let (ca, cert, key) = pems();
        let e = refused(
            ClientOptions::new()
                .tls_ca_pem(ca.clone())
                .tls_client_identity(key.clone(), key.clone()),
            "https://127.0.0.1:1",
        )
        .await;
        assert!(invalid_options(&e).contains("client certificate"), "{e}");

        let e = refused(
            ClientOptions::new().tls_ca_pem(ca).tls_client_identity(
                cert,
                "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
            ),
            "https://127.0.0.1:1",
        )
        .await;
        assert!(invalid_options(&e).contains("TLS settings"), "{e}");
    }

    #[tokio::test]
    async fn usable_tls_options_get_as_far_as_connecting() {
        let (ca, cert, key) = pems();
        for options in [
            ClientOptions::new().tls_ca_pem(ca.clone()),
            ClientOptions::new()
                .tls_ca_pem(ca.clone())
                .tls_domain("strata.internal")
                .tls_client_identity(cert, key)
                .credentials(Credentials::basic("alice", "a long password")),
        ] {
            let e = refused(options, "https://127.0.0.1:1").await;
            assert!(matches!(e, Error::Connect { .. }), "{e:?}");
        }
    }

    #[tokio::test]
    async fn unusable_credentials_are_refused_before_connecting() {
        let e = refused(
            ClientOptions::new().credentials(Credentials::basic("a:b", "pw")),
            "http://127.0.0.1:1",
        )
        .await;
        assert!(invalid_options(&e).contains("':'"), "{e}");
        let e = refused(
            ClientOptions::new().credentials(Credentials::api_key("two words")),
            "http://127.0.0.1:1",
        )
        .await;
        assert!(invalid_options(&e).contains("API key"), "{e}");
    }

    #[test]
    fn files_are_read_when_given() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        match ClientOptions::new().tls_ca_file(&missing) {
            Err(Error::ReadFile { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected ReadFile, got {other:?}"),
        }
        let (ca, cert, key) = pems();
        let (ca_file, cert_file, key_file) = (
            dir.path().join("ca.pem"),
            dir.path().join("c.pem"),
            dir.path().join("c.key"),
        );
        std::fs::write(&ca_file, &ca).expect("write");
        std::fs::write(&cert_file, &cert).expect("write");
        std::fs::write(&key_file, &key).expect("write");
        let from_files = ClientOptions::new()
            .tls_ca_file(&ca_file)
            .expect("CA file")
            .tls_client_identity_files(&cert_file, &key_file)
            .expect("identity files");
        let from_pems = ClientOptions::new()
            .tls_ca_pem(ca)
            .tls_client_identity(cert, key);
        assert_eq!(from_files, from_pems);
        assert!(matches!(
            ClientOptions::new().tls_client_identity_files(&cert_file, &missing),
            Err(Error::ReadFile { path, .. }) if path == missing
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let (ca, cert, key) = pems();
        let options = ClientOptions::new()
            .tls_ca_pem(ca.clone())
            .tls_client_identity(cert, key.clone())
            .credentials(Credentials::basic("alice", "hunter2-hunter2"));
        let shown = format!("{options:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(
            shown.contains(&format!("<{} bytes of PEM>", ca.len())),
            "{shown}"
        );
        // No byte of the key either (a derived Debug of Vec<u8> would list them).
        assert!(shown.len() < 1000, "{shown}");
        let options = ClientOptions::new().credentials(Credentials::api_key("sk_do_not_print"));
        assert!(!format!("{options:#?}").contains("sk_do_not_print"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = ClientOptions::new()
            .resume_backoff(Duration::from_millis(10), Duration::from_millis(65));
        let delays: Vec<u128> = (1..=6).map(|a| o.backoff(a).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 65, 65, 65]);
        assert_eq!(o.backoff(u32::MAX), Duration::from_millis(65));
    }
}
