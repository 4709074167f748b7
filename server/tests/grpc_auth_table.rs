//! Authorization as a table (docs/API.md section 5): every RPC of every
//! service, called by every kind of caller, answers the code the contract
//! gives it (UNAUTHENTICATED for missing or bad credentials, PERMISSION_DENIED
//! for a role or ACL that does not allow the call, anything else for a call
//! that got past authorization), and a refused call changes nothing. Then
//! stream ACLs, the slow-down of repeated failures, and malformed
//! credentials.
//!
//! Run with `--nocapture` to see the tables.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use common::{append_req, event, AuthHeader, TestServer};
use strata_proto::v1;
use strata_proto::v1::operations_client::OperationsClient;
use strata_proto::v1::persistent_subscriptions_client::PersistentSubscriptionsClient;
use strata_proto::v1::streams_client::StreamsClient;
use strata_proto::v1::users_client::UsersClient;
use strata_server::config::{AuthMode, Durability};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const ADMIN_PASSWORD: &str = "correct horse battery";
/// Longest wait for any one answer; longer counts as a hang.
const WAIT: Duration = Duration::from_secs(10);

type Ch = InterceptedService<Channel, AuthHeader>;

fn pw(user: &str) -> String {
    format!("{user}-password")
}

async fn secured() -> TestServer {
    TestServer::start_with(|a| {
        a.auth = AuthMode::Required;
        a.admin_password = Some(ADMIN_PASSWORD.into());
        // Authorization is under test, not durability: no fsync per write.
        a.durability = Durability::UnsafeNoSync;
        // The disk is shared: small segments.
        a.segment_size = 1 << 20;
    })
    .await
}

/// `f`, or DEADLINE_EXCEEDED ("HANG") when it takes longer than [`WAIT`].
async fn within<T>(f: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    match tokio::time::timeout(WAIT, f).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "HANG: no answer within {WAIT:?}"
        ))),
    }
}

/// Opens a server stream and looks at its first item: an error there is
/// the call's error; a message, the end, or a wait means it was let in.
async fn opened<T>(
    call: impl Future<Output = Result<tonic::Response<tonic::Streaming<T>>, Status>>,
) -> Result<(), Status> {
    let mut s = within(call).await?.into_inner();
    match tokio::time::timeout(Duration::from_secs(2), s.message()).await {
        Ok(Err(status)) => Err(status),
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}

/// One connection; each client made from it carries its own header.
#[derive(Clone)]
struct Conn(Channel);

impl Conn {
    async fn to(server: &TestServer) -> Conn {
        let channel = Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Conn(channel)
    }

    fn ch(&self, h: AuthHeader) -> Ch {
        InterceptedService::new(self.0.clone(), h)
    }

    fn streams(&self, h: AuthHeader) -> StreamsClient<Ch> {
        StreamsClient::new(self.ch(h))
    }

    fn ops(&self, h: AuthHeader) -> OperationsClient<Ch> {
        OperationsClient::new(self.ch(h))
    }

    fn groups(&self, h: AuthHeader) -> PersistentSubscriptionsClient<Ch> {
        PersistentSubscriptionsClient::new(self.ch(h))
    }

    fn users(&self, h: AuthHeader) -> UsersClient<Ch> {
        UsersClient::new(self.ch(h))
    }

    fn admin() -> AuthHeader {
        AuthHeader::basic("admin", ADMIN_PASSWORD)
    }

    // ---- things done as admin, to set up and to look -------------------

    async fn create_user(&self, user: &str, roles: &[&str]) {
        self.users(Self::admin())
            .create(v1::CreateUserRequest {
                user: user.into(),
                password: pw(user),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            })
            .await
            .unwrap_or_else(|e| panic!("create user {user}: {e}"));
    }

    async fn create_key(&self, user: &str, name: &str) -> String {
        self.users(Self::admin())
            .create_api_key(v1::CreateApiKeyRequest {
                user: user.into(),
                name: name.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("create key {name} of {user}: {e}"))
            .into_inner()
            .key
    }

    async fn append(&self, stream: &str) {
        self.streams(Self::admin())
            .append(append_req(
                stream,
                v1::ExpectedVersion::any(),
                vec![event("setup", b"{}")],
            ))
            .await
            .unwrap_or_else(|e| panic!("append to {stream}: {e}"));
    }

    async fn set_acl(&self, stream: &str, acl: v1::StreamAcl) {
        self.streams(Self::admin())
            .set_stream_metadata(v1::SetStreamMetadataRequest {
                stream: stream.into(),
                expected: Some(v1::ExpectedVersion::any()),
                metadata: Some(v1::StreamMetadata {
                    acl: Some(acl),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("set the acl of {stream}: {e}"));
    }

    async fn create_group(&self, target: v1::PersistentTarget, group: &str) {
        self.groups(Self::admin())
            .create(v1::CreatePersistentSubscriptionRequest {
                target: Some(target),
                group: group.into(),
                settings: None,
            })
            .await
            .unwrap_or_else(|e| panic!("create group {group}: {e}"));
    }

    async fn head(&self) -> u64 {
        self.streams(Self::admin())
            .stats(v1::StatsRequest {})
            .await
            .expect("stats as admin")
            .into_inner()
            .head_position
    }

    /// Events of `stream` as admin, or the read's code.
    async fn count(&self, stream: &str) -> String {
        let req = common::stream_read(
            stream,
            v1::Direction::Forwards,
            Some(v1::ReadFrom::start()),
            0,
        );
        let mut client = self.streams(Self::admin());
        let read = async {
            let mut s = client.read(req).await?.into_inner();
            let mut n = 0;
            while let Some(batch) = s.message().await? {
                n += batch.events.len();
            }
            Ok(n)
        };
        match within(read).await {
            Ok(n) => format!("{stream}:{n} events"),
            Err(e) => format!("{stream}:{}", short(e.code())),
        }
    }

    async fn metadata(&self, stream: &str) -> String {
        match self
            .streams(Self::admin())
            .get_stream_metadata(v1::GetStreamMetadataRequest {
                stream: stream.into(),
            })
            .await
        {
            Ok(m) => format!("{:?}", m.into_inner()),
            Err(e) => short(e.code()).into(),
        }
    }

    async fn group_info(&self, target: v1::PersistentTarget, group: &str) -> String {
        match self
            .groups(Self::admin())
            .get_info(v1::GetPersistentSubscriptionInfoRequest {
                target: Some(target),
                group: group.into(),
            })
            .await
        {
            Ok(i) => format!("settings {:?}", i.into_inner().settings),
            Err(e) => short(e.code()).into(),
        }
    }

    async fn user_list(&self) -> String {
        let users = self
            .users(Self::admin())
            .list(v1::ListUsersRequest {})
            .await
            .expect("list users as admin")
            .into_inner()
            .users;
        format!("{users:?}")
    }

    async fn scavenge_started(&self) -> String {
        let s = self
            .ops(Self::admin())
            .get_scavenge(v1::GetScavengeRequest {})
            .await
            .expect("get scavenge as admin")
            .into_inner();
        format!("scavenge started {:?}", s.started_at)
    }

    /// A call any user may make (a `$all` read of one event), as `header`.
    async fn probe(&self, header: AuthHeader) -> Result<(), Status> {
        let req = common::all_read(v1::Direction::Forwards, None, 1, None);
        opened(self.streams(header).read(req)).await
    }

    /// Whether `header` authenticates.
    async fn authenticates(&self, header: AuthHeader) -> String {
        match self.probe(header).await {
            Ok(()) => "authenticates".into(),
            Err(e) => short(e.code()).into(),
        }
    }
}

/// A code, short, for the tables.
fn short(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Unauthenticated => "UNAUTH",
        Code::PermissionDenied => "DENIED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "EXISTS",
        Code::FailedPrecondition => "PRECOND",
        Code::InvalidArgument => "INVALID",
        Code::DeadlineExceeded => "HANG",
        Code::Unavailable => "UNAVAIL",
        Code::Internal => "INTERNAL",
        Code::ResourceExhausted => "EXHAUSTED",
        Code::Unimplemented => "UNIMPL",
        Code::Unknown => "UNKNOWN",
        _ => "OTHER",
    }
}

/// What a cell of a table must be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Unauth,
    Denied,
    /// Past authorization: any code but UNAUTHENTICATED and PERMISSION_DENIED.
    Allowed,
}

impl Expect {
    fn met_by(self, code: Code) -> bool {
        match self {
            Expect::Unauth => code == Code::Unauthenticated,
            Expect::Denied => code == Code::PermissionDenied,
            Expect::Allowed => !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
        }
    }
}

/// Prints a table: a header row, then one row per entry.
fn print_table(title: &str, corner: &str, columns: &[&str], rows: &[(String, Vec<String>)]) {
    let first = rows
        .iter()
        .map(|r| r.0.chars().count())
        .chain([corner.chars().count()])
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .filter_map(|r| r.1.get(i))
                .map(|c| c.chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!("\n{title}\n");
    let line = |name: &str, cells: &[&str]| {
        let mut line = format!("| {name:first$} |");
        for (c, w) in cells.iter().zip(&widths) {
            line += &format!(" {c:w$} |");
        }
        println!("{line}");
    };
    line(corner, columns);
    let mut rule = format!("|{}|", "-".repeat(first + 2));
    for w in &widths {
        rule += &format!("{}|", "-".repeat(w + 2));
    }
    println!("{rule}");
    for (name, cells) in rows {
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        line(name, &cells);
    }
    println!();
}

// ---- the RPC × caller table ---------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Nobody,
    WrongPassword,
    UnknownUser,
    RevokedKey,
    Malformed,
    NoRole,
    Reader,
    Writer,
    WriterKey,
    Ops,
    Admin,
}

/// In this order: every caller a call refuses comes before every caller it
/// lets in (roles only grow), so that one target serves a whole row.
const CALLERS: [Who; 11] = [
    Who::Nobody,
    Who::WrongPassword,
    Who::UnknownUser,
    Who::RevokedKey,
    Who::Malformed,
    Who::NoRole,
    Who::Reader,
    Who::Writer,
    Who::WriterKey,
    Who::Ops,
    Who::Admin,
];

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Nobody => "none",
            Who::WrongPassword => "wrong-pw",
            Who::UnknownUser => "unknown",
            Who::RevokedKey => "revoked",
            Who::Malformed => "malformed",
            Who::NoRole => "no-role",
            Who::Reader => "reader",
            Who::Writer => "writer",
            Who::WriterKey => "w-key",
            Who::Ops => "ops",
            Who::Admin => "admin",
        }
    }

    /// The role level (0 none … 4 admin) of a caller with valid credentials.
    fn level(self) -> Option<u8> {
        match self {
            Who::NoRole => Some(0),
            Who::Reader => Some(1),
            Who::Writer | Who::WriterKey => Some(2),
            Who::Ops => Some(3),
            Who::Admin => Some(4),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rpc {
    Append,
    MultiAppend,
    PipelinedAppend,
    ReadStream,
    ReadAll,
    SubscribeStream,
    SubscribeAll,
    Stats,
    Delete,
    Tombstone,
    GetStreamMetadata,
    SetStreamMetadata,
    Backup,
    StartScavenge,
    GetScavenge,
    StopScavenge,
    GroupCreate,
    GroupUpdate,
    GroupDelete,
    GroupList,
    GroupGetInfo,
    GroupReadStream,
    GroupReadAll,
    GroupReplayParked,
    UserCreate,
    UserDelete,
    UserList,
    SetPasswordOwn,
    SetPasswordOther,
    SetRoles,
    CreateApiKey,
    RevokeApiKey,
}

const RPCS: [Rpc; 32] = [
    Rpc::Append,
    Rpc::MultiAppend,
    Rpc::PipelinedAppend,
    Rpc::ReadStream,
    Rpc::ReadAll,
    Rpc::SubscribeStream,
    Rpc::SubscribeAll,
    Rpc::Stats,
    Rpc::Delete,
    Rpc::Tombstone,
    Rpc::GetStreamMetadata,
    Rpc::SetStreamMetadata,
    Rpc::Backup,
    Rpc::StartScavenge,
    Rpc::GetScavenge,
    Rpc::StopScavenge,
    Rpc::GroupCreate,
    Rpc::GroupUpdate,
    Rpc::GroupDelete,
    Rpc::GroupList,
    Rpc::GroupGetInfo,
    Rpc::GroupReadStream,
    Rpc::GroupReadAll,
    Rpc::GroupReplayParked,
    Rpc::UserCreate,
    Rpc::UserDelete,
    Rpc::UserList,
    Rpc::SetPasswordOwn,
    Rpc::SetPasswordOther,
    Rpc::SetRoles,
    Rpc::CreateApiKey,
    Rpc::RevokeApiKey,
];

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::Append => "Streams.Append",
            Rpc::MultiAppend => "Streams.MultiAppend",
            Rpc::PipelinedAppend => "Streams.PipelinedAppend",
            Rpc::ReadStream => "Streams.Read (stream)",
            Rpc::ReadAll => "Streams.Read ($all)",
            Rpc::SubscribeStream => "Streams.Subscribe (stream)",
            Rpc::SubscribeAll => "Streams.Subscribe ($all)",
            Rpc::Stats => "Streams.Stats",
            Rpc::Delete => "Streams.Delete",
            Rpc::Tombstone => "Streams.Tombstone",
            Rpc::GetStreamMetadata => "Streams.GetStreamMetadata",
            Rpc::SetStreamMetadata => "Streams.SetStreamMetadata",
            Rpc::Backup => "Operations.Backup",
            Rpc::StartScavenge => "Operations.StartScavenge",
            Rpc::GetScavenge => "Operations.GetScavenge",
            Rpc::StopScavenge => "Operations.StopScavenge",
            Rpc::GroupCreate => "Persistent.Create",
            Rpc::GroupUpdate => "Persistent.Update",
            Rpc::GroupDelete => "Persistent.Delete",
            Rpc::GroupList => "Persistent.List",
            Rpc::GroupGetInfo => "Persistent.GetInfo",
            Rpc::GroupReadStream => "Persistent.Read (stream group)",
            Rpc::GroupReadAll => "Persistent.Read ($all group)",
            Rpc::GroupReplayParked => "Persistent.ReplayParked",
            Rpc::UserCreate => "Users.Create",
            Rpc::UserDelete => "Users.Delete",
            Rpc::UserList => "Users.List",
            Rpc::SetPasswordOwn => "Users.SetPassword (own)",
            Rpc::SetPasswordOther => "Users.SetPassword (other's)",
            Rpc::SetRoles => "Users.SetRoles",
            Rpc::CreateApiKey => "Users.CreateApiKey",
            Rpc::RevokeApiKey => "Users.RevokeApiKey",
        }
    }

    /// The lowest role level (0 = any authenticated user) that may make the
    /// call, by API.md section 5, `listed_need` and `Caller::may` (no ACLs
    /// on the streams of this table).
    fn min_level(self) -> u8 {
        match self {
            Rpc::ReadAll | Rpc::SubscribeAll | Rpc::SetPasswordOwn => 0,
            Rpc::ReadStream | Rpc::SubscribeStream | Rpc::GroupReadStream => 1,
            Rpc::Append
            | Rpc::MultiAppend
            | Rpc::PipelinedAppend
            | Rpc::Delete
            | Rpc::GetStreamMetadata
            | Rpc::SetStreamMetadata => 2,
            Rpc::Stats
            | Rpc::Backup
            | Rpc::StartScavenge
            | Rpc::GetScavenge
            | Rpc::StopScavenge
            | Rpc::GroupCreate
            | Rpc::GroupUpdate
            | Rpc::GroupDelete
            | Rpc::GroupList
            | Rpc::GroupGetInfo
            | Rpc::GroupReadAll
            | Rpc::GroupReplayParked => 3,
            Rpc::Tombstone
            | Rpc::UserCreate
            | Rpc::UserDelete
            | Rpc::UserList
            | Rpc::SetPasswordOther
            | Rpc::SetRoles
            | Rpc::CreateApiKey
            | Rpc::RevokeApiKey => 4,
        }
    }

    fn expect(self, who: Who) -> Expect {
        match who.level() {
            None => Expect::Unauth,
            Some(l) if l >= self.min_level() => Expect::Allowed,
            Some(_) => Expect::Denied,
        }
    }
}

/// Wrong passwords and revoked keys each count as failures of one name;
/// after 5 they are slowed down. Each name takes at most this many rows.
const ROWS_PER_NAME: usize = 4;
const ROTATED: usize = RPCS.len().div_ceil(ROWS_PER_NAME);

struct Table {
    conn: Conn,
    writer_key: String,
    revoked_keys: Vec<String>,
}

impl Table {
    async fn set_up(server: &TestServer) -> Table {
        let conn = Conn::to(server).await;
        conn.create_user("nora", &[]).await;
        conn.create_user("rita", &["reader"]).await;
        conn.create_user("will", &["writer"]).await;
        conn.create_user("otto", &["ops"]).await;
        for i in 0..ROTATED {
            conn.create_user(&format!("victim{i}"), &["writer"]).await;
        }
        // The targets of the Users rows.
        conn.create_user("doomed", &["reader"]).await;
        conn.create_user("pwvictim", &["reader"]).await;
        conn.create_user("roley", &["reader"]).await;
        conn.create_user("keyed", &["reader"]).await;
        conn.create_key("keyed", "keep").await;
        let writer_key = conn.create_key("will", "ci").await;
        let mut revoked_keys = Vec::new();
        for i in 0..ROTATED {
            let name = format!("r{i}");
            revoked_keys.push(conn.create_key("will", &name).await);
            conn.users(Conn::admin())
                .revoke_api_key(v1::RevokeApiKeyRequest {
                    user: "will".into(),
                    name,
                })
                .await
                .expect("revoke");
        }
        for stream in ["t-read", "t-del", "t-tomb"] {
            conn.append(stream).await;
        }
        let t = v1::PersistentTarget::stream("t-read");
        for group in ["g-read", "g-upd", "g-del"] {
            conn.create_group(t.clone(), group).await;
        }
        conn.create_group(v1::PersistentTarget::all(), "g-all")
            .await;
        Table {
            conn,
            writer_key,
            revoked_keys,
        }
    }

    fn header(&self, who: Who, row: usize) -> AuthHeader {
        let basic = |u: &str| AuthHeader::basic(u, &pw(u));
        match who {
            Who::Nobody => AuthHeader::none(),
            Who::WrongPassword => AuthHeader::basic(
                &format!("victim{}", row / ROWS_PER_NAME),
                "not the password",
            ),
            Who::UnknownUser => AuthHeader::basic(&format!("ghost{row}"), "not the password"),
            Who::RevokedKey => AuthHeader::bearer(&self.revoked_keys[row / ROWS_PER_NAME]),
            Who::Malformed => AuthHeader::raw("Basic !!!not-base64!!!"),
            Who::NoRole => basic("nora"),
            Who::Reader => basic("rita"),
            Who::Writer => basic("will"),
            Who::WriterKey => AuthHeader::bearer(&self.writer_key),
            Who::Ops => basic("otto"),
            Who::Admin => Conn::admin(),
        }
    }

    /// The user a caller says it is, and its password (for "own" calls).
    fn claimed(who: Who, row: usize) -> (String, String) {
        let user = match who {
            Who::WrongPassword => format!("victim{}", row / ROWS_PER_NAME),
            Who::UnknownUser => format!("ghost{row}"),
            Who::NoRole => "nora".into(),
            Who::Reader => "rita".into(),
            Who::Ops => "otto".into(),
            Who::Admin => return ("admin".into(), ADMIN_PASSWORD.into()),
            Who::Nobody | Who::RevokedKey | Who::Malformed | Who::Writer | Who::WriterKey => {
                "will".into()
            }
        };
        let password = pw(&user);
        (user, password)
    }

    async fn call(&self, rpc: Rpc, who: Who, row: usize) -> Result<(), Status> {
        let h = self.header(who, row);
        let c = &self.conn;
        let label = who.label();
        let any = || Some(v1::ExpectedVersion::any());
        let one =
            |stream: &str| append_req(stream, v1::ExpectedVersion::any(), vec![event("t", b"{}")]);
        let stream_group = |g: &str| (v1::PersistentTarget::stream("t-read"), g.to_owned());
        match rpc {
            Rpc::Append => within(c.streams(h).append(one("t-append"))).await.map(drop),
            Rpc::MultiAppend => within(c.streams(h).multi_append(v1::MultiAppendRequest {
                appends: vec![one("t-multi")],
                checks: vec![],
            }))
            .await
            .map(drop),
            Rpc::PipelinedAppend => {
                let req = v1::PipelinedAppendRequest {
                    correlation_id: 7,
                    append: Some(one("t-pipe")),
                };
                pipelined(c.streams(h), req).await
            }
            Rpc::ReadStream => {
                let req = common::stream_read(
                    "t-read",
                    v1::Direction::Forwards,
                    Some(v1::ReadFrom::start()),
                    0,
                );
                opened(c.streams(h).read(req)).await
            }
            Rpc::ReadAll => {
                let req = common::all_read(
                    v1::Direction::Forwards,
                    Some(v1::ReadFrom::start()),
                    10,
                    None,
                );
                opened(c.streams(h).read(req)).await
            }
            Rpc::SubscribeStream => {
                let req = common::sub_req(
                    common::stream_target("t-read"),
                    Some(v1::SubscribeFrom::start()),
                    None,
                );
                opened(c.streams(h).subscribe(req)).await
            }
            Rpc::SubscribeAll => {
                let req =
                    common::sub_req(common::all_target(), Some(v1::SubscribeFrom::start()), None);
                opened(c.streams(h).subscribe(req)).await
            }
            Rpc::Stats => within(c.streams(h).stats(v1::StatsRequest {}))
                .await
                .map(drop),
            Rpc::Delete => within(c.streams(h).delete(v1::DeleteRequest {
                stream: "t-del".into(),
                expected: any(),
            }))
            .await
            .map(drop),
            Rpc::Tombstone => within(c.streams(h).tombstone(v1::TombstoneRequest {
                stream: "t-tomb".into(),
                expected: any(),
            }))
            .await
            .map(drop),
            Rpc::GetStreamMetadata => within(c.streams(h).get_stream_metadata(
                v1::GetStreamMetadataRequest {
                    stream: "t-read".into(),
                },
            ))
            .await
            .map(drop),
            Rpc::SetStreamMetadata => within(c.streams(h).set_stream_metadata(
                v1::SetStreamMetadataRequest {
                    stream: "t-meta".into(),
                    expected: any(),
                    metadata: Some(v1::StreamMetadata {
                        custom: label.as_bytes().to_vec(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .map(drop),
            Rpc::Backup => opened(c.ops(h).backup(v1::BackupRequest { have: vec![] })).await,
            Rpc::StartScavenge => within(c.ops(h).start_scavenge(v1::StartScavengeRequest {}))
                .await
                .map(drop),
            Rpc::GetScavenge => within(c.ops(h).get_scavenge(v1::GetScavengeRequest {}))
                .await
                .map(drop),
            Rpc::StopScavenge => within(c.ops(h).stop_scavenge(v1::StopScavengeRequest {}))
                .await
                .map(drop),
            Rpc::GroupCreate => {
                within(c.groups(h).create(v1::CreatePersistentSubscriptionRequest {
                    target: Some(v1::PersistentTarget::stream("t-read")),
                    group: format!("g-new-{label}"),
                    settings: None,
                }))
                .await
                .map(drop)
            }
            Rpc::GroupUpdate => {
                within(c.groups(h).update(v1::UpdatePersistentSubscriptionRequest {
                    target: Some(v1::PersistentTarget::stream("t-read")),
                    group: "g-upd".into(),
                    settings: Some(v1::PersistentSettings {
                        max_retry_count: Some(100 + who as u32),
                        ..Default::default()
                    }),
                }))
                .await
                .map(drop)
            }
            Rpc::GroupDelete => {
                within(c.groups(h).delete(v1::DeletePersistentSubscriptionRequest {
                    target: Some(v1::PersistentTarget::stream("t-read")),
                    group: "g-del".into(),
                }))
                .await
                .map(drop)
            }
            Rpc::GroupList => within(
                c.groups(h)
                    .list(v1::ListPersistentSubscriptionsRequest { target: None }),
            )
            .await
            .map(drop),
            Rpc::GroupGetInfo => within(c.groups(h).get_info(
                v1::GetPersistentSubscriptionInfoRequest {
                    target: Some(v1::PersistentTarget::stream("t-read")),
                    group: "g-upd".into(),
                },
            ))
            .await
            .map(drop),
            Rpc::GroupReadStream => {
                let (t, g) = stream_group("g-read");
                group_read(c.groups(h), t, &g).await
            }
            Rpc::GroupReadAll => {
                group_read(c.groups(h), v1::PersistentTarget::all(), "g-all").await
            }
            Rpc::GroupReplayParked => within(c.groups(h).replay_parked(v1::ReplayParkedRequest {
                target: Some(v1::PersistentTarget::stream("t-read")),
                group: "g-read".into(),
                stop_at: None,
            }))
            .await
            .map(drop),
            Rpc::UserCreate => within(c.users(h).create(v1::CreateUserRequest {
                user: format!("new-{label}"),
                password: pw("new"),
                roles: vec!["admin".into()],
            }))
            .await
            .map(drop),
            Rpc::UserDelete => within(c.users(h).delete(v1::DeleteUserRequest {
                user: "doomed".into(),
            }))
            .await
            .map(drop),
            Rpc::UserList => within(c.users(h).list(v1::ListUsersRequest {}))
                .await
                .map(drop),
            Rpc::SetPasswordOwn => {
                // The same password again: the caller keeps working.
                let (user, password) = Self::claimed(who, row);
                within(
                    c.users(h)
                        .set_password(v1::SetPasswordRequest { user, password }),
                )
                .await
                .map(drop)
            }
            Rpc::SetPasswordOther => within(c.users(h).set_password(v1::SetPasswordRequest {
                user: "pwvictim".into(),
                password: format!("set-by-{label}"),
            }))
            .await
            .map(drop),
            Rpc::SetRoles => within(c.users(h).set_roles(v1::SetRolesRequest {
                user: "roley".into(),
                roles: vec!["admin".into()],
            }))
            .await
            .map(drop),
            Rpc::CreateApiKey => within(c.users(h).create_api_key(v1::CreateApiKeyRequest {
                user: "keyed".into(),
                name: format!("k-{label}"),
            }))
            .await
            .map(drop),
            Rpc::RevokeApiKey => within(c.users(h).revoke_api_key(v1::RevokeApiKeyRequest {
                user: "keyed".into(),
                name: "keep".into(),
            }))
            .await
            .map(drop),
        }
    }

    /// What a refused `rpc` must leave as it was, seen by admin.
    async fn snapshot(&self, rpc: Rpc, who: Who) -> String {
        let c = &self.conn;
        let head = c.head().await;
        let stream = v1::PersistentTarget::stream("t-read");
        let what = match rpc {
            Rpc::Append => c.count("t-append").await,
            Rpc::MultiAppend => c.count("t-multi").await,
            Rpc::PipelinedAppend => c.count("t-pipe").await,
            Rpc::Delete => c.count("t-del").await,
            Rpc::Tombstone => c.count("t-tomb").await,
            Rpc::SetStreamMetadata => c.metadata("t-meta").await,
            Rpc::StartScavenge | Rpc::StopScavenge => c.scavenge_started().await,
            Rpc::GroupCreate => {
                c.group_info(stream, &format!("g-new-{}", who.label()))
                    .await
            }
            Rpc::GroupUpdate => c.group_info(stream, "g-upd").await,
            Rpc::GroupDelete => c.group_info(stream, "g-del").await,
            Rpc::UserCreate
            | Rpc::UserDelete
            | Rpc::SetRoles
            | Rpc::CreateApiKey
            | Rpc::RevokeApiKey => c.user_list().await,
            Rpc::SetPasswordOther => {
                c.authenticates(AuthHeader::basic("pwvictim", &pw("pwvictim")))
                    .await
            }
            _ => String::new(),
        };
        format!("head {head}; {what}")
    }
}

async fn pipelined(
    mut c: StreamsClient<Ch>,
    req: v1::PipelinedAppendRequest,
) -> Result<(), Status> {
    use v1::pipelined_append_response::Outcome;
    let mut answers = within(c.pipelined_append(tokio_stream::iter(vec![req])))
        .await?
        .into_inner();
    match within(answers.message()).await? {
        Some(v1::PipelinedAppendResponse {
            outcome: Some(Outcome::Error(e)),
            ..
        }) => Err(Status::new(Code::from_i32(e.code), e.message)),
        Some(_) => Ok(()),
        None => Err(Status::unknown("the call ended without an answer")),
    }
}

/// Joins a consumer group and waits for the first answer.
async fn group_read(
    mut c: PersistentSubscriptionsClient<Ch>,
    target: v1::PersistentTarget,
    group: &str,
) -> Result<(), Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(v1::PersistentReadRequest {
        kind: Some(v1::persistent_read_request::Kind::Options(
            v1::PersistentReadOptions {
                target: Some(target),
                group: group.into(),
                buffer_size: 1,
                consumer_name: "table".into(),
            },
        )),
    })
    .await
    .expect("queue the options");
    let mut answers = within(c.read(ReceiverStream::new(rx))).await?.into_inner();
    let first = within(answers.message()).await?;
    drop(tx);
    match first {
        Some(_) => Ok(()),
        None => Err(Status::unknown("the call ended without a confirmation")),
    }
}

#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_contract_says() {
    let started = Instant::now();
    let server = secured().await;
    let table = Table::set_up(&server).await;
    let set_up = started.elapsed();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (row, rpc) in RPCS.into_iter().enumerate() {
        let mut cells = Vec::new();
        let mut messages = Vec::new();
        for who in CALLERS {
            let expect = rpc.expect(who);
            let before = match expect {
                Expect::Allowed => None,
                _ => Some(table.snapshot(rpc, who).await),
            };
            let result = table.call(rpc, who, row).await;
            let code = result.as_ref().err().map_or(Code::Ok, Status::code);
            let ok = expect.met_by(code);
            cells.push(format!("{}{}", short(code), if ok { "" } else { " (!)" }));
            if !ok {
                failures.push(format!(
                    "{} as {}: expected {expect:?}, got {code:?}: {}",
                    rpc.name(),
                    who.label(),
                    result.as_ref().err().map_or("", |s| s.message())
                ));
            }
            if let Some(before) = before {
                let after = table.snapshot(rpc, who).await;
                if before != after {
                    failures.push(format!(
                        "{} as {} was refused ({code:?}) but changed something:\n  before: {before}\n  after:  {after}",
                        rpc.name(),
                        who.label()
                    ));
                }
            }
            messages.push((who, result.err().map(|s| s.message().to_owned())));
        }
        // A wrong password and an unknown user read the same.
        let message = |w: Who| messages.iter().find(|m| m.0 == w).and_then(|m| m.1.clone());
        let (wrong, unknown) = (message(Who::WrongPassword), message(Who::UnknownUser));
        if wrong != unknown {
            failures.push(format!(
                "{}: a wrong password says {wrong:?}, an unknown user {unknown:?}",
                rpc.name()
            ));
        }
        rows.push((rpc.name().to_owned(), cells));
    }
    let columns: Vec<&str> = CALLERS.iter().map(|w| w.label()).collect();
    print_table(
        "RPC × caller → code (UNAUTH = UNAUTHENTICATED, DENIED = PERMISSION_DENIED, (!) = not what the contract says)",
        "RPC",
        &columns,
        &rows,
    );
    println!("set-up {set_up:?}, whole table {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- stream ACLs ----------------------------------------------------------

/// The users of the ACL table: no role, reader, writer, ops, admin.
const ACL_USERS: [(&str, &str); 5] = [
    ("nora", "no-role"),
    ("rita", "reader"),
    ("will", "writer"),
    ("otto", "ops"),
    ("admin", "admin"),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AclOp {
    Read,
    Subscribe,
    GroupRead,
    /// A MultiAppend to a stream without an ACL, checking the ACL's stream.
    MultiAppendCheck,
    Append,
    PipelinedAppend,
    MultiAppend,
    Delete,
    GetMetadata,
    SetMetadata,
    Tombstone,
}

/// Which stream a case is about.
#[derive(Clone, Copy)]
enum On {
    /// Its own stream, one per case and user, with the case's ACL.
    Own,
    /// The metadata history (`$$S`) of its own stream.
    History,
    /// A stream of the server's.
    Fixed(&'static str),
}

struct AclCase {
    name: &'static str,
    acl: fn() -> v1::StreamAcl,
    on: On,
    op: AclOp,
    /// Allowed for nora, rita, will, otto, admin.
    allowed: [bool; 5],
}

fn list(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn acl_cases() -> Vec<AclCase> {
    use AclOp::*;
    let read_nora = || v1::StreamAcl {
        read: list(&["nora"]),
        ..Default::default()
    };
    let c = |name, acl, op, allowed| AclCase {
        name,
        acl,
        on: On::Own,
        op,
        allowed,
    };
    const T: bool = true;
    const F: bool = false;
    vec![
        c("read=[nora]: Read", read_nora, Read, [T, F, F, F, T]),
        c(
            "read=[nora]: Subscribe",
            read_nora,
            Subscribe,
            [T, F, F, F, T],
        ),
        c(
            "read=[nora]: group Read",
            read_nora,
            GroupRead,
            [T, F, F, F, T],
        ),
        c(
            "read=[$role:ops]: Read",
            || v1::StreamAcl {
                read: list(&["$role:ops"]),
                ..Default::default()
            },
            Read,
            [F, F, F, T, T],
        ),
        c(
            "read=[$role:superuser]: Read",
            || v1::StreamAcl {
                read: list(&["$role:superuser"]),
                ..Default::default()
            },
            Read,
            [F, F, F, F, T],
        ),
        c(
            "read=[will]: MultiAppend check",
            || v1::StreamAcl {
                read: list(&["will"]),
                ..Default::default()
            },
            MultiAppendCheck,
            [F, F, T, F, T],
        ),
        c(
            "write=[nora]: Read (default)",
            || v1::StreamAcl {
                write: list(&["nora"]),
                ..Default::default()
            },
            Read,
            [F, T, T, T, T],
        ),
        c(
            "write=[rita]: Append",
            || v1::StreamAcl {
                write: list(&["rita"]),
                ..Default::default()
            },
            Append,
            [F, T, F, F, T],
        ),
        c(
            "write=[rita]: PipelinedAppend",
            || v1::StreamAcl {
                write: list(&["rita"]),
                ..Default::default()
            },
            PipelinedAppend,
            [F, T, F, F, T],
        ),
        c(
            "write=[rita]: MultiAppend",
            || v1::StreamAcl {
                write: list(&["rita"]),
                ..Default::default()
            },
            MultiAppend,
            [F, T, F, F, T],
        ),
        c(
            "write=[$role:ops]: Append",
            || v1::StreamAcl {
                write: list(&["$role:ops"]),
                ..Default::default()
            },
            Append,
            [F, F, F, T, T],
        ),
        c(
            "delete=[rita]: Delete",
            || v1::StreamAcl {
                delete: list(&["rita"]),
                ..Default::default()
            },
            Delete,
            [F, T, F, F, T],
        ),
        c(
            "delete=[$role:ops]: Delete",
            || v1::StreamAcl {
                delete: list(&["$role:ops"]),
                ..Default::default()
            },
            Delete,
            [F, F, F, T, T],
        ),
        c(
            "delete=[will]: Tombstone (admin's)",
            || v1::StreamAcl {
                delete: list(&["will"]),
                ..Default::default()
            },
            Tombstone,
            [F, F, F, F, T],
        ),
        c(
            "metadata_read=[rita]: GetMetadata",
            || v1::StreamAcl {
                metadata_read: list(&["rita"]),
                ..Default::default()
            },
            GetMetadata,
            [F, T, F, F, T],
        ),
        c(
            "metadata_read=[$role:ops]: GetMetadata",
            || v1::StreamAcl {
                metadata_read: list(&["$role:ops"]),
                ..Default::default()
            },
            GetMetadata,
            [F, F, F, T, T],
        ),
        c(
            "metadata_write=[nora]: SetMetadata",
            || v1::StreamAcl {
                metadata_write: list(&["nora"]),
                ..Default::default()
            },
            SetMetadata,
            [T, F, F, F, T],
        ),
        c(
            "metadata_write=[$role:ops]: SetMetadata",
            || v1::StreamAcl {
                metadata_write: list(&["$role:ops"]),
                ..Default::default()
            },
            SetMetadata,
            [F, F, F, T, T],
        ),
        AclCase {
            name: "$$S (metadata history): Read",
            acl: read_nora,
            on: On::History,
            op: Read,
            allowed: [F, F, F, F, T],
        },
        AclCase {
            name: "$users (no ACL): Read",
            acl: v1::StreamAcl::default,
            on: On::Fixed("$users"),
            op: Read,
            allowed: [F, F, F, F, T],
        },
        AclCase {
            name: "$users (no ACL): Subscribe",
            acl: v1::StreamAcl::default,
            on: On::Fixed("$users"),
            op: Subscribe,
            allowed: [F, F, F, F, T],
        },
    ]
}

impl AclCase {
    fn stream(&self, i: usize, user: &str) -> String {
        let own = format!("acl{i}-{user}");
        match self.on {
            On::Own => own,
            On::History => format!("$${own}"),
            On::Fixed(s) => s.into(),
        }
    }

    async fn call(&self, conn: &Conn, stream: &str, user: &str) -> Result<(), Status> {
        let h = if user == "admin" {
            Conn::admin()
        } else {
            AuthHeader::basic(user, &pw(user))
        };
        let one = |s: &str| append_req(s, v1::ExpectedVersion::any(), vec![event("t", b"{}")]);
        let any = || Some(v1::ExpectedVersion::any());
        match self.op {
            AclOp::Read => {
                let req = common::stream_read(
                    stream,
                    v1::Direction::Forwards,
                    Some(v1::ReadFrom::start()),
                    0,
                );
                opened(conn.streams(h).read(req)).await
            }
            AclOp::Subscribe => {
                let req = common::sub_req(
                    common::stream_target(stream),
                    Some(v1::SubscribeFrom::start()),
                    None,
                );
                opened(conn.streams(h).subscribe(req)).await
            }
            AclOp::GroupRead => {
                group_read(conn.groups(h), v1::PersistentTarget::stream(stream), "g").await
            }
            AclOp::MultiAppendCheck => {
                within(conn.streams(h).multi_append(v1::MultiAppendRequest {
                    appends: vec![one(&format!("{stream}-open"))],
                    checks: vec![v1::StreamCheck {
                        stream: stream.into(),
                        expected: any(),
                    }],
                }))
                .await
                .map(drop)
            }
            AclOp::Append => within(conn.streams(h).append(one(stream))).await.map(drop),
            AclOp::PipelinedAppend => {
                let req = v1::PipelinedAppendRequest {
                    correlation_id: 1,
                    append: Some(one(stream)),
                };
                pipelined(conn.streams(h), req).await
            }
            AclOp::MultiAppend => within(conn.streams(h).multi_append(v1::MultiAppendRequest {
                appends: vec![one(stream)],
                checks: vec![],
            }))
            .await
            .map(drop),
            AclOp::Delete => within(conn.streams(h).delete(v1::DeleteRequest {
                stream: stream.into(),
                expected: any(),
            }))
            .await
            .map(drop),
            AclOp::Tombstone => within(conn.streams(h).tombstone(v1::TombstoneRequest {
                stream: stream.into(),
                expected: any(),
            }))
            .await
            .map(drop),
            AclOp::GetMetadata => within(conn.streams(h).get_stream_metadata(
                v1::GetStreamMetadataRequest {
                    stream: stream.into(),
                },
            ))
            .await
            .map(drop),
            AclOp::SetMetadata => within(conn.streams(h).set_stream_metadata(
                v1::SetStreamMetadataRequest {
                    stream: stream.into(),
                    expected: any(),
                    // The same ACL, so the case stays what it is.
                    metadata: Some(v1::StreamMetadata {
                        acl: Some((self.acl)()),
                        custom: format!("set by {user}").into_bytes(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .map(drop),
        }
    }

    async fn snapshot(&self, conn: &Conn, stream: &str) -> String {
        let head = conn.head().await;
        let what = match self.op {
            AclOp::Append
            | AclOp::PipelinedAppend
            | AclOp::MultiAppend
            | AclOp::Delete
            | AclOp::Tombstone => conn.count(stream).await,
            AclOp::MultiAppendCheck => conn.count(&format!("{stream}-open")).await,
            AclOp::SetMetadata => conn.metadata(stream).await,
            _ => String::new(),
        };
        format!("head {head}; {what}")
    }
}

/// The streams of a `$all` read (or, with `subscribe`, of a subscription's
/// catch-up) as `header` sees them.
async fn all_streams(
    conn: &Conn,
    header: AuthHeader,
    prefix: &[&str],
    subscribe: bool,
) -> BTreeSet<String> {
    let filter = (!prefix.is_empty()).then(|| common::filter(prefix, &[]));
    let mut out = BTreeSet::new();
    let mut client = conn.streams(header);
    if subscribe {
        let req = common::sub_req(
            common::all_target(),
            Some(v1::SubscribeFrom::start()),
            filter,
        );
        let mut s = within(client.subscribe(req))
            .await
            .expect("subscribe $all")
            .into_inner();
        loop {
            let m = within(s.message())
                .await
                .expect("subscription message")
                .expect("the subscription goes on");
            match m.content {
                Some(v1::subscribe_response::Content::Events(b)) => {
                    out.extend(b.events.into_iter().map(|e| e.stream))
                }
                Some(v1::subscribe_response::Content::CaughtUp(_)) => return out,
                _ => {}
            }
        }
    }
    let req = common::all_read(
        v1::Direction::Forwards,
        Some(v1::ReadFrom::start()),
        0,
        filter,
    );
    let mut s = within(client.read(req))
        .await
        .expect("read $all")
        .into_inner();
    while let Some(b) = within(s.message()).await.expect("read batch") {
        out.extend(b.events.into_iter().map(|e| e.stream));
    }
    out
}

#[tokio::test]
async fn stream_acls_replace_the_role_defaults_and_admin_passes_them_all() {
    let started = Instant::now();
    let server = secured().await;
    let conn = Conn::to(&server).await;
    conn.create_user("nora", &[]).await;
    conn.create_user("rita", &["reader"]).await;
    conn.create_user("will", &["writer"]).await;
    conn.create_user("otto", &["ops"]).await;
    let cases = acl_cases();
    for (i, case) in cases.iter().enumerate() {
        if !matches!(case.on, On::Own | On::History) {
            continue;
        }
        for (user, _) in ACL_USERS {
            let own = format!("acl{i}-{user}");
            conn.append(&own).await;
            conn.set_acl(&own, (case.acl)()).await;
            if case.op == AclOp::GroupRead {
                conn.create_group(v1::PersistentTarget::stream(&own), "g")
                    .await;
            }
        }
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut cells = Vec::new();
        for ((user, _), allowed) in ACL_USERS.into_iter().zip(case.allowed) {
            let stream = case.stream(i, user);
            let expect = if allowed {
                Expect::Allowed
            } else {
                Expect::Denied
            };
            let before = case.snapshot(&conn, &stream).await;
            let result = case.call(&conn, &stream, user).await;
            let code = result.as_ref().err().map_or(Code::Ok, Status::code);
            let ok = expect.met_by(code);
            cells.push(format!("{}{}", short(code), if ok { "" } else { " (!)" }));
            if !ok {
                failures.push(format!(
                    "{} as {user} on {stream}: expected {expect:?}, got {code:?}: {}",
                    case.name,
                    result.as_ref().err().map_or("", |s| s.message())
                ));
            }
            if !allowed {
                let after = case.snapshot(&conn, &stream).await;
                if before != after {
                    failures.push(format!(
                        "{} as {user} was refused ({code:?}) but changed something:\n  before: {before}\n  after:  {after}",
                        case.name
                    ));
                }
            }
        }
        rows.push((case.name.to_owned(), cells));
    }
    let columns: Vec<String> = ACL_USERS
        .iter()
        .map(|(u, role)| format!("{u} ({role})"))
        .collect();
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    print_table(
        "stream ACL × user → code ((!) = not what the contract says)",
        "stream ACL: RPC",
        &columns,
        &rows,
    );

    // $all reads and subscriptions skip what the caller may not read: of
    // what admin sees, each user sees the streams its read list or (when
    // the list is empty) its role lets it read.
    let everything = all_streams(&conn, Conn::admin(), &[], false).await;
    let may_read = |level: usize, user: &str, stream: &str| -> bool {
        let case = stream
            .strip_prefix("acl")
            .and_then(|s| s.split('-').next())
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|_| !stream.ends_with("-open"))
            .map(|i| (cases[i].acl)().read);
        match case {
            Some(list) if !list.is_empty() => list.iter().any(|e| {
                e == user
                    || (e == "$role:ops" && level >= 3)
                    || (e == "$role:writer" && level >= 2)
                    || (e == "$role:reader" && level >= 1)
            }),
            // No read list: the default.
            _ => level >= 1,
        }
    };
    for (level, (user, _)) in ACL_USERS.into_iter().enumerate().take(4) {
        let header = AuthHeader::basic(user, &pw(user));
        let want: BTreeSet<String> = everything
            .iter()
            .filter(|s| may_read(level, user, s))
            .cloned()
            .collect();
        let read = all_streams(&conn, header.clone(), &[], false).await;
        let subscribed = all_streams(&conn, header.clone(), &[], true).await;
        if read != want {
            failures.push(format!(
                "$all read as {user}: saw {read:?}, expected {want:?}"
            ));
        }
        if subscribed != want {
            failures.push(format!(
                "$all subscription as {user}: saw {subscribed:?}, expected {want:?}"
            ));
        }
        // `$`-streams stay hidden even when a filter asks for them.
        let system = all_streams(&conn, header, &["$"], false).await;
        if !system.is_empty() {
            failures.push(format!("$all read of prefix '$' as {user} saw {system:?}"));
        }
    }
    assert!(
        everything.contains("acl0-nora") && !everything.iter().any(|s| s.starts_with('$')),
        "admin's $all: {everything:?}"
    );
    let system = all_streams(&conn, Conn::admin(), &["$users"], false).await;
    assert!(
        system.contains("$users"),
        "admin reads $-streams through $all: {system:?}"
    );
    println!("ACL test took {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- repeated failures and malformed credentials ------------------------

#[tokio::test]
async fn repeated_failures_slow_one_name_down_and_malformed_credentials_are_unauthenticated() {
    use base64::Engine as _;
    let started = Instant::now();
    let server = secured().await;
    let conn = Conn::to(&server).await;
    conn.create_user("bruno", &["reader"]).await;
    conn.create_user("alice", &["reader"]).await;

    // Ten wrong passwords for bruno, one after another. After 5 free
    // failures, attempts are spaced 100, 200, 400, 800 ms apart: the 6th to
    // the 10th span at least 1.5 s, however fast the hashing is.
    const ATTEMPTS: usize = 10;
    let (done_tx, mut done) = tokio::sync::watch::channel(0usize);
    let attacker = conn.clone();
    let brute = tokio::spawn(async move {
        let mut took = Vec::new();
        for i in 0..ATTEMPTS {
            let t = Instant::now();
            let header = AuthHeader::basic("bruno", &format!("guess number {i}"));
            let answer = attacker.authenticates(header).await;
            took.push((t.elapsed(), answer));
            let _ = done_tx.send(i + 1);
        }
        took
    });
    // Meanwhile, once bruno is being slowed down, alice logs in for the
    // first time (a full hash verification, not a remembered one).
    done.wait_for(|n| *n >= 6)
        .await
        .expect("the attempts go on");
    let t = Instant::now();
    let alice = conn
        .authenticates(AuthHeader::basic("alice", &pw("alice")))
        .await;
    let alice_took = t.elapsed();
    let took = brute.await.expect("the attempts");
    for (i, (t, answer)) in took.iter().enumerate() {
        println!("wrong password #{}: {answer} after {t:?}", i + 1);
        assert_eq!(answer, "UNAUTH", "attempt {}", i + 1);
    }
    let slowed: Duration = took[5..].iter().map(|t| t.0).sum();
    println!("attempts 6 to {ATTEMPTS} took {slowed:?}; alice meanwhile {alice} in {alice_took:?}");
    assert!(
        slowed >= Duration::from_millis(1400),
        "attempts 6 to {ATTEMPTS} took only {slowed:?}"
    );
    assert_eq!(alice, "authenticates", "another user is not slowed");
    assert!(
        alice_took < Duration::from_secs(3),
        "alice waited {alice_took:?}"
    );
    // Slowed, not locked out: bruno's own password still works (after
    // waiting for its turn), and a user may change their own password.
    let t = Instant::now();
    assert_eq!(
        conn.authenticates(AuthHeader::basic("bruno", &pw("bruno")))
            .await,
        "authenticates"
    );
    println!(
        "bruno's right password after the failures: {:?}",
        t.elapsed()
    );
    conn.users(AuthHeader::basic("alice", &pw("alice")))
        .set_password(v1::SetPasswordRequest {
            user: "alice".into(),
            password: "alice's new password".into(),
        })
        .await
        .expect("alice changes her own password");
    assert_eq!(
        conn.authenticates(AuthHeader::basic("alice", "alice's new password"))
            .await,
        "authenticates"
    );
    assert_eq!(
        conn.authenticates(AuthHeader::basic("alice", &pw("alice")))
            .await,
        "UNAUTH",
        "the old password is gone at once"
    );

    // Malformed authorization values: UNAUTHENTICATED, and the server
    // goes on serving.
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let raw = |s: &str| AuthHeader::raw(s);
    let cases: Vec<(&str, AuthHeader)> = vec![
        ("'Basic'", raw("Basic")),
        ("'Basic !!!'", raw("Basic !!!")),
        (
            "'Basic ' + base64 without a colon",
            raw(&format!("Basic {}", b64(b"admincorrect"))),
        ),
        (
            "'Basic ' + base64 of ':'",
            raw(&format!("Basic {}", b64(b":"))),
        ),
        (
            "'Basic ' + base64 of 'admin:'",
            raw(&format!("Basic {}", b64(b"admin:"))),
        ),
        (
            "'Basic ' + base64 of non-UTF-8",
            raw(&format!("Basic {}", b64(b"\xff\xfe:\xc3\x28"))),
        ),
        ("'Bearer '", raw("Bearer ")),
        ("'Bearer not-a-key'", raw("Bearer not-a-key")),
        (
            "'Bearer ' + a key-shaped unknown key",
            raw("Bearer strata_0123456789abcdef_00112233445566778899"),
        ),
        ("'Token x'", raw("Token x")),
        ("''", raw("")),
        (
            "non-ASCII bytes",
            AuthHeader(Some(
                tonic::metadata::AsciiMetadataValue::try_from(&b"Basic \xc3\xa9t\xc3\xa9"[..])
                    .expect("a header value with obs-text"),
            )),
        ),
        (
            "'Bearer ' + 6000 bytes",
            raw(&format!("Bearer {}", "a".repeat(6000))),
        ),
    ];
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (name, header) in cases {
        let before = conn.head().await;
        let answer = conn.probe(header).await;
        let code = answer.as_ref().err().map_or(Code::Ok, Status::code);
        let message = answer.as_ref().err().map_or("", |s| s.message()).to_owned();
        if code != Code::Unauthenticated {
            failures.push(format!("{name}: {code:?} {message}"));
        }
        assert_eq!(conn.head().await, before, "{name} wrote something");
        rows.push((name.to_owned(), vec![short(code).to_owned(), message]));
    }
    // 16 KiB: over what the server reads of the header and maybe over the
    // HTTP/2 header list limit. Any clean error, never a hang or an answer.
    let huge = raw(&format!("Basic {}", "A".repeat(16 << 10)));
    let answer = conn.probe(huge).await;
    let code = answer.as_ref().err().map_or(Code::Ok, Status::code);
    let message = answer.as_ref().err().map_or("", |s| s.message()).to_owned();
    if matches!(code, Code::Ok | Code::DeadlineExceeded) {
        failures.push(format!("a 16 KiB header: {code:?} {message}"));
    }
    rows.push((
        "'Basic ' + 16 KiB".into(),
        vec![short(code).to_owned(), message],
    ));
    print_table(
        "malformed authorization → code, message",
        "authorization value",
        &["code", "message"],
        &rows,
    );
    // Still serving, on the same connection and a new one.
    assert_eq!(
        conn.authenticates(Conn::admin()).await,
        "authenticates",
        "serving after bad input"
    );
    let fresh = Conn::to(&server).await;
    assert_eq!(fresh.authenticates(Conn::admin()).await, "authenticates");
    assert!(!server.handle.is_finished(), "the server is still running");
    println!("brute force and bad input took {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
