//! The `strata.v1.Users` service: users, roles and API keys over the
//! [`Directory`]. The auth layer has already admitted the caller (admin for
//! everything but `SetPassword`); `SetPassword` of another user needs admin.

use std::sync::Arc;

use strata_proto::v1;
use strata_proto::v1::users_server::Users;
use tonic::{Request, Response, Status};

use super::status::status_from_append;
use crate::auth::{denied, Caller, Directory, DirectoryError, Role};

/// The Users service.
#[derive(Clone)]
pub struct UsersService {
    directory: Arc<Directory>,
}

impl UsersService {
    /// A service over `directory`.
    pub fn new(directory: Arc<Directory>) -> Self {
        UsersService { directory }
    }
}

/// The status of a refused change of the directory.
pub fn status(e: DirectoryError) -> Status {
    match e {
        DirectoryError::InvalidArgument(m) => Status::invalid_argument(m),
        DirectoryError::NotFound(m) => Status::not_found(m),
        DirectoryError::AlreadyExists(m) => Status::already_exists(m),
        DirectoryError::FailedPrecondition(m) => Status::failed_precondition(m),
        DirectoryError::Append(e) => status_from_append(e),
        e @ (DirectoryError::Read(_) | DirectoryError::Corrupt { .. }) => {
            Status::internal(e.to_string())
        }
    }
}

fn roles(names: &[String]) -> Result<Vec<Role>, Status> {
    let mut roles = Vec::with_capacity(names.len());
    for name in names {
        let role = Role::parse(name).ok_or_else(|| {
            Status::invalid_argument(format!(
                "unknown role '{name}': the roles are reader, writer, ops and admin"
            ))
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

#[tonic::async_trait]
impl Users for UsersService {
    async fn create(
        &self,
        request: Request<v1::CreateUserRequest>,
    ) -> Result<Response<v1::CreateUserResponse>, Status> {
        let r = request.into_inner();
        self.directory
            .create(&r.user, &r.password, &roles(&r.roles)?)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::CreateUserResponse {}))
    }

    async fn delete(
        &self,
        request: Request<v1::DeleteUserRequest>,
    ) -> Result<Response<v1::DeleteUserResponse>, Status> {
        let r = request.into_inner();
        self.directory.delete(&r.user).await.map_err(status)?;
        Ok(Response::new(v1::DeleteUserResponse {}))
    }

    async fn list(
        &self,
        _request: Request<v1::ListUsersRequest>,
    ) -> Result<Response<v1::ListUsersResponse>, Status> {
        let users = self
            .directory
            .list()
            .into_iter()
            .map(|u| v1::UserInfo {
                user: u.user,
                roles: u.roles.iter().map(|r| r.name().to_owned()).collect(),
                api_keys: u.api_keys,
            })
            .collect();
        Ok(Response::new(v1::ListUsersResponse { users }))
    }

    async fn set_password(
        &self,
        request: Request<v1::SetPasswordRequest>,
    ) -> Result<Response<v1::SetPasswordResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        if !caller.has(Role::Admin) && caller.user() != Some(r.user.as_str()) {
            return Err(denied("only an admin may change another user's password"));
        }
        self.directory
            .set_password(&r.user, &r.password)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::SetPasswordResponse {}))
    }

    async fn set_roles(
        &self,
        request: Request<v1::SetRolesRequest>,
    ) -> Result<Response<v1::SetRolesResponse>, Status> {
        let r = request.into_inner();
        self.directory
            .set_roles(&r.user, &roles(&r.roles)?)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::SetRolesResponse {}))
    }

    async fn create_api_key(
        &self,
        request: Request<v1::CreateApiKeyRequest>,
    ) -> Result<Response<v1::CreateApiKeyResponse>, Status> {
        let r = request.into_inner();
        let key = self
            .directory
            .create_api_key(&r.user, &r.name)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::CreateApiKeyResponse { key }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<v1::RevokeApiKeyRequest>,
    ) -> Result<Response<v1::RevokeApiKeyResponse>, Status> {
        let r = request.into_inner();
        self.directory
            .revoke_api_key(&r.user, &r.name)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::RevokeApiKeyResponse {}))
    }
}
