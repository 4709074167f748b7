//! [`Users`]: the server's users, their roles and API keys (the
//! `strata.v1.Users` service, `docs/API.md` section 5), through the
//! client's connection, deadline and message limit. Admin only, except
//! that a user may change their own password.

use strata_proto::v1;
use strata_proto::v1::users_client::UsersClient;

use crate::auth::AuthChannel;
use crate::client::Client;
use crate::error::{error_from_other_status, Error};

/// Manages the server's users and API keys; from [`Client::users`]. Every
/// call needs the credentials of an `admin` (but
/// [`set_password`](Users::set_password) of the caller's own user), else
/// [`Error::PermissionDenied`]. A server with authentication off answers
/// [`Error::Server`] with code `FAILED_PRECONDITION`.
///
/// ```no_run
/// # async fn demo(admin: strata_client::Client) -> Result<(), strata_client::Error> {
/// let users = admin.users();
/// users.create("billing", "a long password", ["writer"]).await?;
/// let key = users.create_api_key("billing", "worker-1").await?;
/// // Give `key` to the billing worker: Credentials::api_key(key).
/// for user in users.list().await? {
///     println!("{} {:?} keys {:?}", user.user, user.roles, user.api_keys);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Users {
    client: Client,
}

/// A user as [`Users::list`] shows it: never a password or a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserInfo {
    /// The user's name.
    pub user: String,
    /// Its roles, as given: `reader`, `writer`, `ops`, `admin` (each
    /// includes the ones before it).
    pub roles: Vec<String>,
    /// The names of its API keys.
    pub api_keys: Vec<String>,
}

impl Client {
    /// The users, roles and API keys of the server (see [`Users`]).
    ///
    /// ```no_run
    /// # async fn demo(admin: strata_client::Client) -> Result<(), strata_client::Error> {
    /// admin.users().set_roles("billing", ["reader"]).await?;
    /// # Ok(()) }
    /// ```
    pub fn users(&self) -> Users {
        Users {
            client: self.clone(),
        }
    }
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

impl Users {
    fn grpc(&self) -> UsersClient<AuthChannel> {
        UsersClient::new(self.client.channel())
            .max_decoding_message_size(self.client.options().max_message_size)
    }

    /// Creates `user` with `password` (8 to 1024 bytes) and `roles` (may be
    /// empty: the user can then do what stream access lists grant it by
    /// name). [`Error::AlreadyExists`] if the name is taken,
    /// [`Error::InvalidArgument`] for a bad name, password or role.
    ///
    /// ```no_run
    /// # async fn demo(admin: strata_client::Client) -> Result<(), strata_client::Error> {
    /// admin.users().create("auditor", "a long password", ["reader"]).await?;
    /// admin.users().create("by-acl-only", "another long one", Vec::<String>::new()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn create(
        &self,
        user: impl Into<String>,
        password: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<(), Error> {
        let request = v1::CreateUserRequest {
            user: user.into(),
            password: password.into(),
            roles: strings(roles),
        };
        let mut grpc = self.grpc();
        self.client
            .unary_mapped(
                request,
                |r| async move { grpc.create(r).await },
                error_from_other_status,
            )
            .await
            .map(|_| ())
    }

    /// Deletes `user` and revokes all of its API keys.
    /// [`Error::NotFound`] if there is no such user.
    ///
    /// ```no_run
    /// # async fn demo(admin: strata_client::Client) -> Result<(), strata_client::Error> {
    /// admin.users().delete("auditor").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, user: impl Into<String>) -> Result<(), Error> {
        let request = v1::DeleteUserRequest { user: user.into() };
        let mut grpc = self.grpc();
        self.client
            .unary_mapped(
                request,
                |r| async move { grpc.delete(r).await },
                error_from_other_status,
            )
            .await
            .map(|_| ())
    }

    /// Every user, its roles and the names of its API keys, ordered by name.
    ///
    /// ```no_run
    /// # async fn demo(admin: strata_client::Client) -> Result<(), strata_client::Error> {
    /// let admins = admin
    ///     .users()
    ///     .list()
    ///     .await?
    ///     .into_iter()
    ///     .filter(|u| u.roles.iter().any(|r| r == "admin"))
    ///     .count();
    /// # Ok(()) }
    /// ```
    pub async fn list(&self) -> Result<Vec<UserInfo>, Error> {
        let mut grpc = self.grpc();
        let response = self
            .client
            .unary_mapped(
                v1::ListUsersRequest {},
                |r| async move { grpc.list(r).await },
                error_from_other_status,
            )
            .await?;
        Ok(response
            .users
            .into_iter()
            .map(|u| UserInfo {
                user: u.user,
                roles: u.roles,
                api_keys: u.api_keys,
            })
            .collect())
    }

    /// Replaces the password of `user`; it takes effect on every connection
    /// at once. Any user may change their own.
    ///
    /// ```no_run
    /// # async fn demo(me: strata_client::Client) -> Result<(), strata_client::Error> {
    /// me.users().set_password("alice", "a new long password").await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_password(
        &self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<(), Error> {
        let request = v1::SetPasswordRequest {
            user: user.into(),
            password: password.into(),
        };
        let mut grpc = self.grpc();
        self.client
            .unary_mapped(
                request,
                |r| async move { grpc.set_password(r).await },
                error_from_other_status,
            )
            .await
            .map(|_| ())
    }

    /// Replaces the roles of `user`.
    ///
    /// ```no_run
    /// # async fn demo(admin: strata_client::Client) -> Result<(), strata_client::Error> {
    /// admin.users().set_roles("billing", ["writer", "ops"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_roles(
        &self,
        user: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<(), Error> {
        let request = v1::SetRolesRequest {
            user: user.into(),
            roles: strings(roles),
        };
        let mut grpc = self.grpc();
        self.client
            .unary_mapped(
                request,
                |r| async move { grpc.set_roles(r).await },
                error_from_other_status,
            )
            .await
            .map(|_| ())
    }

    /// Creates an API key named `name` for `user` and returns it, for
    /// [`Credentials::api_key`](crate::Credentials::api_key). This is the
    /// only time the key is shown: the server keeps only a hash of it.
    /// [`Error::AlreadyExists`] if the user has a key of that name.
    ///
    /// ```no_run
    /// # async fn demo(admin: strata_client::Client) -> Result<(), strata_client::Error> {
    /// use strata_client::{ClientOptions, Credentials};
    ///
    /// let key = admin.users().create_api_key("billing", "worker-1").await?;
    /// let worker = ClientOptions::new()
    ///     .tls_ca_file("ca.pem")?
    ///     .credentials(Credentials::api_key(key))
    ///     .connect("https://strata.internal:2113")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_api_key(
        &self,
        user: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<String, Error> {
        let request = v1::CreateApiKeyRequest {
            user: user.into(),
            name: name.into(),
        };
        let mut grpc = self.grpc();
        let response = self
            .client
            .unary_mapped(
                request,
                |r| async move { grpc.create_api_key(r).await },
                error_from_other_status,
            )
            .await?;
        Ok(response.key)
    }

    /// Revokes the API key `name` of `user`; it takes effect on every
    /// connection at once.
    ///
    /// ```no_run
    /// # async fn demo(admin: strata_client::Client) -> Result<(), strata_client::Error> {
    /// admin.users().revoke_api_key("billing", "worker-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn revoke_api_key(
        &self,
        user: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<(), Error> {
        let request = v1::RevokeApiKeyRequest {
            user: user.into(),
            name: name.into(),
        };
        let mut grpc = self.grpc();
        self.client
            .unary_mapped(
                request,
                |r| async move { grpc.revoke_api_key(r).await },
                error_from_other_status,
            )
            .await
            .map(|_| ())
    }
}
