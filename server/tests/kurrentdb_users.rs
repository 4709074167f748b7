//! KurrentDB compatibility: `event_store.client.users.Users` over Strata's
//! users, through the generated KurrentDB client, with authentication on.

mod common;
mod kurrent_support;

use common::{AuthHeader, TestServer};
use kurrent_support::*;
use strata_proto::kurrentdb::streams::append_req::options::ExpectedStreamRevision;
use strata_proto::kurrentdb::users::users_client::UsersClient;
use strata_proto::kurrentdb::users::{
    change_password_req, create_req, delete_req, details_req, disable_req, enable_req,
    reset_password_req, update_req, ChangePasswordReq, CreateReq, DeleteReq, DetailsReq,
    DisableReq, EnableReq, ResetPasswordReq, UpdateReq,
};
use strata_proto::v1;
use strata_server::config::AuthMode;
use tonic::Code;

type Users = UsersClient<common::AuthChannel>;

async fn users_as(server: &TestServer, auth: AuthHeader) -> Users {
    UsersClient::new(common::channel_with(server.addr, auth).await)
}

/// `(login, groups)` of every user, or of one.
async fn details(
    users: &mut Users,
    login: &str,
) -> Result<Vec<(String, Vec<String>)>, tonic::Status> {
    let req = DetailsReq {
        options: Some(details_req::Options {
            login_name: login.into(),
        }),
    };
    let mut stream = users.details(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(d) = stream.message().await? {
        let d = d.user_details.expect("user_details");
        out.push((d.login_name, d.groups));
    }
    Ok(out)
}

#[tokio::test]
async fn users_are_strata_users_with_groups_as_roles() {
    let server = TestServer::start_with(|a| {
        a.auth = AuthMode::Required;
        a.admin_password = Some(ADMIN_PASSWORD.into());
    })
    .await;
    let admin = AuthHeader::basic("admin", ADMIN_PASSWORD);
    let mut users = users_as(&server, admin.clone()).await;
    users
        .create(CreateReq {
            options: Some(create_req::Options {
                login_name: "kate".into(),
                password: "kate password 1".into(),
                full_name: "Kate K".into(),
                groups: Vec::new(),
            }),
        })
        .await
        .expect("Create");
    let again = users
        .create(CreateReq {
            options: Some(create_req::Options {
                login_name: "kate".into(),
                password: "another one".into(),
                full_name: String::new(),
                groups: Vec::new(),
            }),
        })
        .await
        .expect_err("a second Create");
    assert_eq!(again.code(), Code::AlreadyExists);
    assert_eq!(
        details(&mut users, "").await.expect("Details"),
        vec![
            ("admin".to_owned(), vec!["$admins".to_owned()]),
            ("kate".to_owned(), Vec::new()),
        ]
    );

    // A user in no group is a writer: it appends, and may not manage users.
    let kate = AuthHeader::basic("kate", "kate password 1");
    let mut k = kurrent_as(&server, kate.clone()).await;
    append(
        &mut k,
        "u-stream",
        ExpectedStreamRevision::NoStream(E),
        events(1, "u"),
    )
    .await;
    let mut kate_users = users_as(&server, kate.clone()).await;
    let refused = details(&mut kate_users, "")
        .await
        .expect_err("not an admin");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Groups become roles, natively too.
    users
        .update(UpdateReq {
            options: Some(update_req::Options {
                login_name: "kate".into(),
                password: String::new(),
                full_name: String::new(),
                groups: vec!["$ops".into()],
            }),
        })
        .await
        .expect("Update");
    assert_eq!(
        details(&mut users, "kate").await.expect("Details"),
        vec![("kate".to_owned(), vec!["$ops".to_owned()])]
    );
    let mut native =
        v1::users_client::UsersClient::new(common::channel_with(server.addr, admin.clone()).await);
    let listed = native
        .list(v1::ListUsersRequest {})
        .await
        .expect("native List")
        .into_inner()
        .users;
    let kate_native = listed.iter().find(|u| u.user == "kate").expect("kate");
    assert_eq!(kate_native.roles, vec!["ops".to_owned()]);
    let missing = details(&mut users, "nobody").await.expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);

    // Her own password, with the current one; then reset by the admin.
    let wrong = kate_users
        .change_password(ChangePasswordReq {
            options: Some(change_password_req::Options {
                login_name: "kate".into(),
                current_password: "not it".into(),
                new_password: "kate password 2".into(),
            }),
        })
        .await
        .expect_err("wrong current password");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    kate_users
        .change_password(ChangePasswordReq {
            options: Some(change_password_req::Options {
                login_name: "kate".into(),
                current_password: "kate password 1".into(),
                new_password: "kate password 2".into(),
            }),
        })
        .await
        .expect("ChangePassword");
    let old = try_append(
        &mut k,
        "u-stream",
        ExpectedStreamRevision::Any(E),
        events(1, "v"),
    )
    .await
    .expect_err("the old password");
    assert_eq!(old.code(), Code::Unauthenticated);
    users
        .reset_password(ResetPasswordReq {
            options: Some(reset_password_req::Options {
                login_name: "kate".into(),
                new_password: "kate password 3".into(),
            }),
        })
        .await
        .expect("ResetPassword");
    let mut k3 = kurrent_as(&server, AuthHeader::basic("kate", "kate password 3")).await;
    append(
        &mut k3,
        "u-stream",
        ExpectedStreamRevision::Revision(0),
        events(1, "w"),
    )
    .await;

    // Disabled, she authenticates in no way; enabled, she does again.
    users
        .disable(DisableReq {
            options: Some(disable_req::Options {
                login_name: "kate".into(),
            }),
        })
        .await
        .expect("Disable");
    let disabled = try_append(
        &mut k3,
        "u-stream",
        ExpectedStreamRevision::Any(E),
        events(1, "d"),
    )
    .await
    .expect_err("disabled");
    assert_eq!(disabled.code(), Code::Unauthenticated);
    let last_admin = users
        .disable(DisableReq {
            options: Some(disable_req::Options {
                login_name: "admin".into(),
            }),
        })
        .await
        .expect_err("the last admin");
    assert_eq!(last_admin.code(), Code::FailedPrecondition);
    users
        .enable(EnableReq {
            options: Some(enable_req::Options {
                login_name: "kate".into(),
            }),
        })
        .await
        .expect("Enable");
    append(
        &mut k3,
        "u-stream",
        ExpectedStreamRevision::Revision(1),
        events(1, "e"),
    )
    .await;
    users
        .delete(DeleteReq {
            options: Some(delete_req::Options {
                login_name: "kate".into(),
            }),
        })
        .await
        .expect("Delete");
    let gone = try_append(
        &mut k3,
        "u-stream",
        ExpectedStreamRevision::Any(E),
        events(1, "x"),
    )
    .await
    .expect_err("deleted");
    assert_eq!(gone.code(), Code::Unauthenticated);
}
