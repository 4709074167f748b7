//! Users and API keys, kept in the log as events of `$users` and in memory
//! for authentication.
//!
//! Passwords and keys are stored only as argon2id hashes (PHC strings,
//! random 16-byte salts). Verifying one costs tens of milliseconds on
//! purpose, so a credential verified once is remembered by a keyed digest
//! (BLAKE2b under a secret drawn at start) until any user or key changes;
//! every change clears what is remembered, so a new password or a revoked
//! key takes effect on the next call of every connection.
//!
//! Repeated failures for one user name slow down further attempts for that
//! name only: after [`FREE_FAILURES`], attempts are spaced by a delay that
//! doubles up to [`MAX_DELAY`], however many arrive at once. Other users,
//! and credentials already verified, are not slowed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use blake2::digest::{FixedOutput, KeyInit, Update};
use bytes::Bytes;
use password_hash::rand_core::{OsRng, RngCore};
use password_hash::SaltString;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{Principal, Role};
use crate::store::{
    AppendError, AppendRequest, Direction, EventId, ExpectedVersion, NewEvent, ReadError, ReadFrom,
    Store,
};

/// The stream holding users and API keys.
pub const USERS_STREAM: &str = "$users";

/// Failed attempts for one user name that are answered at full speed.
pub const FREE_FAILURES: u32 = 5;
/// The longest delay between two attempts for one user name.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// The delay after the first failure beyond the free ones.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// User names whose failures are remembered before the oldest are forgotten.
const THROTTLED_NAMES: usize = 100_000;
/// Verified credentials remembered before all are forgotten.
const REMEMBERED: usize = 65_536;
/// Hash verifications that run at once (each takes a core for its time).
const HASHING: usize = 2;

/// Longest user name, key name and password, in bytes.
const MAX_NAME: usize = 128;
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;
/// Longest full name, in bytes.
const MAX_FULL_NAME: usize = 1024;
/// What an API key starts with.
const KEY_PREFIX: &str = "strata_";

/// Why a change to users was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such user or key.
    #[error("{0}")]
    NotFound(String),
    /// The user or key exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The change would leave no admin.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The log refused the change.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The users could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A recorded event could not be understood.
    #[error("unreadable event at position {position} of {USERS_STREAM}: {why}")]
    Corrupt {
        /// Its position.
        position: u64,
        /// What is wrong.
        why: String,
    },
}

/// A user as `Users.List` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserView {
    /// Its name.
    pub user: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// The names of its API keys.
    pub api_keys: Vec<String>,
    /// Its full name (empty unless set).
    pub full_name: String,
    /// Disabled: it authenticates in no way until enabled again.
    pub disabled: bool,
}

#[derive(Clone, Debug)]
struct User {
    hash: String,
    roles: Vec<Role>,
    full_name: String,
    disabled: bool,
    /// Key name → key id.
    keys: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
struct ApiKey {
    user: String,
    hash: String,
}

#[derive(Default)]
struct State {
    users: BTreeMap<String, User>,
    /// Key id → key.
    keys: HashMap<String, ApiKey>,
}

/// Verified credentials, and a generation that every change bumps.
#[derive(Default)]
struct Remembered {
    generation: u64,
    principals: HashMap<[u8; 32], Arc<Principal>>,
}

#[derive(Clone, Copy)]
struct Throttle {
    failures: u32,
    next_slot: Instant,
}

/// The users and API keys.
pub struct Directory {
    store: Arc<Store>,
    state: RwLock<State>,
    /// Serializes changes, so each is recorded and applied in log order.
    changing: tokio::sync::Mutex<()>,
    remembered: Mutex<Remembered>,
    digest_key: [u8; 32],
    throttles: Mutex<HashMap<Box<str>, Throttle>>,
    hashing: Semaphore,
}

/// Verified when the user is unknown, so that an unknown name costs what a
/// wrong password does. Made at the first unknown name, not at every start
/// (a server with authentication off never needs it).
static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Directory {
    /// Reads the users and keys from the log.
    pub async fn open(store: Arc<Store>) -> Result<Arc<Directory>, DirectoryError> {
        let events = match store
            .read_stream(USERS_STREAM, Direction::Forwards, ReadFrom::Start, 0)
            .await
        {
            Ok(r) => r.collect_all().await?,
            Err(ReadError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut state = State::default();
        for e in &events {
            let body: Value =
                serde_json::from_slice(&e.data).map_err(|err| DirectoryError::Corrupt {
                    position: e.position,
                    why: err.to_string(),
                })?;
            state
                .apply(&e.event_type, &body)
                .map_err(|why| DirectoryError::Corrupt {
                    position: e.position,
                    why,
                })?;
        }
        let mut digest_key = [0u8; 32];
        OsRng.fill_bytes(&mut digest_key);
        Ok(Arc::new(Directory {
            store,
            state: RwLock::new(state),
            changing: tokio::sync::Mutex::new(()),
            remembered: Mutex::new(Remembered::default()),
            digest_key,
            throttles: Mutex::new(HashMap::new()),
            hashing: Semaphore::new(HASHING),
        }))
    }

    /// Whether no user exists.
    pub fn is_empty(&self) -> bool {
        self.read_state().users.is_empty()
    }

    /// Creates `admin` with `password` if no user exists yet.
    pub async fn bootstrap_admin(&self, password: &str) -> Result<bool, DirectoryError> {
        let _turn = self.changing.lock().await;
        if !self.is_empty() {
            return Ok(false);
        }
        self.create_locked("admin", password, &[Role::Admin])
            .await?;
        Ok(true)
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    // ---- authentication ------------------------------------------------

    /// The user `user` if `password` is theirs.
    pub async fn check_password(&self, user: &str, password: &str) -> Option<Arc<Principal>> {
        let digest = self.digest(&[b"basic", user.as_bytes(), password.as_bytes()]);
        let stored = |s: &State| s.users.get(user).map(|u| u.hash.clone());
        self.check(digest, user, password.as_bytes(), stored, |s| {
            s.users.contains_key(user).then(|| user.to_owned())
        })
        .await
    }

    /// The user an API key authenticates as, if it is valid.
    pub async fn check_api_key(&self, key: &str) -> Option<Arc<Principal>> {
        let digest = self.digest(&[b"key", key.as_bytes()]);
        let (id, secret) = split_key(key)?;
        self.check(
            digest,
            &format!("{KEY_PREFIX}{id}"),
            secret.as_bytes(),
            |s| s.keys.get(id).map(|k| k.hash.clone()),
            |s| s.keys.get(id).map(|k| k.user.clone()),
        )
        .await
    }

    /// The user of a verified client certificate's common name.
    pub fn certificate_user(&self, name: &str) -> Option<Arc<Principal>> {
        self.read_state().principal(name)
    }

    async fn check(
        &self,
        digest: [u8; 32],
        throttle_name: &str,
        secret: &[u8],
        stored: impl Fn(&State) -> Option<String>,
        user_of: impl Fn(&State) -> Option<String>,
    ) -> Option<Arc<Principal>> {
        if let Some(p) = self.remembered().principals.get(&digest) {
            return Some(p.clone());
        }
        self.wait_turn(throttle_name).await;
        let generation = self.remembered().generation;
        let hash = stored(&self.read_state());
        let known = hash.is_some();
        let secret = secret.to_vec();
        let matched = {
            let _permit = self.hashing.acquire().await.ok()?;
            tokio::task::spawn_blocking(move || {
                let decoy = || {
                    DECOY
                        .get_or_init(|| hash_secret(b"not a password of anyone"))
                        .as_str()
                };
                verify_secret(hash.as_deref().unwrap_or_else(decoy), &secret)
            })
            .await
            .unwrap_or(false)
        };
        let principal = (known && matched)
            .then(|| {
                let state = self.read_state();
                user_of(&state).and_then(|u| state.principal(&u))
            })
            .flatten();
        match &principal {
            Some(p) => {
                self.forget_failures(throttle_name);
                let mut r = self.remembered();
                // A change since the hash was read: do not remember what
                // it may have made invalid.
                if r.generation == generation {
                    if r.principals.len() >= REMEMBERED {
                        r.principals.clear();
                    }
                    r.principals.insert(digest, p.clone());
                }
            }
            None => self.failed(throttle_name),
        }
        principal
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac =
            blake2::Blake2bMac::<blake2::digest::consts::U32>::new_from_slice(&self.digest_key)
                .expect("a 32-byte key fits BLAKE2b");
        for part in parts {
            // Lengths first, so that parts cannot run into one another.
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize_fixed().into()
    }

    async fn wait_turn(&self, name: &str) {
        let slot = {
            let mut throttles = self.throttles.lock().unwrap_or_else(|e| e.into_inner());
            match throttles.get_mut(name) {
                Some(t) if t.failures >= FREE_FAILURES => {
                    let slot = t.next_slot.max(Instant::now());
                    t.next_slot = slot + delay_after(t.failures);
                    Some(slot)
                }
                _ => None,
            }
        };
        if let Some(slot) = slot {
            tokio::time::sleep_until(slot).await;
        }
    }

    fn failed(&self, name: &str) {
        let mut throttles = self.throttles.lock().unwrap_or_else(|e| e.into_inner());
        if throttles.len() >= THROTTLED_NAMES && !throttles.contains_key(name) {
            throttles.clear();
        }
        let t = throttles.entry(name.into()).or_insert(Throttle {
            failures: 0,
            next_slot: Instant::now(),
        });
        t.failures = t.failures.saturating_add(1);
    }

    fn forget_failures(&self, name: &str) {
        self.throttles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    // ---- changes ---------------------------------------------------------

    /// Every user, ordered by name.
    pub fn list(&self) -> Vec<UserView> {
        self.read_state()
            .users
            .iter()
            .map(|(name, u)| UserView {
                user: name.clone(),
                roles: u.roles.clone(),
                api_keys: u.keys.keys().cloned().collect(),
                full_name: u.full_name.clone(),
                disabled: u.disabled,
            })
            .collect()
    }

    /// Creates a user.
    pub async fn create(
        &self,
        user: &str,
        password: &str,
        roles: &[Role],
    ) -> Result<(), DirectoryError> {
        let _turn = self.changing.lock().await;
        self.create_locked(user, password, roles).await
    }

    async fn create_locked(
        &self,
        user: &str,
        password: &str,
        roles: &[Role],
    ) -> Result<(), DirectoryError> {
        check_name("user name", user)?;
        check_password(password)?;
        if self.read_state().users.contains_key(user) {
            return Err(DirectoryError::AlreadyExists(format!(
                "user '{user}' exists already"
            )));
        }
        let hash = hash_blocking(password.as_bytes().to_vec()).await?;
        self.record(
            "$user-created",
            json!({ "user": user, "hash": hash, "roles": role_names(roles) }),
        )
        .await
    }

    /// Deletes a user and its keys.
    pub async fn delete(&self, user: &str) -> Result<(), DirectoryError> {
        let _turn = self.changing.lock().await;
        self.existing(user)?;
        self.keep_an_admin(user, &[])?;
        self.record("$user-deleted", json!({ "user": user })).await
    }

    /// Replaces a user's password.
    pub async fn set_password(&self, user: &str, password: &str) -> Result<(), DirectoryError> {
        check_password(password)?;
        let hash = hash_blocking(password.as_bytes().to_vec()).await?;
        let _turn = self.changing.lock().await;
        self.existing(user)?;
        self.record("$user-password", json!({ "user": user, "hash": hash }))
            .await
    }

    /// Replaces a user's roles.
    pub async fn set_roles(&self, user: &str, roles: &[Role]) -> Result<(), DirectoryError> {
        let _turn = self.changing.lock().await;
        self.existing(user)?;
        self.keep_an_admin(user, roles)?;
        self.record(
            "$user-roles",
            json!({ "user": user, "roles": role_names(roles) }),
        )
        .await
    }

    /// Sets a user's full name (shown by KurrentDB's `Users.Details`).
    pub async fn set_full_name(&self, user: &str, full_name: &str) -> Result<(), DirectoryError> {
        if full_name.len() > MAX_FULL_NAME || full_name.chars().any(char::is_control) {
            return Err(DirectoryError::InvalidArgument(format!(
                "a full name is at most {MAX_FULL_NAME} bytes without control characters"
            )));
        }
        let _turn = self.changing.lock().await;
        self.existing(user)?;
        self.record(
            "$user-details",
            json!({ "user": user, "full_name": full_name }),
        )
        .await
    }

    /// Disables a user (it authenticates in no way, from the next call on)
    /// or enables it again. The last enabled admin cannot be disabled.
    pub async fn set_disabled(&self, user: &str, disabled: bool) -> Result<(), DirectoryError> {
        let _turn = self.changing.lock().await;
        self.existing(user)?;
        if disabled {
            self.keep_an_admin(user, &[])?;
        }
        self.record(
            "$user-disabled",
            json!({ "user": user, "disabled": disabled }),
        )
        .await
    }

    /// Creates an API key; returns the key, which is kept nowhere.
    pub async fn create_api_key(&self, user: &str, name: &str) -> Result<String, DirectoryError> {
        check_name("key name", name)?;
        let mut id = [0u8; 8];
        OsRng.fill_bytes(&mut id);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let hash = hash_blocking(secret.as_bytes().to_vec()).await?;
        let _turn = self.changing.lock().await;
        if self.existing(user)?.keys.contains_key(name) {
            return Err(DirectoryError::AlreadyExists(format!(
                "user '{user}' has a key named '{name}' already"
            )));
        }
        self.record(
            "$api-key-created",
            json!({ "user": user, "name": name, "id": id, "hash": hash }),
        )
        .await?;
        Ok(format!("{KEY_PREFIX}{id}_{secret}"))
    }

    /// Revokes an API key.
    pub async fn revoke_api_key(&self, user: &str, name: &str) -> Result<(), DirectoryError> {
        let _turn = self.changing.lock().await;
        if !self.existing(user)?.keys.contains_key(name) {
            return Err(DirectoryError::NotFound(format!(
                "user '{user}' has no key named '{name}'"
            )));
        }
        self.record("$api-key-revoked", json!({ "user": user, "name": name }))
            .await
    }

    fn existing(&self, user: &str) -> Result<User, DirectoryError> {
        self.read_state()
            .users
            .get(user)
            .cloned()
            .ok_or_else(|| DirectoryError::NotFound(format!("no user '{user}'")))
    }

    /// Refuses a change that leaves `user` with `roles` (none: deleted)
    /// when it is the last admin.
    fn keep_an_admin(&self, user: &str, roles: &[Role]) -> Result<(), DirectoryError> {
        let state = self.read_state();
        let admins = state
            .users
            .iter()
            .filter(|(_, u)| u.roles.contains(&Role::Admin) && !u.disabled)
            .map(|(n, _)| n.as_str());
        let others = admins.filter(|n| *n != user).count();
        let was = state
            .users
            .get(user)
            .is_some_and(|u| u.roles.contains(&Role::Admin));
        if was && others == 0 && !roles.contains(&Role::Admin) {
            return Err(DirectoryError::FailedPrecondition(format!(
                "'{user}' is the last admin; make another user admin first"
            )));
        }
        Ok(())
    }

    /// Records a change in `$users` (durably) and applies it. The caller
    /// holds `changing`.
    async fn record(&self, event_type: &str, body: Value) -> Result<(), DirectoryError> {
        let req = AppendRequest {
            stream: USERS_STREAM.into(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                id: EventId::random(),
                event_type: event_type.into(),
                data: Bytes::from(body.to_string()),
                metadata: Bytes::new(),
                content_type: Some("application/json".into()),
            }],
        };
        self.store.append_system(req).await?;
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state
                .apply(event_type, &body)
                .map_err(DirectoryError::InvalidArgument)?;
        }
        let mut r = self.remembered();
        r.generation += 1;
        r.principals.clear();
        Ok(())
    }
}

impl State {
    fn principal(&self, user: &str) -> Option<Arc<Principal>> {
        let u = self.users.get(user).filter(|u| !u.disabled)?;
        Some(Arc::new(Principal {
            name: user.into(),
            level: u.roles.iter().copied().max(),
        }))
    }

    /// Applies one recorded change.
    fn apply(&mut self, event_type: &str, body: &Value) -> Result<(), String> {
        let field = |name: &str| -> Result<String, String> {
            body.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("{event_type} without '{name}'"))
        };
        let roles = || -> Result<Vec<Role>, String> {
            body.get("roles")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("{event_type} without 'roles'"))?
                .iter()
                .map(|r| {
                    r.as_str()
                        .and_then(Role::parse)
                        .ok_or_else(|| format!("unknown role {r}"))
                })
                .collect()
        };
        let user = field("user")?;
        match event_type {
            "$user-created" => {
                self.users.insert(
                    user,
                    User {
                        hash: field("hash")?,
                        roles: roles()?,
                        full_name: String::new(),
                        disabled: false,
                        keys: BTreeMap::new(),
                    },
                );
            }
            "$user-password" => {
                if let Some(u) = self.users.get_mut(&user) {
                    u.hash = field("hash")?;
                }
            }
            "$user-roles" => {
                let roles = roles()?;
                if let Some(u) = self.users.get_mut(&user) {
                    u.roles = roles;
                }
            }
            "$user-details" => {
                let full_name = field("full_name")?;
                if let Some(u) = self.users.get_mut(&user) {
                    u.full_name = full_name;
                }
            }
            "$user-disabled" => {
                let disabled = body
                    .get("disabled")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| format!("{event_type} without 'disabled'"))?;
                if let Some(u) = self.users.get_mut(&user) {
                    u.disabled = disabled;
                }
            }
            "$user-deleted" => {
                if let Some(u) = self.users.remove(&user) {
                    for id in u.keys.values() {
                        self.keys.remove(id);
                    }
                }
            }
            "$api-key-created" => {
                let (name, id, hash) = (field("name")?, field("id")?, field("hash")?);
                if let Some(u) = self.users.get_mut(&user) {
                    u.keys.insert(name, id.clone());
                    self.keys.insert(id, ApiKey { user, hash });
                }
            }
            "$api-key-revoked" => {
                let name = field("name")?;
                if let Some(id) = self.users.get_mut(&user).and_then(|u| u.keys.remove(&name)) {
                    self.keys.remove(&id);
                }
            }
            other => return Err(format!("unknown event type '{other}'")),
        }
        Ok(())
    }
}

/// The spacing of attempts after `failures` failures.
fn delay_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(FREE_FAILURES).min(16);
    (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

fn role_names(roles: &[Role]) -> Vec<&'static str> {
    roles.iter().map(|r| r.name()).collect()
}

/// `strata_<16 hex id>_<secret>` → (id, secret).
fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

fn check_name(what: &str, name: &str) -> Result<(), DirectoryError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(ok_char) {
        return Err(DirectoryError::InvalidArgument(format!(
            "{what} must be 1 to {MAX_NAME} bytes of letters, digits, '.', '_', '-' and '@'"
        )));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), DirectoryError> {
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(DirectoryError::InvalidArgument(format!(
            "a password must be {MIN_PASSWORD} to {MAX_PASSWORD} bytes"
        )));
    }
    Ok(())
}

/// An argon2id hash (default parameters: 19 MiB, 2 passes) of `secret`.
fn hash_secret(secret: &[u8]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret, &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

async fn hash_blocking(secret: Vec<u8>) -> Result<String, DirectoryError> {
    let hash = tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .map_err(|e| DirectoryError::InvalidArgument(e.to_string()))?;
    if hash.is_empty() {
        return Err(DirectoryError::InvalidArgument("hashing failed".into()));
    }
    Ok(hash)
}

/// Whether `secret` matches the PHC string `hash` (compared in constant
/// time by the argon2 crate).
fn verify_secret(hash: &str, secret: &[u8]) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(secret, &h).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_only_in_their_shape() {
        assert_eq!(
            split_key("strata_0123456789abcdef_s3cr3t"),
            Some(("0123456789abcdef", "s3cr3t"))
        );
        assert_eq!(split_key("strata_0123_s"), None);
        assert_eq!(split_key("other_0123456789abcdef_s"), None);
        assert_eq!(split_key("strata_0123456789abcdef_"), None);
    }

    #[test]
    fn delays_double_and_stop_at_the_cap() {
        assert_eq!(delay_after(FREE_FAILURES), FIRST_DELAY);
        assert_eq!(delay_after(FREE_FAILURES + 1), FIRST_DELAY * 2);
        assert_eq!(delay_after(1000), MAX_DELAY);
    }

    #[test]
    fn hashes_are_salted_and_verify() {
        let a = hash_secret(b"password one");
        let b = hash_secret(b"password one");
        assert_ne!(a, b, "same password, different salts");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_secret(&a, b"password one"));
        assert!(!verify_secret(&a, b"password two"));
        assert!(!verify_secret("not a hash", b"password one"));
    }
}
