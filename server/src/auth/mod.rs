//! Security: who a caller is and what it may do (docs/API.md section 5).
//!
//! One layer ([`AuthLayer`]) sits in front of every gRPC service. It reads
//! the caller's credentials (`Basic`, `Bearer` API key, or the client
//! certificate of an mTLS connection), finds the [`Caller`], refuses what
//! the [`rpc_need`] table does not allow, and hands the caller to the
//! service in the request's extensions. No handler looks at credentials;
//! the stream handlers ask [`Caller::may`] about the streams a request
//! names, because a stream's ACL can replace the role default.
//!
//! The store knows nothing of users: users and keys are events of the
//! `$users` stream ([`Directory`]), and `$all` reads of a restricted caller
//! carry a stream predicate ([`Caller::read_gate`]).

mod layer;
pub mod tls;
mod users;

use std::fmt;
use std::sync::Arc;

use tonic::Status;

use crate::store::{Store, StreamAcl, StreamGate};

pub use layer::AuthLayer;
pub use users::{Directory, DirectoryError, UserView, USERS_STREAM};

/// The roles, each including the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read and subscribe; read consumer groups.
    Reader,
    /// + append, delete, stream metadata.
    Writer,
    /// + stats, operations, consumer group management.
    Ops,
    /// Everything: tombstones, users, `$`-streams.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Reader, Role::Writer, Role::Ops, Role::Admin];

    /// The role's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Ops => "ops",
            Role::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An authenticated user as one call sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user's name.
    pub name: Box<str>,
    /// Its highest role (roles are cumulative); none when it has none.
    pub level: Option<Role>,
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off: every caller may do everything.
    Everyone,
    /// A user, authenticated.
    User(Arc<Principal>),
}

/// What a caller does to a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOp {
    /// Read or subscribe to it.
    Read,
    /// Append to it.
    Write,
    /// Delete it (soft).
    Delete,
    /// Read its metadata.
    MetadataRead,
    /// Change its metadata.
    MetadataWrite,
}

impl StreamOp {
    /// The role that may do this to a stream without an ACL.
    fn default_role(self) -> Role {
        match self {
            StreamOp::Read => Role::Reader,
            StreamOp::Write | StreamOp::Delete | StreamOp::MetadataRead => Role::Writer,
            StreamOp::MetadataWrite => Role::Writer,
        }
    }

    /// The ACL's list for this operation.
    fn list(self, acl: &StreamAcl) -> &[String] {
        match self {
            StreamOp::Read => &acl.read,
            StreamOp::Write => &acl.write,
            StreamOp::Delete => &acl.delete,
            StreamOp::MetadataRead => &acl.metadata_read,
            StreamOp::MetadataWrite => &acl.metadata_write,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            StreamOp::Read => "read",
            StreamOp::Write => "append to",
            StreamOp::Delete => "delete",
            StreamOp::MetadataRead => "read the metadata of",
            StreamOp::MetadataWrite => "change the metadata of",
        }
    }
}

impl Caller {
    /// The caller a request carries. The layer puts one into every request
    /// it lets through; a request without one never passed it, and is
    /// refused rather than trusted.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::internal("the request did not pass authentication"))
    }

    /// The user's name, if authentication is on.
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Everyone => None,
            Caller::User(p) => Some(&p.name),
        }
    }

    /// Whether the caller holds `role` (always, with authentication off).
    pub fn has(&self, role: Role) -> bool {
        match self {
            Caller::Everyone => true,
            Caller::User(p) => p.level.is_some_and(|l| l >= role),
        }
    }

    /// Whether an ACL entry (a user name or `$role:NAME`) names the caller.
    fn named_by(&self, entry: &str) -> bool {
        match self {
            Caller::Everyone => true,
            Caller::User(p) => match entry.strip_prefix("$role:") {
                Some(role) => Role::parse(role).is_some_and(|r| self.has(r)),
                None => *p.name == *entry,
            },
        }
    }

    /// Whether the caller may do `op` to `stream`, whose ACL is `acl`: an
    /// admin always; else the ACL's list for `op` when it is not empty;
    /// else the role default, and nobody but an admin for `$`-streams.
    pub fn may(&self, op: StreamOp, stream: &str, acl: Option<&StreamAcl>) -> bool {
        if self.has(Role::Admin) {
            return true;
        }
        match acl.map(|a| op.list(a)).filter(|l| !l.is_empty()) {
            Some(list) => list.iter().any(|e| self.named_by(e)),
            None => !stream.starts_with('$') && self.has(op.default_role()),
        }
    }

    /// [`Caller::may`] as a gRPC answer.
    pub fn check(&self, op: StreamOp, stream: &str, acl: Option<&StreamAcl>) -> Result<(), Status> {
        if self.may(op, stream, acl) {
            Ok(())
        } else {
            Err(denied(&format!("may not {} stream '{stream}'", op.verb())))
        }
    }

    /// [`Caller::check`] against `stream`'s ACL as `store` applies it now
    /// (no lookup for an admin): how every handler decides per stream.
    pub fn check_in(&self, store: &Store, op: StreamOp, stream: &str) -> Result<(), Status> {
        if self.has(Role::Admin) {
            return Ok(());
        }
        let metadata = store.current_metadata(stream);
        self.check(op, stream, metadata.as_ref().map(|m| &m.acl))
    }

    /// The predicate that keeps a `$all` read or subscription to the
    /// streams the caller may read; `None` when it may read them all.
    pub fn read_gate(&self) -> Option<StreamGate> {
        if self.has(Role::Admin) {
            return None;
        }
        let caller = self.clone();
        Some(StreamGate::new(move |stream, acl| {
            caller.may(StreamOp::Read, stream, acl)
        }))
    }
}

/// PERMISSION_DENIED, with what was refused.
pub fn denied(what: &str) -> Status {
    Status::permission_denied(format!("permission denied: {what}"))
}

/// What a call needs to get past the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: health checks and reflection.
    Open,
    /// Credentials; what the call may do is decided per stream, by ACLs
    /// and role defaults, or (`Users.SetPassword`) per user.
    Authenticated,
    /// Credentials of a user holding this role.
    Role(Role),
}

/// What each RPC needs; anything not in [`listed_need`] needs admin.
pub fn rpc_need(path: &str) -> Need {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .and_then(|(service, method)| listed_need(service, method))
        .unwrap_or(Need::Role(Role::Admin))
}

/// The table: every RPC the server serves (a test checks it against the
/// descriptor set).
fn listed_need(service: &str, method: &str) -> Option<Need> {
    use Need::{Authenticated, Open};
    Some(match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => Open,
        // KurrentDB's clients discover the server before they authenticate.
        ("event_store.client.gossip.Gossip", "Read")
        | ("event_store.client.server_features.ServerFeatures", "GetSupportedMethods") => Open,
        ("event_store.client.streams.Streams", "Read" | "Append" | "Delete" | "BatchAppend") => {
            Authenticated
        }
        ("event_store.client.streams.Streams", "Tombstone") => Need::Role(Role::Admin),
        ("event_store.client.persistent_subscriptions.PersistentSubscriptions", "Read") => {
            Authenticated
        }
        (
            "event_store.client.persistent_subscriptions.PersistentSubscriptions",
            "Create" | "Update" | "Delete" | "List" | "GetInfo" | "ReplayParked",
        ) => Need::Role(Role::Ops),
        (
            "strata.v1.Streams",
            "Append" | "MultiAppend" | "PipelinedAppend" | "Read" | "Subscribe" | "Delete"
            | "GetStreamMetadata" | "SetStreamMetadata",
        ) => Authenticated,
        ("strata.v1.Streams", "Tombstone") => Need::Role(Role::Admin),
        ("strata.v1.Streams", "Stats") => Need::Role(Role::Ops),
        ("strata.v1.Operations", "Backup" | "StartScavenge" | "GetScavenge" | "StopScavenge") => {
            Need::Role(Role::Ops)
        }
        ("strata.v1.PersistentSubscriptions", "Read") => Authenticated,
        (
            "strata.v1.PersistentSubscriptions",
            "Create" | "Update" | "Delete" | "List" | "GetInfo" | "ReplayParked"
            | "RestartSubsystem",
        ) => Need::Role(Role::Ops),
        ("strata.v1.Users", "SetPassword") => Authenticated,
        ("event_store.client.users.Users", "ChangePassword") => Authenticated,
        (
            "event_store.client.users.Users",
            "Create" | "Update" | "Delete" | "Disable" | "Enable" | "Details" | "ResetPassword",
        ) => Need::Role(Role::Admin),
        (
            "strata.v1.Users",
            "Create" | "Delete" | "List" | "SetRoles" | "CreateApiKey" | "RevokeApiKey",
        ) => Need::Role(Role::Admin),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, level: Option<Role>) -> Caller {
        Caller::User(Arc::new(Principal {
            name: name.into(),
            level,
        }))
    }

    #[test]
    fn roles_are_cumulative() {
        let ops = user("o", Some(Role::Ops));
        assert!(ops.has(Role::Reader) && ops.has(Role::Writer) && ops.has(Role::Ops));
        assert!(!ops.has(Role::Admin));
        assert!(!user("n", None).has(Role::Reader));
        assert!(Caller::Everyone.has(Role::Admin));
    }

    #[test]
    fn an_acl_list_replaces_the_role_default() {
        let acl = StreamAcl {
            read: vec!["ann".into(), "$role:ops".into()],
            ..StreamAcl::default()
        };
        let reader = user("bob", Some(Role::Reader));
        assert!(!reader.may(StreamOp::Read, "s", Some(&acl)));
        assert!(reader.may(StreamOp::Read, "other", None));
        // Named, with no role at all.
        assert!(user("ann", None).may(StreamOp::Read, "s", Some(&acl)));
        assert!(user("o", Some(Role::Ops)).may(StreamOp::Read, "s", Some(&acl)));
        // The write list is empty: the default (writer) holds.
        assert!(!reader.may(StreamOp::Write, "s", Some(&acl)));
        assert!(user("w", Some(Role::Writer)).may(StreamOp::Write, "s", Some(&acl)));
        // Admin always; `$`-streams only for admin.
        assert!(user("a", Some(Role::Admin)).may(StreamOp::Read, "s", Some(&acl)));
        assert!(!user("o", Some(Role::Ops)).may(StreamOp::Read, "$users", None));
        assert!(user("a", Some(Role::Admin)).may(StreamOp::Read, "$users", None));
        // An unknown role matches nobody.
        let odd = StreamAcl {
            read: vec!["$role:superuser".into()],
            ..StreamAcl::default()
        };
        assert!(!user("o", Some(Role::Ops)).may(StreamOp::Read, "s", Some(&odd)));
    }

    #[test]
    fn only_health_and_reflection_are_open() {
        assert_eq!(rpc_need("/grpc.health.v1.Health/Check"), Need::Open);
        assert_eq!(
            rpc_need("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Need::Open
        );
        assert_eq!(rpc_need("/strata.v1.Streams/Append"), Need::Authenticated);
        assert_eq!(rpc_need("/strata.v1.Streams/Nope"), Need::Role(Role::Admin));
        assert_eq!(rpc_need("garbage"), Need::Role(Role::Admin));
    }

    #[test]
    fn every_served_rpc_is_in_the_table() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(strata_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut seen = 0;
        for file in set.file.iter().filter(|f| f.package() == "strata.v1") {
            for service in &file.service {
                for method in &service.method {
                    let service = format!("strata.v1.{}", service.name());
                    assert!(
                        listed_need(&service, method.name()).is_some(),
                        "{service}/{} is not in the table",
                        method.name()
                    );
                    seen += 1;
                }
            }
        }
        assert!(seen >= 28, "only {seen} RPCs found");
    }

    #[test]
    fn every_served_kurrentdb_rpc_is_in_the_table() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(
            strata_proto::kurrentdb::KURRENTDB_FILE_DESCRIPTOR_SET,
        )
        .expect("descriptor set");
        // The services the server registers (the others answer
        // UNIMPLEMENTED before the table matters).
        let served = [
            "event_store.client.streams.Streams",
            "event_store.client.gossip.Gossip",
            "event_store.client.server_features.ServerFeatures",
        ];
        let mut seen = 0;
        for file in &set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                if !served.contains(&name.as_str()) {
                    continue;
                }
                for method in &service.method {
                    assert!(
                        listed_need(&name, method.name()).is_some(),
                        "{name}/{} is not in the table",
                        method.name()
                    );
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 7, "Streams (5), Gossip (1), ServerFeatures (1)");
        assert_eq!(
            rpc_need("/event_store.client.gossip.Gossip/Read"),
            Need::Open
        );
        assert_eq!(
            rpc_need("/event_store.client.streams.Streams/Tombstone"),
            Need::Role(Role::Admin)
        );
    }
}
