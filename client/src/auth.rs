//! [`Credentials`] and the `authorization` header that carries them
//! ([`AuthHeader`]) on every call of every service, through one
//! [`AuthChannel`] built when the client connects.
//!
//! Secrets never reach a `Debug` or `Display` output, and the header is
//! marked sensitive so HTTP/2 never puts it in its compression table.

use std::fmt;

use base64::Engine as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::error::Error;

/// The connection every service client of this crate calls through: the
/// (TLS) HTTP/2 channel, with the [`AuthHeader`] added to each request.
/// From [`Client::channel`](crate::Client::channel), for calling services
/// this crate does not wrap with the same connection and credentials.
pub type AuthChannel = InterceptedService<Channel, AuthHeader>;

/// Who the client is: a user name and password (`Basic`) or an API key
/// (`Bearer`), sent in the `authorization` header of every call. Set them
/// with [`ClientOptions::credentials`](crate::ClientOptions::credentials).
/// Its `Debug` output shows the user name, never a password or key.
///
/// ```
/// use strata_client::Credentials;
///
/// let alice = Credentials::basic("alice", "correct horse battery staple");
/// assert_eq!(alice.user(), Some("alice"));
/// assert!(!format!("{alice:?}").contains("horse"));
///
/// let service = Credentials::api_key(std::env::var("STRATA_API_KEY").unwrap_or_default());
/// assert_eq!(service.user(), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(Kind);

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Basic { user: String, password: String },
    ApiKey(String),
}

impl Credentials {
    /// A user name and its password, sent as `Basic base64(user:password)`.
    /// The name must not contain `:` (connecting fails with
    /// [`Error::InvalidOptions`] otherwise).
    ///
    /// ```
    /// let admin = strata_client::Credentials::basic("admin", "s3cret-passw0rd");
    /// ```
    pub fn basic(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials(Kind::Basic {
            user: user.into(),
            password: password.into(),
        })
    }

    /// An API key (from [`Users::create_api_key`](crate::Users::create_api_key)),
    /// sent as `Bearer <key>`. It must be printable ASCII without spaces
    /// (connecting fails with [`Error::InvalidOptions`] otherwise).
    ///
    /// ```
    /// let key = strata_client::Credentials::api_key("sk_0123456789abcdef");
    /// ```
    pub fn api_key(key: impl Into<String>) -> Self {
        Credentials(Kind::ApiKey(key.into()))
    }

    /// The user name of `Basic` credentials; `None` for an API key, whose
    /// user only the server knows.
    ///
    /// ```
    /// assert_eq!(strata_client::Credentials::basic("bob", "pw").user(), Some("bob"));
    /// ```
    pub fn user(&self) -> Option<&str> {
        match &self.0 {
            Kind::Basic { user, .. } => Some(user),
            Kind::ApiKey(_) => None,
        }
    }

    /// The value of the `authorization` header, marked sensitive.
    pub(crate) fn header_value(&self) -> Result<MetadataValue<Ascii>, Error> {
        let text = match &self.0 {
            Kind::Basic { user, password } => {
                if user.contains(':') {
                    return Err(Error::InvalidOptions {
                        message: format!(
                            "the user name {user:?} contains ':', which Basic credentials cannot carry"
                        ),
                    });
                }
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                format!("Basic {pair}")
            }
            Kind::ApiKey(key) => {
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                    // Never the key itself in the message.
                    return Err(Error::InvalidOptions {
                        message:
                            "the API key is empty or holds characters other than printable ASCII"
                                .into(),
                    });
                }
                format!("Bearer {key}")
            }
        };
        let mut value = MetadataValue::try_from(text).map_err(|_| Error::InvalidOptions {
            message: "the credentials cannot be sent in a header".into(),
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Basic { user, .. } => f
                .debug_struct("Credentials::Basic")
                .field("user", user)
                .field("password", &Redacted)
                .finish(),
            Kind::ApiKey(_) => f
                .debug_tuple("Credentials::ApiKey")
                .field(&Redacted)
                .finish(),
        }
    }
}

/// Stands in for a secret in `Debug` output.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Adds the `authorization` header of the client's [`Credentials`] (if
/// any) to each request: the interceptor of an [`AuthChannel`].
#[derive(Clone, Default)]
pub struct AuthHeader {
    value: Option<MetadataValue<Ascii>>,
}

impl AuthHeader {
    /// The header of `credentials`; none without credentials. For calling
    /// a service this crate has no client for over a channel of one's own.
    ///
    /// ```
    /// use strata_client::{AuthHeader, Credentials};
    /// let header = AuthHeader::new(Some(&Credentials::api_key("strata_0123_abc")))?;
    /// # Ok::<(), strata_client::Error>(())
    /// ```
    pub fn new(credentials: Option<&Credentials>) -> Result<Self, Error> {
        Ok(AuthHeader {
            value: credentials.map(Credentials::header_value).transpose()?,
        })
    }
}

impl Interceptor for AuthHeader {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("AuthHeader");
        match self.value {
            Some(_) => s.field("authorization", &Redacted),
            None => s.field("authorization", &None::<()>),
        }
        .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(credentials: &Credentials) -> String {
        let mut interceptor = AuthHeader::new(Some(credentials)).expect("valid credentials");
        let request = interceptor.call(Request::new(())).expect("intercepted");
        let value = request
            .metadata()
            .get("authorization")
            .expect("an authorization header");
        assert!(value.is_sensitive(), "the header is marked sensitive");
        value.to_str().expect("ascii").to_owned()
    }

    #[test]
    fn basic_is_standard_base64_of_user_colon_password() {
        // RFC 7617's example.
        assert_eq!(
            header(&Credentials::basic("Aladdin", "open sesame")),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        // Padding kept, '+' and '/' of the standard alphabet, UTF-8 bytes.
        assert_eq!(header(&Credentials::basic("a", "b")), "Basic YTpi");
        assert_eq!(header(&Credentials::basic("ab", "c")), "Basic YWI6Yw==");
        assert_eq!(
            header(&Credentials::basic("u", "\u{fb}\u{ff}")),
            "Basic dTrDu8O/"
        );
        assert_eq!(header(&Credentials::basic("u", ">>>")), "Basic dTo+Pj4=");
    }

    #[test]
    fn api_key_is_a_bearer_token() {
        assert_eq!(
            header(&Credentials::api_key("k_123.abc-XYZ")),
            "Bearer k_123.abc-XYZ"
        );
    }

    #[test]
    fn unusable_credentials_are_refused_without_the_secret() {
        let e =
            AuthHeader::new(Some(&Credentials::basic("a:b", "pw-secret"))).expect_err("refused");
        assert!(matches!(&e, Error::InvalidOptions { message } if message.contains("':'")));
        assert!(!e.to_string().contains("pw-secret"));
        for key in ["", "has space", "tab\tkey", "line\nbreak", "caf\u{e9}"] {
            let e = AuthHeader::new(Some(&Credentials::api_key(key))).expect_err("refused");
            assert!(matches!(e, Error::InvalidOptions { .. }), "{key:?}");
            if !key.is_empty() {
                assert!(!e.to_string().contains(key), "{e}");
            }
        }
    }

    #[test]
    fn no_credentials_no_header() {
        let mut interceptor = AuthHeader::new(None).expect("no credentials");
        let request = interceptor.call(Request::new(())).expect("intercepted");
        assert!(request.metadata().get("authorization").is_none());
        assert_eq!(
            format!("{interceptor:?}"),
            "AuthHeader { authorization: None }"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let basic = Credentials::basic("alice", "hunter2-hunter2");
        assert_eq!(
            format!("{basic:?}"),
            r#"Credentials::Basic { user: "alice", password: <redacted> }"#
        );
        let key = Credentials::api_key("sk_live_do_not_print");
        assert_eq!(format!("{key:?}"), "Credentials::ApiKey(<redacted>)");
        let interceptor = AuthHeader::new(Some(&basic)).expect("valid");
        let shown = format!("{interceptor:?}");
        assert_eq!(shown, "AuthHeader { authorization: <redacted> }");
        assert!(!format!("{:#?}", AuthHeader::new(Some(&key)).expect("valid")).contains("sk_live"));
    }
}
