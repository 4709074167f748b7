//! Crash tier: `kill -9` of the real `strata` binary under concurrent load
//! (the harness and its checks: `crash_support/mod.rs`). kill -9 leaves
//! the page cache intact, so this tier shows that the engine never
//! acknowledges what it has not written and recovers every crash point; the
//! power-cut tier (`power_cut.rs`) shows that what it acknowledged was
//! synced.
//!
//! Settings (environment): `STRATA_CRASH_ROUNDS` (default 50),
//! `STRATA_CRASH_SEED` (default: from the clock; always printed, though the
//! kill timing makes a run only roughly reproducible),
//! `STRATA_CRASH_ROUNDS_PER_DIR` (default 25). `scripts/crash-long` runs
//! thousands of rounds on a release build.

mod crash_support;

use std::path::{Path, PathBuf};

use crash_support::{Disk, Tier};

/// kill -9 loses nothing on disk: the data directory is a plain one.
struct PageCacheSurvives;

impl Disk for PageCacheSurvives {
    fn fresh(&mut self, dir: &Path) -> PathBuf {
        dir.join("data")
    }
    fn after_kill(&mut self, _dir: &Path) {}
    fn retire(&mut self, _dir: &Path) {}
    fn summary(&self) -> String {
        "kill -9 only: the page cache kept every write".to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_kill_9() {
    let tier = Tier {
        name: "crash_kill9",
        env: "STRATA_CRASH",
        default_rounds: 50,
    };
    crash_support::run(tier, &mut PageCacheSurvives).await;
}

/// Deletes, tombstones and metadata changes, acknowledged, survive kill -9;
/// one in flight is all or nothing (`crash_support/lifecycle.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_lifecycle_changes_survive_kill_9() {
    let tier = Tier {
        name: "crash_kill9",
        env: "STRATA_CRASH",
        default_rounds: 20,
    };
    crash_support::lifecycle::run(tier, &mut PageCacheSurvives).await;
}

/// A consumer group under load: after kill -9 nothing before its durable
/// checkpoint comes again and nothing is lost (`crash_support/groups.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_survive_kill_9() {
    let tier = Tier {
        name: "crash_kill9",
        env: "STRATA_CRASH",
        default_rounds: 10,
    };
    crash_support::groups::run(tier, &mut PageCacheSurvives).await;
}

/// Users, passwords and API keys, acknowledged, survive kill -9; a change
/// in flight is made or not (`crash_support/users.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_keys_survive_kill_9() {
    let tier = Tier {
        name: "crash_kill9",
        env: "STRATA_CRASH",
        default_rounds: 8,
    };
    crash_support::users::run(tier, &mut PageCacheSurvives).await;
}
