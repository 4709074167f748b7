//! The users round of the crash tiers: with authentication on, an admin
//! creates users, changes their passwords and creates and revokes API keys
//! while the server is killed at random moments. After each restart:
//! - every acknowledged user exists, and authenticates with its last
//!   acknowledged password, or with the one whose change was in flight;
//! - an acknowledged key works, unless its revocation was in flight;
//! - an acknowledged revocation holds: the key is refused;
//! - an old password whose replacement was acknowledged is refused.

use super::*;
use strata_proto::v1::users_client::UsersClient;
use tonic::service::interceptor::InterceptedService;

const ADMIN_PASSWORD: &str = "crash-admin-password";
const USERS: usize = 3;
/// Every start: authentication on; the admin's password is ignored once a
/// user exists (it would recreate a lost admin, so that a loss shows as a
/// broken check rather than a refused start).
const ARGS: &[&str] = &["--auth", "required"];
const ENVS: &[(&str, &str)] = &[("STRATA_ADMIN_PASSWORD", ADMIN_PASSWORD)];

type Header = strata_client::AuthHeader;

fn basic(user: &str, password: &str) -> Header {
    let credentials = strata_client::Credentials::basic(user, password);
    Header::new(Some(&credentials)).expect("header")
}

fn bearer(key: &str) -> Header {
    Header::new(Some(&strata_client::Credentials::api_key(key))).expect("header")
}

async fn channel(addr: SocketAddr, h: Header) -> InterceptedService<Channel, Header> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    InterceptedService::new(channel, h)
}

/// Whether `h` authenticates (as a user whose role lets it read `Stats`:
/// every user here is `ops`).
async fn authenticates(addr: SocketAddr, h: Header) -> bool {
    let mut c = StreamsClient::new(channel(addr, h).await);
    match c.stats(v1::StatsRequest {}).await {
        Ok(_) => true,
        Err(e) if e.code() == tonic::Code::Unauthenticated => false,
        Err(e) => panic!("users: Stats failed otherwise: {e}"),
    }
}

/// What the model knows of one user.
#[derive(Clone, Debug, Default)]
struct Known {
    /// Created and acknowledged.
    exists: bool,
    /// The last acknowledged password.
    password: String,
    /// Replaced by an acknowledged change.
    old_passwords: Vec<String>,
    /// Acknowledged keys, not revoked.
    keys: Vec<(String, String)>,
    /// Keys whose revocation was acknowledged.
    revoked: Vec<String>,
}

/// A change whose answer the kill may have taken.
#[derive(Clone, Debug)]
enum InFlight {
    Create {
        user: usize,
        password: String,
    },
    Password {
        user: usize,
        password: String,
    },
    Key {
        user: usize,
    },
    Revoke {
        user: usize,
        name: String,
        key: String,
    },
}

/// Runs the rounds on one data directory; panics on the first violation.
pub async fn run(tier: Tier, disk: &mut dyn Disk) {
    let name = tier.name;
    let rounds = env_u64(&format!("{}_USER_ROUNDS", tier.env), tier.default_rounds).max(2);
    let seed = tier.seed();
    println!("{name} users: {rounds} rounds, {}_SEED={seed}", tier.env);
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = disk.fresh(tmp.path());
    let log = tmp.path().join("strata.log");
    let mut known = vec![Known::default(); USERS];
    let mut acknowledged = 0usize;
    let mut counter = 0u64;
    for round in 0..rounds {
        let (mut server, _) = start_server_with(&data, &log, 1 << 20, ARGS, ENVS).await;
        let addr = server.addr;
        check(addr, &mut known, name, round, &log).await;

        // Changes, one at a time, until the kill.
        let last = round + 1 == rounds;
        let model = Arc::new(std::sync::Mutex::new((
            known.clone(),
            None::<InFlight>,
            0usize,
        )));
        let stop = Arc::new(AtomicBool::new(false));
        let changer = {
            let (model, stop) = (model.clone(), stop.clone());
            let mut rng = Rng(rng.next());
            let start = counter;
            tokio::spawn(async move {
                let mut admin =
                    UsersClient::new(channel(addr, basic("admin", ADMIN_PASSWORD)).await);
                let mut n = start;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let user = rng.range(0, USERS as u64 - 1) as usize;
                    let k = model.lock().expect("model").0[user].clone();
                    let change = if !k.exists {
                        InFlight::Create {
                            user,
                            password: format!("password-{n}"),
                        }
                    } else if !k.keys.is_empty() && rng.chance(25) {
                        let (name, key) =
                            k.keys[rng.range(0, k.keys.len() as u64 - 1) as usize].clone();
                        InFlight::Revoke { user, name, key }
                    } else if rng.chance(50) {
                        InFlight::Key { user }
                    } else {
                        InFlight::Password {
                            user,
                            password: format!("password-{n}"),
                        }
                    };
                    model.lock().expect("model").1 = Some(change.clone());
                    let u = format!("user-{user}");
                    let done = match &change {
                        InFlight::Create { password, .. } => admin
                            .create(v1::CreateUserRequest {
                                user: u,
                                password: password.clone(),
                                roles: vec!["ops".into()],
                            })
                            .await
                            .map(|_| None),
                        InFlight::Password { password, .. } => admin
                            .set_password(v1::SetPasswordRequest {
                                user: u,
                                password: password.clone(),
                            })
                            .await
                            .map(|_| None),
                        InFlight::Key { .. } => admin
                            .create_api_key(v1::CreateApiKeyRequest {
                                user: u,
                                name: format!("key-{n}"),
                            })
                            .await
                            .map(|r| Some(r.into_inner().key)),
                        InFlight::Revoke { name, .. } => admin
                            .revoke_api_key(v1::RevokeApiKeyRequest {
                                user: u,
                                name: name.clone(),
                            })
                            .await
                            .map(|_| None),
                    };
                    let Ok(key) = done else { break };
                    let mut m = model.lock().expect("model");
                    let k = &mut m.0[user];
                    match change {
                        InFlight::Create { password, .. } => {
                            k.exists = true;
                            k.password = password;
                        }
                        InFlight::Password { password, .. } => {
                            let old = std::mem::replace(&mut k.password, password);
                            k.old_passwords.push(old);
                        }
                        InFlight::Key { .. } => {
                            k.keys.push((format!("key-{n}"), key.expect("a key")));
                        }
                        InFlight::Revoke { name, key, .. } => {
                            k.keys.retain(|(kn, _)| *kn != name);
                            k.revoked.push(key);
                        }
                    }
                    m.1 = None;
                    m.2 += 1;
                    if last && m.2 >= 6 {
                        break;
                    }
                }
                n
            })
        };
        if last {
            changer.await.expect("changer");
            let (k, _, done) = model.lock().expect("model").clone();
            known = k;
            acknowledged += done;
            stop_gracefully(&mut server, &log);
            let (server, _) = start_server_with(&data, &log, 1 << 20, ARGS, ENVS).await;
            check(server.addr, &mut known, name, round + 1, &log).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(100, 900))).await;
        kill9(&mut server);
        stop.store(true, Ordering::Release);
        counter = changer.await.expect("changer");
        let (k, in_flight, done) = model.lock().expect("model").clone();
        known = k;
        acknowledged += done;
        disk.after_kill(tmp.path());
        // What was in flight is settled by the next check.
        if let Some(change) = in_flight {
            settle(&mut known, change, &data, &log).await;
        }
    }
    disk.retire(tmp.path());
    println!(
        "{name} users summary: {rounds} rounds, {acknowledged} acknowledged user and key changes, all kept; {}",
        disk.summary()
    );
}

/// Learns, from a restarted server, whether the change in flight at the
/// kill was made; either is allowed. The server is stopped again after.
async fn settle(known: &mut [Known], change: InFlight, data: &Path, log: &Path) {
    let (mut server, _) = start_server_with(data, log, 1 << 20, ARGS, ENVS).await;
    let addr = server.addr;
    match change {
        InFlight::Create { user, password } => {
            if authenticates(addr, basic(&format!("user-{user}"), &password)).await {
                known[user].exists = true;
                known[user].password = password;
            }
        }
        InFlight::Password { user, password } => {
            if authenticates(addr, basic(&format!("user-{user}"), &password)).await {
                let old = std::mem::replace(&mut known[user].password, password);
                known[user].old_passwords.push(old);
            }
        }
        // A key in flight was never seen: nothing to check or remember.
        InFlight::Key { .. } => {}
        InFlight::Revoke { user, name, key } => {
            if !authenticates(addr, bearer(&key)).await {
                known[user].keys.retain(|(kn, _)| *kn != name);
                known[user].revoked.push(key);
            }
        }
    }
    stop_gracefully(&mut server, log);
}

/// Checks the server against the model.
async fn check(addr: SocketAddr, known: &mut [Known], name: &str, round: u64, log: &Path) {
    for (i, k) in known.iter().enumerate().filter(|(_, k)| k.exists) {
        let user = format!("user-{i}");
        assert!(
            authenticates(addr, basic(&user, &k.password)).await,
            "{name} users: round {round}: {user} lost its acknowledged password\n{}",
            log_tail(log)
        );
        if let Some(old) = k.old_passwords.last() {
            assert!(
                !authenticates(addr, basic(&user, old)).await,
                "{name} users: round {round}: {user}'s replaced password still works"
            );
        }
        for (key_name, key) in &k.keys {
            assert!(
                authenticates(addr, bearer(key)).await,
                "{name} users: round {round}: {user}'s acknowledged key {key_name} is refused"
            );
        }
        for key in k.revoked.iter().rev().take(2) {
            assert!(
                !authenticates(addr, bearer(key)).await,
                "{name} users: round {round}: a revoked key of {user} still works"
            );
        }
    }
}
