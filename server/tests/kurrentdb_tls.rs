//! KurrentDB compatibility with TLS on: the layer's Basic credentials over
//! TLS (certificates made here with rcgen), discovery open before
//! authentication, and gossip naming the host the client addressed, so a
//! client that reconnects to "the leader" keeps the name its certificate
//! check needs.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{AuthHeader, PATIENCE};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use strata_proto::kurrentdb::gossip::gossip_client::GossipClient;
use strata_proto::kurrentdb::server_features::server_features_client::ServerFeaturesClient;
use strata_proto::kurrentdb::shared::{uuid, Empty, StreamIdentifier, Uuid};
use strata_proto::kurrentdb::streams::append_req::{self, options::ExpectedStreamRevision};
use strata_proto::kurrentdb::streams::read_req::options::{
    self as ro, stream_options::RevisionOption, CountOption, FilterOption, StreamOption,
};
use strata_proto::kurrentdb::streams::read_resp::Content;
use strata_proto::kurrentdb::streams::streams_client::StreamsClient;
use strata_proto::kurrentdb::streams::{append_resp, read_req, AppendReq, ReadReq};
use strata_server::config::ServeArgs;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

const E: Empty = Empty {};
const ADMIN_PASSWORD: &str = "kurrent tls admin";

/// A CA and a server certificate for `localhost` and 127.0.0.1, as files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, "KurrentDB layer test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server.distinguished_name = DistinguishedName::new();
        server.distinguished_name.push(DnType::CommonName, "strata");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = server
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("server certificate");

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("write");
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).expect("write");
        Pki {
            dir,
            ca_pem: ca_cert.pem(),
        }
    }
}

struct Server {
    port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), strata_server::RunError>>,
    _data: tempfile::TempDir,
}

async fn start(pki: &Pki) -> Server {
    // The server installs ring's provider at its start; clients built
    // before it need one too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().expect("tempdir");
    let mut args = ServeArgs::for_tests(data.path().join("data"));
    args.log_filter = "warn".into();
    args.tls_cert = Some(pki.dir.path().join("server.pem"));
    args.tls_key = Some(pki.dir.path().join("server.key"));
    args.admin_password = Some(ADMIN_PASSWORD.into());
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = grpc.local_addr().expect("address").port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(strata_server::run(args, grpc, metrics, async move {
        let _ = rx.await;
    }));
    Server {
        port,
        shutdown: Some(tx),
        handle,
        _data: data,
    }
}

impl Server {
    /// A TLS channel to 127.0.0.1 whose calls address `localhost:PORT`, as
    /// a client given `esdb://localhost:PORT` does.
    async fn channel(
        &self,
        pki: &Pki,
        auth: AuthHeader,
    ) -> InterceptedService<Channel, AuthHeader> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca_pem))
            .domain_name("localhost");
        let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{}", self.port))
            .expect("endpoint")
            .origin(
                format!("https://localhost:{}", self.port)
                    .parse()
                    .expect("origin"),
            )
            .connect_timeout(Duration::from_secs(3))
            .tls_config(tls)
            .expect("TLS settings");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match endpoint.connect().await {
                Ok(channel) => return InterceptedService::new(channel, auth),
                Err(e) => {
                    assert!(!self.handle.is_finished(), "the server exited: {e}");
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot connect: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.handle)
            .await
            .expect("the server stops in time")
            .expect("the server task")
            .expect("a clean stop");
    }
}

fn append_requests(stream: &str) -> Vec<AppendReq> {
    vec![
        AppendReq {
            content: Some(append_req::Content::Options(append_req::Options {
                stream_identifier: Some(StreamIdentifier {
                    stream_name: stream.as_bytes().to_vec(),
                }),
                expected_stream_revision: Some(ExpectedStreamRevision::NoStream(E)),
            })),
        },
        AppendReq {
            content: Some(append_req::Content::ProposedMessage(
                append_req::ProposedMessage {
                    id: Some(Uuid {
                        value: Some(uuid::Value::String(::uuid::Uuid::new_v4().to_string())),
                    }),
                    metadata: HashMap::from([
                        ("type".to_owned(), "Tls".to_owned()),
                        ("content-type".to_owned(), "application/json".to_owned()),
                    ]),
                    custom_metadata: Vec::new().into(),
                    data: b"{}".to_vec().into(),
                },
            )),
        },
    ]
}

#[tokio::test]
async fn basic_credentials_over_tls_and_gossip_names_the_addressed_host() {
    let pki = Pki::new();
    let server = start(&pki).await;

    // Discovery is open, over TLS, before authenticating.
    let open = server.channel(&pki, AuthHeader::none()).await;
    let features = ServerFeaturesClient::new(open.clone())
        .get_supported_methods(E)
        .await
        .expect("features")
        .into_inner();
    assert!(!features.methods.is_empty());
    let cluster = GossipClient::new(open.clone())
        .read(E)
        .await
        .expect("gossip")
        .into_inner();
    let endpoint = cluster.members[0].http_end_point.clone().expect("endpoint");
    assert_eq!(
        endpoint.address, "localhost",
        "the name the certificate has"
    );
    assert_eq!(endpoint.port, u32::from(server.port));

    // Streams need credentials.
    let refused = StreamsClient::new(open)
        .append(tokio_stream::iter(append_requests("k-tls")))
        .await
        .expect_err("no credentials");
    assert_eq!(refused.code(), Code::Unauthenticated);

    let admin = server
        .channel(&pki, AuthHeader::basic("admin", ADMIN_PASSWORD))
        .await;
    let mut k = StreamsClient::new(admin);
    let appended = k
        .append(tokio_stream::iter(append_requests("k-tls")))
        .await
        .expect("append over TLS")
        .into_inner();
    assert!(matches!(
        appended.result,
        Some(append_resp::Result::Success(_))
    ));
    let read = ReadReq {
        options: Some(read_req::Options {
            stream_option: Some(StreamOption::Stream(ro::StreamOptions {
                stream_identifier: Some(StreamIdentifier {
                    stream_name: b"k-tls".to_vec(),
                }),
                revision_option: Some(RevisionOption::Start(E)),
            })),
            read_direction: 0,
            resolve_links: false,
            count_option: Some(CountOption::Count(10)),
            filter_option: Some(FilterOption::NoFilter(E)),
            uuid_option: None,
            control_option: None,
        }),
    };
    let mut answers = k.read(read).await.expect("read over TLS").into_inner();
    let first = answers.message().await.expect("answer").expect("an event");
    assert!(matches!(first.content, Some(Content::Event(_))));
    server.stop().await;
}
