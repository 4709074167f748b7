//! The TLS part of [`ClientOptions`](crate::ClientOptions): the CA that
//! signs the server's certificate, the name to verify, the client's own
//! certificate for mTLS, and the one check of them against the URL's
//! scheme. There is no built-in root store: an `https://` URL needs a CA.

use std::fmt;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::auth::Redacted;
use crate::error::{chain, Error};

/// What TLS a client uses; empty for plain HTTP/2.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// PEM of the certificate authorities to trust.
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// The name the server's certificate must carry; the URL's host if `None`.
    pub(crate) domain: Option<String>,
    /// The client's certificate chain and private key (PEM), for mTLS.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

const PEM_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";

impl TlsOptions {
    fn is_empty(&self) -> bool {
        *self == TlsOptions::default()
    }

    /// `endpoint` with TLS when `url` is `https://`. Refuses an `https://`
    /// URL without a CA, TLS options with an `http://` URL (they would be
    /// ignored and the connection left in plain text), any other scheme,
    /// and PEM that holds no certificate.
    pub(crate) fn apply(&self, url: &str, endpoint: Endpoint) -> Result<Endpoint, Error> {
        let invalid = |message: String| Error::InvalidOptions { message };
        match endpoint.uri().scheme_str() {
            Some("http") if self.is_empty() => return Ok(endpoint),
            Some("http") => {
                return Err(invalid(format!(
                    "TLS options are set but {url} is http://, which would connect in plain text; \
                     use an https:// URL for TLS"
                )))
            }
            Some("https") => {}
            _ => {
                return Err(invalid(format!(
                    "{url}: the URL must start with http:// or https://"
                )))
            }
        }
        let Some(ca) = &self.ca_pem else {
            return Err(invalid(format!(
                "{url} is https:// but no CA is set: give the certificate authority that signs \
                 the server's certificate (this client trusts none by default)"
            )));
        };
        if !contains(ca, PEM_CERTIFICATE) {
            return Err(invalid(
                "the TLS CA is not a PEM certificate (no '-----BEGIN CERTIFICATE-----')".into(),
            ));
        }
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain);
        }
        if let Some((cert, key)) = &self.identity {
            if !contains(cert, PEM_CERTIFICATE) {
                return Err(invalid(
                    "the TLS client certificate is not a PEM certificate (no '-----BEGIN CERTIFICATE-----')"
                        .into(),
                ));
            }
            config = config.identity(Identity::from_pem(cert, key));
        }
        endpoint
            .tls_config(config)
            .map_err(|e| invalid(format!("TLS settings: {}", chain(&e))))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// A PEM's size, not its bytes.
        struct Pem(usize);
        impl fmt::Debug for Pem {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "<{} bytes of PEM>", self.0)
            }
        }
        f.debug_struct("TlsOptions")
            .field("ca", &self.ca_pem.as_ref().map(|p| Pem(p.len())))
            .field("domain", &self.domain)
            .field(
                "client_identity",
                &self
                    .identity
                    .as_ref()
                    .map(|(cert, _)| (Pem(cert.len()), Redacted)),
            )
            .finish()
    }
}
