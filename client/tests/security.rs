//! The client against a server with TLS and authentication on: a CA, a
//! server certificate (SAN 127.0.0.1 and localhost) and client
//! certificates generated with rcgen; Basic and Bearer credentials on every
//! kind of call (unary, read, subscription, consumer group, pipeline,
//! users), certificate verification, and mTLS.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::TestServer;
use strata_client::{
    Client, ClientOptions, Credentials, Error, EventData, ExpectedVersion, GroupSettings,
    GroupTarget, ReadOptions, SubscribeFrom, SubscriptionMessage, TryStreamExt,
};

const ADMIN_PASSWORD: &str = "correct horse battery";

/// A CA and what it signed, as PEM, and the files the server reads.
struct Pki {
    ca: String,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    server_cert: PathBuf,
    server_key: PathBuf,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Strata test CA");
    (params.self_signed(&key).expect("CA"), key)
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_cert, ca_key) = ca();
        let key = rcgen::KeyPair::generate().expect("key");
        let cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("params")
                .signed_by(&key, &ca_cert, &ca_key)
                .expect("server certificate");
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write");
            path
        };
        Pki {
            ca: ca_cert.pem(),
            server_cert: write("server.pem", &cert.pem()),
            server_key: write("server.key", &key.serialize_pem()),
            ca_file: write("ca.pem", &ca_cert.pem()),
            ca_cert,
            ca_key,
            _dir: dir,
        }
    }

    /// A client certificate with common name `user`, and its key.
    fn client_identity(&self, user: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, user);
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("client certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A server with TLS (and so authentication) on; `mtls` also requires
    /// client certificates of this CA.
    async fn server(&self, mtls: bool) -> TestServer {
        let (cert, key, ca) = (
            self.server_cert.clone(),
            self.server_key.clone(),
            self.ca_file.clone(),
        );
        TestServer::start_with(move |a| {
            a.tls_cert = Some(cert.clone());
            a.tls_key = Some(key.clone());
            a.tls_client_ca = mtls.then(|| ca.clone());
            a.admin_password = Some(ADMIN_PASSWORD.into());
        })
        .await
    }

    fn options(&self) -> ClientOptions {
        ClientOptions::new()
            .connect_timeout(Duration::from_secs(5))
            .tls_ca_pem(self.ca.clone())
    }

    async fn client(&self, server: &TestServer, credentials: Option<Credentials>) -> Client {
        let options = match credentials {
            Some(c) => self.options().credentials(c),
            None => self.options(),
        };
        options
            .connect(format!("https://127.0.0.1:{}", server.port()))
            .await
            .expect("connect over TLS")
    }
}

fn admin() -> Credentials {
    Credentials::basic("admin", ADMIN_PASSWORD)
}

fn event(n: u8) -> EventData {
    EventData::binary("Tick", vec![n])
}

#[tokio::test]
async fn tls_with_basic_and_api_key_credentials() {
    let pki = Pki::new();
    let server = pki.server(false).await;

    // TLS alone is not enough: every call needs credentials.
    let nobody = pki.client(&server, None).await;
    let refused = nobody
        .append("orders", ExpectedVersion::Any, [event(0)])
        .await;
    assert!(
        matches!(&refused, Err(Error::Unauthenticated { .. })),
        "{refused:?}"
    );
    let wrong = pki
        .client(
            &server,
            Some(Credentials::basic("admin", "not the password")),
        )
        .await;
    assert!(matches!(
        wrong.stats().await,
        Err(Error::Unauthenticated { .. })
    ));

    // The admin, by password: unary calls, reads, subscriptions, groups and
    // pipelines all carry the header.
    let root = pki.client(&server, Some(admin())).await;
    // Neither the password nor the header ("YWRtaW46" is base64 of "admin:").
    let shown = format!("{root:?} {:?}", root.users());
    assert!(
        !shown.contains(ADMIN_PASSWORD) && !shown.contains("YWRtaW46"),
        "{shown}"
    );
    root.append("orders", ExpectedVersion::NoStream, [event(1), event(2)])
        .await
        .expect("admin appends");
    let read: Vec<_> = root
        .read_stream("orders", ReadOptions::forwards())
        .await
        .expect("admin reads")
        .try_collect()
        .await
        .expect("events");
    assert_eq!(read.len(), 2);
    let mut sub = root.subscribe_to_stream("orders", SubscribeFrom::Start);
    let mut seen = 0;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), sub.try_next())
        .await
        .expect("subscription answers")
        .expect("subscription")
    {
        match m {
            SubscriptionMessage::Event(_) => seen += 1,
            SubscriptionMessage::CaughtUp { .. } => break,
            _ => {}
        }
    }
    assert_eq!(seen, 2);
    root.create_group(
        GroupTarget::stream("orders"),
        "billing",
        GroupSettings::default(),
    )
    .await
    .expect("admin creates a group");
    assert_eq!(
        root.list_groups(None).await.expect("groups").len(),
        1,
        "the consumer-group client carries the header"
    );
    let pipeline = root.pipeline().await.expect("pipeline");
    pipeline
        .append("orders", ExpectedVersion::Exact(1), [event(3)])
        .await
        .expect("pipelined append");

    // Users: a writer, then a key for it.
    let users = root.users();
    users
        .create("will", "will-password", ["writer"])
        .await
        .expect("create will");
    assert!(matches!(
        users.create("will", "will-password", ["writer"]).await,
        Err(Error::AlreadyExists { .. })
    ));
    let key = users.create_api_key("will", "ci").await.expect("key");
    assert!(!key.is_empty());
    let listed = users.list().await.expect("list");
    let names: Vec<_> = listed.iter().map(|u| u.user.as_str()).collect();
    assert_eq!(names, ["admin", "will"]);
    assert_eq!(listed[1].roles, ["writer"]);
    assert_eq!(listed[1].api_keys, ["ci"]);

    // By key, over the host name rather than the address.
    let will = pki
        .options()
        .credentials(Credentials::api_key(key.clone()))
        .connect(format!("https://localhost:{}", server.port()))
        .await
        .expect("connect by name");
    will.append("orders", ExpectedVersion::Any, [event(4)])
        .await
        .expect("a writer appends");
    let denied = will.stats().await;
    assert!(
        matches!(&denied, Err(Error::PermissionDenied { .. })),
        "{denied:?}"
    );
    assert!(matches!(
        will.users().list().await,
        Err(Error::PermissionDenied { .. })
    ));

    // Revoked: the same connection is refused at once.
    users.revoke_api_key("will", "ci").await.expect("revoke");
    assert!(matches!(
        will.append("orders", ExpectedVersion::Any, [event(5)])
            .await,
        Err(Error::Unauthenticated { .. })
    ));

    // Roles and passwords.
    users.set_roles("will", ["ops"]).await.expect("roles");
    let will = pki
        .client(&server, Some(Credentials::basic("will", "will-password")))
        .await;
    will.stats().await.expect("ops may ask for stats");
    will.users()
        .set_password("will", "will-new-password")
        .await
        .expect("a user changes their own password");
    assert!(matches!(
        will.stats().await,
        Err(Error::Unauthenticated { .. })
    ));
    let will = pki
        .client(
            &server,
            Some(Credentials::basic("will", "will-new-password")),
        )
        .await;
    will.stats().await.expect("the new password");
    // The last admin keeps its role: FAILED_PRECONDITION, no tombstone.
    assert!(matches!(
        users.set_roles("admin", ["reader"]).await,
        Err(Error::Server {
            code: tonic::Code::FailedPrecondition,
            ..
        })
    ));
    users.delete("will").await.expect("delete");
    assert!(matches!(
        users.delete("will").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_server_certificate_is_verified() {
    let pki = Pki::new();
    let server = pki.server(false).await;
    let url = format!("https://127.0.0.1:{}", server.port());

    // Another CA did not sign it.
    let (other, _) = ca();
    let e = ClientOptions::new()
        .tls_ca_pem(other.pem())
        .credentials(admin())
        .connect(url.as_str())
        .await
        .expect_err("untrusted certificate");
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");

    // Not issued for that name.
    let e = pki
        .options()
        .tls_domain("strata.example")
        .connect(url.as_str())
        .await
        .expect_err("wrong name");
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");

    // The name given instead of the address.
    let client = pki
        .options()
        .tls_domain("localhost")
        .credentials(admin())
        .connect(url.as_str())
        .await
        .expect("verified as localhost");
    client.stats().await.expect("stats");

    // Plain HTTP/2 to a TLS port does not work.
    let plain = ClientOptions::new()
        .connect_timeout(Duration::from_secs(2))
        .deadline(Some(Duration::from_secs(5)))
        .credentials(admin())
        .connect(format!("http://127.0.0.1:{}", server.port()))
        .await;
    if let Ok(plain) = plain {
        assert!(plain.stats().await.is_err());
    }
}

#[tokio::test]
async fn mtls_authenticates_by_certificate() {
    let pki = Pki::new();
    let server = pki.server(true).await;
    let url = format!("https://127.0.0.1:{}", server.port());

    // The certificate's common name is the user: the admin, no password.
    let (cert, key) = pki.client_identity("admin");
    let root = pki
        .options()
        .tls_client_identity(cert, key)
        .connect(url.as_str())
        .await
        .expect("connect with a client certificate");
    root.users()
        .create("rita", "rita-password", ["reader"])
        .await
        .expect("admin by certificate");

    // Credentials on top of a certificate decide who the caller is.
    let (cert, key) = pki.client_identity("admin");
    let rita = pki
        .options()
        .tls_client_identity(cert, key)
        .credentials(Credentials::basic("rita", "rita-password"))
        .connect(url.as_str())
        .await
        .expect("connect");
    assert!(matches!(
        rita.append("s", ExpectedVersion::Any, [event(0)]).await,
        Err(Error::PermissionDenied { .. })
    ));

    // Without a certificate the server refuses the connection (at the
    // handshake, or at the first call under TLS 1.3).
    let bare = pki
        .options()
        .deadline(Some(Duration::from_secs(5)))
        .credentials(admin())
        .connect(url.as_str())
        .await;
    if let Ok(bare) = bare {
        let e = bare.stats().await.expect_err("no client certificate");
        assert!(
            !matches!(e, Error::Unauthenticated { .. }),
            "refused by TLS, before authentication: {e:?}"
        );
    }
}
