//! TLS for the gRPC listener: the server's certificate and key, and for
//! mTLS the CA whose client certificates are accepted (a certificate's
//! common name is the user it authenticates as).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The files of `--tls-cert`, `--tls-key` and `--tls-client-ca`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA of client certificates (PEM); requires them when given.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the files into tonic's server configuration. The messages
    /// name the flag and the file.
    pub fn server_config(&self) -> Result<ServerTlsConfig, String> {
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
        };
        let cert = read("--tls-cert", &self.cert)?;
        let key = read("--tls-key", &self.key)?;
        if !String::from_utf8_lossy(&cert).contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "--tls-cert {}: no PEM certificate in the file",
                self.cert.display()
            ));
        }
        if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
            return Err(format!(
                "--tls-key {}: no PEM private key in the file",
                self.key.display()
            ));
        }
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            let pem = read("--tls-client-ca", ca)?;
            config = config
                .client_ca_root(Certificate::from_pem(pem))
                .client_auth_optional(false);
        }
        Ok(config)
    }
}

impl TlsFiles {
    /// A TLS acceptor with the server's certificate, for the metrics
    /// endpoint (no client certificates there).
    pub fn metrics_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--tls-cert {}: {e}", self.cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("--tls-key {}: {e}", self.key.display()))?;
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert and --tls-key: {e}"))?;
        Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
    }
}

/// One DER element: (tag, contents, what follows).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// 2.5.4.3, commonName.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The subject's common name of a DER certificate (the last, if several).
pub fn common_name(der: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version is optional.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, mut names, _) = element(rest)? else {
        return None;
    };
    let mut found = None;
    while !names.is_empty() {
        let (tag, rdn, next) = element(names)?;
        names = next;
        if tag != SET {
            return None;
        }
        let mut attributes = rdn;
        while !attributes.is_empty() {
            let (SEQUENCE, attribute, next) = element(attributes)? else {
                return None;
            };
            attributes = next;
            let (OID, oid, value) = element(attribute)? else {
                return None;
            };
            if oid == COMMON_NAME {
                let (tag, text, _) = element(value)?;
                // UTF8String, PrintableString, IA5String.
                if matches!(tag, 0x0c | 0x13 | 0x16) {
                    found = Some(String::from_utf8(text.to_vec()).ok()?);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example Org");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn the_common_name_is_read_from_the_subject() {
        assert_eq!(common_name(&certificate("alice")).as_deref(), Some("alice"));
        assert_eq!(
            common_name(&certificate("svc.billing@example")).as_deref(),
            Some("svc.billing@example")
        );
    }

    #[test]
    fn malformed_certificates_have_no_name() {
        let good = certificate("alice");
        for cut in [0, 1, 2, 10, good.len() / 2, good.len() - 1] {
            // A cut certificate either still parses its subject (the cut is
            // after it) or has no name; it never panics.
            let _ = common_name(&good[..cut]);
        }
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(common_name(b"not der at all"), None);
    }
}
