//! Authentication and authorization through the gRPC services: the layer,
//! roles, stream ACLs, API keys, users that survive a restart.

mod common;

use common::{append_req, event, AuthChannel, AuthHeader, TestServer};
use strata_proto::v1;
use strata_proto::v1::streams_client::StreamsClient;
use strata_proto::v1::users_client::UsersClient;
use strata_server::config::AuthMode;
use tonic::Code;

const ADMIN_PASSWORD: &str = "correct horse battery";

async fn secured() -> TestServer {
    TestServer::start_with(|a| {
        a.auth = AuthMode::Required;
        a.admin_password = Some(ADMIN_PASSWORD.into());
    })
    .await
}

async fn streams(server: &TestServer, auth: AuthHeader) -> StreamsClient<AuthChannel> {
    StreamsClient::new(common::channel_with(server.addr, auth).await)
}

async fn users(server: &TestServer, auth: AuthHeader) -> UsersClient<AuthChannel> {
    UsersClient::new(common::channel_with(server.addr, auth).await)
}

fn admin() -> AuthHeader {
    AuthHeader::basic("admin", ADMIN_PASSWORD)
}

async fn create_user(server: &TestServer, user: &str, roles: &[&str]) {
    users(server, admin())
        .await
        .create(v1::CreateUserRequest {
            user: user.into(),
            password: format!("{user}-password"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        })
        .await
        .expect("create user");
}

fn as_user(user: &str) -> AuthHeader {
    AuthHeader::basic(user, &format!("{user}-password"))
}

async fn append_code(client: &mut StreamsClient<AuthChannel>, stream: &str) -> Code {
    match client
        .append(append_req(
            stream,
            v1::ExpectedVersion::any(),
            vec![event("t", b"{}")],
        ))
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn calls_need_credentials_and_the_role_their_rpc_needs() {
    let server = secured().await;
    let mut nobody = streams(&server, AuthHeader::none()).await;
    let refused = nobody
        .append(append_req(
            "s",
            v1::ExpectedVersion::any(),
            vec![event("t", b"{}")],
        ))
        .await
        .expect_err("no credentials");
    assert_eq!(refused.code(), Code::Unauthenticated);

    create_user(&server, "rita", &["reader"]).await;
    create_user(&server, "will", &["writer"]).await;
    create_user(&server, "otto", &["ops"]).await;

    let mut will = streams(&server, as_user("will")).await;
    let mut rita = streams(&server, as_user("rita")).await;
    let mut otto = streams(&server, as_user("otto")).await;
    assert_eq!(append_code(&mut will, "orders").await, Code::Ok);
    assert_eq!(
        append_code(&mut rita, "orders").await,
        Code::PermissionDenied
    );
    assert_eq!(append_code(&mut otto, "orders").await, Code::Ok);
    assert_eq!(
        rita.stats(v1::StatsRequest {})
            .await
            .expect_err("reader asks stats")
            .code(),
        Code::PermissionDenied
    );
    otto.stats(v1::StatsRequest {})
        .await
        .expect("ops asks stats");

    // A wrong password and an unknown user read the same.
    let wrong = streams(&server, AuthHeader::basic("rita", "not her password"))
        .await
        .stats(v1::StatsRequest {})
        .await
        .expect_err("wrong password");
    let unknown = streams(&server, AuthHeader::basic("nobody", "not her password"))
        .await
        .stats(v1::StatsRequest {})
        .await
        .expect_err("unknown user");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(wrong.message(), unknown.message());

    // Only admin manages users.
    let refused = users(&server, as_user("otto"))
        .await
        .list(v1::ListUsersRequest {})
        .await
        .expect_err("ops lists users");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let listed = users(&server, admin())
        .await
        .list(v1::ListUsersRequest {})
        .await
        .expect("admin lists")
        .into_inner();
    let names: Vec<_> = listed.users.iter().map(|u| u.user.as_str()).collect();
    assert_eq!(names, ["admin", "otto", "rita", "will"]);
}

#[tokio::test]
async fn a_read_acl_hides_a_stream_from_reads_and_all() {
    let server = secured().await;
    create_user(&server, "rita", &["reader"]).await;
    create_user(&server, "will", &["writer"]).await;
    let mut root = streams(&server, admin()).await;
    assert_eq!(append_code(&mut root, "open").await, Code::Ok);
    assert_eq!(append_code(&mut root, "secret").await, Code::Ok);
    root.set_stream_metadata(v1::SetStreamMetadataRequest {
        stream: "secret".into(),
        expected: Some(v1::ExpectedVersion::any()),
        metadata: Some(v1::StreamMetadata {
            acl: Some(v1::StreamAcl {
                read: vec!["will".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    })
    .await
    .expect("set acl");

    let mut rita = streams(&server, as_user("rita")).await;
    let denied = rita
        .read(common::stream_read(
            "secret",
            v1::Direction::Forwards,
            None,
            10,
        ))
        .await
        .expect_err("rita reads secret");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let all = collect(
        &mut rita,
        common::all_read(v1::Direction::Forwards, None, 100, None),
    )
    .await;
    let seen: Vec<_> = all.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(seen, ["open"], "$all skips what rita may not read");

    let mut will = streams(&server, as_user("will")).await;
    let all = collect(
        &mut will,
        common::all_read(v1::Direction::Forwards, None, 100, None),
    )
    .await;
    let seen: Vec<_> = all.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(seen, ["open", "secret"]);
}

async fn collect(
    client: &mut StreamsClient<AuthChannel>,
    req: v1::ReadRequest,
) -> Vec<v1::RecordedEvent> {
    let mut stream = client.read(req).await.expect("read").into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.expect("batch") {
        out.extend(r.events);
    }
    out
}

#[tokio::test]
async fn api_keys_work_until_revoked_and_users_survive_a_restart() {
    let server = secured().await;
    create_user(&server, "will", &["writer"]).await;
    let key = users(&server, admin())
        .await
        .create_api_key(v1::CreateApiKeyRequest {
            user: "will".into(),
            name: "ci".into(),
        })
        .await
        .expect("key")
        .into_inner()
        .key;
    let mut by_key = streams(&server, AuthHeader::bearer(&key)).await;
    assert_eq!(append_code(&mut by_key, "s").await, Code::Ok);

    let dir = server.stop_and_keep().await;
    let server = TestServer::start_in(dir, |a| a.auth = AuthMode::Required).await;
    let mut by_key = streams(&server, AuthHeader::bearer(&key)).await;
    assert_eq!(
        append_code(&mut by_key, "s").await,
        Code::Ok,
        "after restart"
    );
    let mut will = streams(&server, as_user("will")).await;
    assert_eq!(append_code(&mut will, "s").await, Code::Ok);

    users(&server, admin())
        .await
        .revoke_api_key(v1::RevokeApiKeyRequest {
            user: "will".into(),
            name: "ci".into(),
        })
        .await
        .expect("revoke");
    // The same connection, the next call.
    assert_eq!(append_code(&mut by_key, "s").await, Code::Unauthenticated);
}
