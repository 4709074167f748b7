//! `event_store.client.users.Users` over Strata's users (the same
//! [`Directory`] `strata.v1.Users` manages). KurrentDB's groups become
//! roles: `$admins` is `admin`, `$ops` is `ops`, and a user in neither is a
//! `writer` (KurrentDB's default ACL lets every user read and write user
//! streams); Strata's role names are accepted as groups too. A user's full
//! name and its being disabled are kept with it in the log; a disabled user
//! authenticates in no way (password, key or certificate) until enabled.

use std::sync::Arc;

use strata_proto::kurrentdb::users::details_resp::UserDetails;
use strata_proto::kurrentdb::users::users_server::Users;
use strata_proto::kurrentdb::users::{
    ChangePasswordReq, ChangePasswordResp, CreateReq, CreateResp, DeleteReq, DeleteResp,
    DetailsReq, DetailsResp, DisableReq, DisableResp, EnableReq, EnableResp, ResetPasswordReq,
    ResetPasswordResp, UpdateReq, UpdateResp,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::errors;
use crate::auth::{denied, Caller, Directory, Role};
use crate::service::status_from_directory as status;

/// The service over the server's users.
#[derive(Clone)]
pub struct KurrentUsers {
    directory: Arc<Directory>,
}

impl KurrentUsers {
    /// The service over `directory`.
    pub fn new(directory: Arc<Directory>) -> Self {
        KurrentUsers { directory }
    }
}

/// Strata's roles of KurrentDB's groups.
fn roles_of(groups: &[String]) -> Vec<Role> {
    let mut roles: Vec<Role> = groups
        .iter()
        .filter_map(|g| match g.as_str() {
            "$admins" => Some(Role::Admin),
            "$ops" => Some(Role::Ops),
            other => Role::parse(other),
        })
        .collect();
    if roles.is_empty() {
        roles.push(Role::Writer);
    }
    roles.sort();
    roles.dedup();
    roles
}

/// KurrentDB's groups of Strata's roles.
fn groups_of(roles: &[Role]) -> Vec<String> {
    roles
        .iter()
        .filter_map(|r| match r {
            Role::Admin => Some("$admins".to_owned()),
            Role::Ops => Some("$ops".to_owned()),
            // A writer is KurrentDB's plain user; a reader has no group
            // there and is shown by its role name.
            Role::Writer => None,
            Role::Reader => Some("reader".to_owned()),
        })
        .collect()
}

fn options<T>(o: Option<T>) -> Result<T, Status> {
    o.ok_or_else(|| Status::invalid_argument("options are required"))
}

#[tonic::async_trait]
impl Users for KurrentUsers {
    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        let o = options(request.into_inner().options)?;
        self.directory
            .create(&o.login_name, &o.password, &roles_of(&o.groups))
            .await
            .map_err(status)?;
        if !o.full_name.is_empty() {
            self.directory
                .set_full_name(&o.login_name, &o.full_name)
                .await
                .map_err(status)?;
        }
        Ok(Response::new(CreateResp {}))
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        let o = options(request.into_inner().options)?;
        self.directory
            .set_roles(&o.login_name, &roles_of(&o.groups))
            .await
            .map_err(status)?;
        self.directory
            .set_full_name(&o.login_name, &o.full_name)
            .await
            .map_err(status)?;
        if !o.password.is_empty() {
            self.directory
                .set_password(&o.login_name, &o.password)
                .await
                .map_err(status)?;
        }
        Ok(Response::new(UpdateResp {}))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let o = options(request.into_inner().options)?;
        self.directory.delete(&o.login_name).await.map_err(status)?;
        Ok(Response::new(DeleteResp {}))
    }

    async fn disable(&self, request: Request<DisableReq>) -> Result<Response<DisableResp>, Status> {
        let o = options(request.into_inner().options)?;
        self.directory
            .set_disabled(&o.login_name, true)
            .await
            .map_err(status)?;
        Ok(Response::new(DisableResp {}))
    }

    async fn enable(&self, request: Request<EnableReq>) -> Result<Response<EnableResp>, Status> {
        let o = options(request.into_inner().options)?;
        self.directory
            .set_disabled(&o.login_name, false)
            .await
            .map_err(status)?;
        Ok(Response::new(EnableResp {}))
    }

    type DetailsStream = ReceiverStream<Result<DetailsResp, Status>>;

    async fn details(
        &self,
        request: Request<DetailsReq>,
    ) -> Result<Response<Self::DetailsStream>, Status> {
        let login = request
            .into_inner()
            .options
            .map(|o| o.login_name)
            .unwrap_or_default();
        let users: Vec<_> = self
            .directory
            .list()
            .into_iter()
            .filter(|u| login.is_empty() || u.user == login)
            .collect();
        if !login.is_empty() && users.is_empty() {
            return Err(Status::not_found(format!("user '{login}' does not exist")));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(users.len().max(1));
        for u in users {
            let details = DetailsResp {
                user_details: Some(UserDetails {
                    login_name: u.user,
                    full_name: u.full_name,
                    groups: groups_of(&u.roles),
                    last_updated: None,
                    disabled: u.disabled,
                }),
            };
            // The channel holds them all: this cannot fail.
            let _ = tx.try_send(Ok(details));
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordReq>,
    ) -> Result<Response<ChangePasswordResp>, Status> {
        let caller = Caller::of(&request)?;
        let o = options(request.into_inner().options)?;
        if !caller.has(Role::Admin) && caller.user() != Some(o.login_name.as_str()) {
            return Err(errors::access_denied(denied(
                "only an admin may change another user's password",
            )));
        }
        if self
            .directory
            .check_password(&o.login_name, &o.current_password)
            .await
            .is_none()
        {
            return Err(Status::unauthenticated("the current password is wrong"));
        }
        self.directory
            .set_password(&o.login_name, &o.new_password)
            .await
            .map_err(status)?;
        Ok(Response::new(ChangePasswordResp {}))
    }

    async fn reset_password(
        &self,
        request: Request<ResetPasswordReq>,
    ) -> Result<Response<ResetPasswordResp>, Status> {
        let o = options(request.into_inner().options)?;
        self.directory
            .set_password(&o.login_name, &o.new_password)
            .await
            .map_err(status)?;
        Ok(Response::new(ResetPasswordResp {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_onto_roles_and_back() {
        assert_eq!(roles_of(&[]), vec![Role::Writer]);
        assert_eq!(roles_of(&["$admins".into()]), vec![Role::Admin]);
        assert_eq!(roles_of(&["$ops".into(), "team".into()]), vec![Role::Ops]);
        assert_eq!(roles_of(&["reader".into()]), vec![Role::Reader]);
        assert_eq!(groups_of(&[Role::Admin]), vec!["$admins"]);
        assert_eq!(groups_of(&[Role::Writer]), Vec::<String>::new());
        assert_eq!(groups_of(&roles_of(&["$ops".into()])), vec!["$ops"]);
    }
}
