//! Transport security (docs/API.md section 5): TLS with certificates made
//! here (rcgen), mTLS where a client certificate's common name is the user,
//! and the safe default of a non-loopback listen address.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{append_req, event, AuthHeader};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use strata_proto::v1;
use strata_proto::v1::streams_client::StreamsClient;
use strata_proto::v1::users_client::UsersClient;
use strata_server::config::{Durability, ServeArgs};
use strata_server::RunError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const ADMIN_PASSWORD: &str = "correct horse battery";
/// Longer than anything here should take; a call that takes it hangs.
const WAIT: Duration = Duration::from_secs(10);

fn provider() {
    // The server installs ring's provider at its start; a client built
    // before that needs one too.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---- certificates ----------------------------------------------------------

struct Issuer {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Issuer {
    fn new(name: &str) -> Issuer {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = p.self_signed(&key).expect("CA certificate");
        Issuer { cert, key }
    }

    /// A certificate and its key (PEM) for `cn`, with `sans`.
    fn issue(&self, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).expect("params");
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn client(&self, cn: &str) -> Identity {
        let (cert, key) = self.issue(cn, &[], ExtendedKeyUsagePurpose::ClientAuth);
        Identity::from_pem(cert, key)
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// The files of a server: its certificate and key, and the CA's certificate.
struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer,
    other_ca: Issuer,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Issuer::new("Strata test CA");
        let other_ca = Issuer::new("Some other CA");
        // SANs: one name, one IP address (rcgen parses it as an IP SAN).
        let (cert, key) = ca.issue(
            "strata test server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(dir.path().join("server.pem"), cert).expect("write");
        std::fs::write(dir.path().join("server.key"), key).expect("write");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
        Pki { dir, ca, other_ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Settings with TLS on (and mTLS with `mtls`).
    fn args(&self, data: &std::path::Path, mtls: bool) -> ServeArgs {
        let mut a = ServeArgs::for_tests(data);
        a.log_filter = "warn".into();
        a.durability = Durability::UnsafeNoSync;
        a.segment_size = 1 << 20;
        a.tls_cert = Some(self.path("server.pem"));
        a.tls_key = Some(self.path("server.key"));
        if mtls {
            a.tls_client_ca = Some(self.path("ca.pem"));
        }
        a.admin_password = Some(ADMIN_PASSWORD.into());
        a
    }

    /// Trusts the test CA; names the server `localhost`.
    fn trusting(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.pem()))
            .domain_name("localhost")
    }
}

// ---- a server of our own (TestServer speaks plain text) -------------------

struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), RunError>>,
    _data: Option<tempfile::TempDir>,
}

/// Runs `strata_server::run` with `args` on `grpc`.
fn spawn(args: ServeArgs, grpc: TcpListener, metrics: TcpListener) -> Server {
    let addr = grpc.local_addr().expect("address");
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(strata_server::run(args, grpc, metrics, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        shutdown: Some(tx),
        handle,
        _data: None,
    }
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

impl Server {
    /// Starts with `args`; ready once health answers over `tls`.
    async fn start(args: ServeArgs, data: tempfile::TempDir, tls: ClientTlsConfig) -> Server {
        let mut server = spawn(args, loopback().await, loopback().await);
        server._data = Some(data);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match health(server.endpoint(tls.clone()), "").await {
                Ok(ServingStatus::Serving) => return server,
                other => {
                    assert!(
                        !server.handle.is_finished(),
                        "the server exited: {:?}",
                        (&mut server.handle).await
                    );
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "not serving after {WAIT:?}: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn endpoint(&self, tls: ClientTlsConfig) -> Endpoint {
        Endpoint::from_shared(format!("https://{}", self.addr))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(3))
            .tls_config(tls)
            .expect("TLS settings")
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(WAIT, &mut self.handle)
            .await
            .expect("the server stops in time")
            .expect("the server task")
            .expect("a clean stop");
    }
}

/// The health status of `service`, or what went wrong (a connect error or a
/// status), never a hang.
async fn health(endpoint: Endpoint, service: &str) -> Result<ServingStatus, String> {
    let call = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        ServingStatus::try_from(answer.into_inner().status).map_err(|e| e.to_string())
    };
    tokio::time::timeout(WAIT, call)
        .await
        .unwrap_or_else(|_| panic!("health hangs"))
}

/// How a call went: the server answered (`Ok` with the status code), or
/// the connection failed or broke (a connect error, or the UNKNOWN /
/// UNAVAILABLE status tonic gives a broken connection).
type Outcome = Result<Code, String>;

fn short(o: &Outcome) -> String {
    match o {
        Ok(c) => format!("{c:?}"),
        Err(e) => format!("connection failed: {e}"),
    }
}

/// Connects with `endpoint`, makes `call` with `header`; never hangs.
async fn outcome<F, Fut>(endpoint: Endpoint, header: AuthHeader, call: F) -> Outcome
where
    F: FnOnce(InterceptedService<Channel, AuthHeader>) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let run = async {
        let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
        match call(InterceptedService::new(channel, header)).await {
            Ok(()) => Ok(Code::Ok),
            // What the transport reports when the connection breaks.
            Err(s) if matches!(s.code(), Code::Unknown | Code::Unavailable) => {
                Err(format!("{:?}: {}", s.code(), s.message()))
            }
            Err(s) => Ok(s.code()),
        }
    };
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap_or_else(|_| panic!("the call hangs"))
}

async fn stats(ch: InterceptedService<Channel, AuthHeader>) -> Result<(), tonic::Status> {
    StreamsClient::new(ch)
        .stats(v1::StatsRequest {})
        .await
        .map(drop)
}

async fn append(ch: InterceptedService<Channel, AuthHeader>) -> Result<(), tonic::Status> {
    StreamsClient::new(ch)
        .append(append_req(
            "tls-stream",
            v1::ExpectedVersion::any(),
            vec![event("t", b"{}")],
        ))
        .await
        .map(drop)
}

async fn read_all(ch: InterceptedService<Channel, AuthHeader>) -> Result<(), tonic::Status> {
    let mut s = StreamsClient::new(ch)
        .read(common::all_read(v1::Direction::Forwards, None, 10, None))
        .await?
        .into_inner();
    while s.message().await?.is_some() {}
    Ok(())
}

/// Creates `user` with `roles` through `ch` (an admin's).
async fn create_user(ch: InterceptedService<Channel, AuthHeader>, user: &str, roles: &[&str]) {
    UsersClient::new(ch)
        .create(v1::CreateUserRequest {
            user: user.into(),
            password: format!("{user}-password"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        })
        .await
        .unwrap_or_else(|e| panic!("create {user}: {e}"));
}

fn admin() -> AuthHeader {
    AuthHeader::basic("admin", ADMIN_PASSWORD)
}

#[tokio::test]
async fn tls_carries_basic_credentials_and_refuses_plain_text_and_strange_cas() {
    provider();
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let args = pki.args(&data.path().join("data"), false);
    let server = Server::start(args, data, pki.trusting()).await;

    // Health answers without credentials, for both of its names.
    for service in ["", "strata.v1.Streams"] {
        assert_eq!(
            health(server.endpoint(pki.trusting()), service).await,
            Ok(ServingStatus::Serving),
            "health of {service:?} over TLS"
        );
    }
    // Authentication is on with TLS, without --auth.
    let anonymous = outcome(server.endpoint(pki.trusting()), AuthHeader::none(), stats).await;
    assert_eq!(
        anonymous,
        Ok(Code::Unauthenticated),
        "{}",
        short(&anonymous)
    );
    // Basic over TLS, by name and by IP address (SAN 127.0.0.1).
    assert_eq!(
        outcome(server.endpoint(pki.trusting()), admin(), stats).await,
        Ok(Code::Ok)
    );
    let by_ip = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.ca.pem()));
    let by_ip = outcome(server.endpoint(by_ip), admin(), stats).await;
    assert_eq!(by_ip, Ok(Code::Ok), "{}", short(&by_ip));
    let ch = server
        .endpoint(pki.trusting())
        .connect()
        .await
        .expect("connect");
    create_user(InterceptedService::new(ch, admin()), "rita", &["reader"]).await;
    let rita = AuthHeader::basic("rita", "rita-password");
    assert_eq!(
        outcome(server.endpoint(pki.trusting()), rita.clone(), read_all).await,
        Ok(Code::Ok)
    );
    assert_eq!(
        outcome(server.endpoint(pki.trusting()), rita, append).await,
        Ok(Code::PermissionDenied)
    );

    // Plain text to the TLS port: an error, not a hang.
    let plain = Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5));
    let plain = outcome(plain, admin(), stats).await;
    println!("plain text to the TLS port: {}", short(&plain));
    assert!(plain.is_err(), "plain text got an answer: {plain:?}");
    // A client that trusts another CA does not talk to this server.
    let stranger = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.other_ca.pem()))
        .domain_name("localhost");
    let stranger = outcome(server.endpoint(stranger), admin(), stats).await;
    println!("a client trusting another CA: {}", short(&stranger));
    assert!(stranger.is_err(), "the handshake succeeded: {stranger:?}");
    // A name the certificate does not carry.
    let wrong_name = pki.trusting().domain_name("not-the-server.example");
    let wrong_name = outcome(server.endpoint(wrong_name), admin(), stats).await;
    println!("a client expecting another name: {}", short(&wrong_name));
    assert!(
        wrong_name.is_err(),
        "the handshake succeeded: {wrong_name:?}"
    );

    // None of that hurt the server.
    assert_eq!(
        outcome(server.endpoint(pki.trusting()), admin(), stats).await,
        Ok(Code::Ok)
    );
    server.stop().await;
}

#[tokio::test]
async fn mtls_authenticates_a_client_certificate_as_its_common_name() {
    provider();
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let args = pki.args(&data.path().join("data"), true);
    let as_cn = |cn: &str| pki.trusting().identity(pki.ca.client(cn));
    let server = Server::start(args, data, as_cn("admin")).await;

    // The bootstrapped admin, by certificate, with no header.
    let ch = server
        .endpoint(as_cn("admin"))
        .connect()
        .await
        .expect("connect");
    create_user(
        InterceptedService::new(ch, AuthHeader::none()),
        "rita",
        &["reader"],
    )
    .await;
    let none = AuthHeader::none;

    // rita's certificate: a reader.
    let rita = as_cn("rita");
    assert_eq!(
        outcome(server.endpoint(rita.clone()), none(), read_all).await,
        Ok(Code::Ok),
        "rita reads"
    );
    assert_eq!(
        outcome(server.endpoint(rita.clone()), none(), append).await,
        Ok(Code::PermissionDenied),
        "rita may not append"
    );
    assert_eq!(
        outcome(server.endpoint(rita.clone()), none(), stats).await,
        Ok(Code::PermissionDenied),
        "rita may not ask stats"
    );
    assert_eq!(
        outcome(server.endpoint(as_cn("admin")), none(), append).await,
        Ok(Code::Ok),
        "admin appends"
    );
    // Health needs no credentials (the connection still needs a certificate).
    assert_eq!(
        health(server.endpoint(rita.clone()), "").await,
        Ok(ServingStatus::Serving)
    );
    // A signed certificate whose name is no user.
    let ghost = outcome(server.endpoint(as_cn("ghost")), none(), read_all).await;
    assert_eq!(ghost, Ok(Code::Unauthenticated), "{}", short(&ghost));
    let ghost = outcome(server.endpoint(as_cn("ghost")), none(), stats).await;
    assert_eq!(ghost, Ok(Code::Unauthenticated), "{}", short(&ghost));

    // No certificate: refused, as an error and not a hang.
    let bare = outcome(server.endpoint(pki.trusting()), admin(), stats).await;
    println!("mTLS without a client certificate: {}", short(&bare));
    assert!(bare.is_err(), "no certificate, answered: {bare:?}");
    // A certificate of another CA, even named admin.
    let foreign = pki.trusting().identity(pki.other_ca.client("admin"));
    let foreign = outcome(server.endpoint(foreign), none(), stats).await;
    println!("mTLS with another CA's certificate: {}", short(&foreign));
    assert!(
        foreign.is_err(),
        "a foreign certificate, answered: {foreign:?}"
    );
    // Credentials in a header are checked as they are: rita's certificate
    // with admin's password acts as admin; with a wrong one, is refused.
    let both = outcome(server.endpoint(rita.clone()), admin(), stats).await;
    println!(
        "rita's certificate + admin's Basic header, Stats: {}",
        short(&both)
    );
    let wrong = outcome(
        server.endpoint(rita.clone()),
        AuthHeader::basic("admin", "not the password"),
        read_all,
    )
    .await;
    assert_eq!(wrong, Ok(Code::Unauthenticated), "{}", short(&wrong));

    assert_eq!(
        outcome(server.endpoint(rita), none(), read_all).await,
        Ok(Code::Ok),
        "still serving"
    );
    server.stop().await;
}

/// The error `run` ends with for `args` (it must end, and fail, promptly).
async fn refused(args: ServeArgs) -> String {
    let run = strata_server::run(args, loopback().await, loopback().await, async {});
    match tokio::time::timeout(WAIT, run).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => panic!("the server started and stopped instead of refusing"),
        Err(_) => panic!("run neither refused nor stopped"),
    }
}

#[tokio::test]
async fn a_public_address_needs_tls_or_insecure_and_authentication_needs_an_admin() {
    provider();
    let data = tempfile::tempdir().expect("tempdir");
    let public: SocketAddr = "0.0.0.0:0".parse().expect("address");
    let base = |name: &str| {
        let mut a = ServeArgs::for_tests(data.path().join(name));
        a.log_filter = "warn".into();
        a.durability = Durability::UnsafeNoSync;
        a.segment_size = 1 << 20;
        a
    };

    // Plain text on 0.0.0.0: refused, naming the flags.
    let mut a = base("public");
    a.listen = public;
    a.admin_password = Some(ADMIN_PASSWORD.into());
    let why = refused(a).await;
    println!("0.0.0.0 without TLS: {why}");
    for flag in ["--tls-cert", "--insecure"] {
        assert!(why.contains(flag), "'{why}' names {flag}");
    }

    // Authentication on, no user yet and no first password: refused.
    let mut a = base("no-admin");
    a.auth = strata_server::config::AuthMode::Required;
    let why = refused(a).await;
    println!("auth without a first admin: {why}");
    assert!(why.contains("STRATA_ADMIN_PASSWORD"), "{why}");
    // Likewise with TLS (authentication on by it).
    let pki = Pki::new();
    let mut a = pki.args(&data.path().join("tls-no-admin"), false);
    a.admin_password = None;
    let why = refused(a).await;
    assert!(why.contains("STRATA_ADMIN_PASSWORD"), "{why}");

    // With --insecure it serves, warns, and lets anyone do everything.
    let mut a = base("insecure");
    a.listen = public;
    a.insecure = true;
    let grpc = TcpListener::bind(public).await.expect("bind 0.0.0.0");
    let port = grpc.local_addr().expect("address").port();
    let server = spawn(a, grpc, loopback().await);
    let mut client = common::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let stats = loop {
        match client.stats(v1::StatsRequest {}).await {
            Ok(s) => break s.into_inner(),
            Err(e) => {
                assert!(!server.handle.is_finished(), "the server exited: {e}");
                assert!(tokio::time::Instant::now() < deadline, "no stats: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    println!("--insecure warnings: {:?}", stats.warnings);
    assert!(
        !stats.warnings.is_empty(),
        "an insecure server warns in Stats"
    );
    assert!(
        stats.warnings.iter().any(|w| w.contains("--insecure")),
        "{:?}",
        stats.warnings
    );
    // No authentication: an anonymous caller may do an admin's work.
    client
        .append(append_req(
            "anyone",
            v1::ExpectedVersion::any(),
            vec![event("t", b"{}")],
        ))
        .await
        .expect("append without credentials");
    server.stop().await;
}

/// `--metrics-tls`: `/metrics` answers over TLS with the server's
/// certificate, and not in plain text.
#[tokio::test]
async fn the_metrics_endpoint_serves_over_tls_with_the_same_certificate() {
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    provider();
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let mut args = pki.args(data.path(), false);
    args.metrics_tls = true;
    let metrics = loopback().await;
    let metrics_addr = metrics.local_addr().expect("metrics address");
    let mut server = spawn(args, loopback().await, metrics);
    server._data = Some(data);
    // Ready once health answers.
    let deadline = tokio::time::Instant::now() + WAIT;
    while health(server.endpoint(pki.trusting()), "").await != Ok(ServingStatus::Serving) {
        assert!(tokio::time::Instant::now() < deadline, "not serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca.pem().as_bytes()) {
        roots
            .add(cert.expect("CA certificate"))
            .expect("add the CA");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(metrics_addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("no hang")
        .expect("TLS handshake with the metrics endpoint");
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    tokio::time::timeout(WAIT, tls.read_to_string(&mut answer))
        .await
        .expect("no hang")
        .expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:.200}");
    assert!(answer.contains("strata_"), "metrics in the body");

    // Plain text to the same port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(metrics_addr)
        .await
        .expect("connect");
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut got)).await;
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "plain HTTP was answered"
    );
    server.stop().await;
}
