//! CPU time and peak memory of a server process tree, from `/proc`.
//!
//! CPU is `utime + stime` of the root and every live descendant, plus the
//! root's `cutime + cstime` (children that exited and were reaped, such as
//! PostgreSQL backends of closed connections). Peak memory is the sum of
//! `VmHWM` over the tree: an upper bound of the tree's true peak, exact for
//! a single process. Before each measured window the driver writes `5` to
//! `/proc/<pid>/clear_refs` of each process so `VmHWM` covers that window only
//! (possible because the driver owns, or runs as root beside, the server).
//!
//! The driver's own CPU is [`self_cpu`]: `utime + stime` of this process
//! alone (all its threads), never its children. The server the driver
//! spawned is one of those children, so a tree reading of the driver would
//! count the server twice.

use std::time::Instant;

/// A reading of a process tree's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct CpuReading {
    ticks: u64,
    at: Instant,
}

/// Clock ticks per second, as `getconf CLK_TCK` reports it (100 on Linux).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The fields of `/proc/<pid>/stat` after the command name, 0-based from `state`.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .skip(1) // state
            .map(|f| f.parse::<i64>().map(|v| v.max(0) as u64).unwrap_or(0))
            .collect(),
    )
}

/// `pid` and its live descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let children = task.path().join("children");
                if let Ok(text) = std::fs::read_to_string(children) {
                    out.extend(
                        text.split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
        i += 1;
    }
    out
}

/// CPU time of the tree rooted at `pid` now.
pub fn cpu(pid: u32) -> CpuReading {
    let mut ticks = 0;
    for (i, p) in tree(pid).into_iter().enumerate() {
        if let Some(f) = stat_fields(p) {
            // After `state`: ppid pgrp session tty tpgid flags minflt cminflt
            // majflt cmajflt utime(10) stime(11) cutime(12) cstime(13).
            ticks += f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
            if i == 0 {
                ticks += f.get(12).copied().unwrap_or(0) + f.get(13).copied().unwrap_or(0);
            }
        }
    }
    CpuReading {
        ticks,
        at: Instant::now(),
    }
}

/// CPU time of this process alone: every thread's `utime + stime`, without
/// children (live or reaped), so a server the driver spawned is not counted.
pub fn self_cpu() -> CpuReading {
    let ticks = stat_fields(std::process::id())
        .map(|f| f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0))
        .unwrap_or(0);
    CpuReading {
        ticks,
        at: Instant::now(),
    }
}

impl CpuReading {
    /// CPU used between `self` and `later`, in percent of one core.
    pub fn percent_until(&self, later: &CpuReading) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        100.0 * self.seconds_until(later) / wall
    }

    /// CPU seconds used between `self` and `later` (10 ms resolution).
    pub fn seconds_until(&self, later: &CpuReading) -> f64 {
        later.ticks.saturating_sub(self.ticks) as f64 / ticks_per_second()
    }
}

/// Resets the peak-RSS mark of every process in the tree (best effort).
pub fn reset_peak_rss(pid: u32) {
    for p in tree(pid) {
        let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
    }
}

/// Sum of `VmHWM` over the tree, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let mut kib = 0u64;
    for p in tree(pid) {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            if let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:")) {
                kib += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    kib as f64 / 1024.0
}

/// The 1-minute load average (first field of `/proc/loadavg`), if readable.
pub fn load_avg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds used so far by the process tree rooted at `pid`.
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu(pid).ticks as f64 / ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_cpu_excludes_children() {
        let me = std::process::id();
        // A child that burns CPU, reaped before the second reading.
        let before = self_cpu();
        let tree_before = cpu(me);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
            .status()
            .expect("sh runs");
        assert!(status.success());
        let after = self_cpu();
        let tree_after = cpu(me);
        let own = after.ticks.saturating_sub(before.ticks);
        let tree = tree_after.ticks.saturating_sub(tree_before.ticks);
        assert!(
            tree > own,
            "the reaped child's CPU is in the tree reading ({tree} ticks), not in self_cpu ({own})"
        );
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        let a = cpu(me);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = cpu(me);
        assert!(a.percent_until(&b) >= 0.0);
        assert!(peak_rss_mib(me) > 0.0);
        assert!(a.seconds_until(&b) >= 0.0);
        assert!(load_avg_1m().is_some_and(|l| l >= 0.0));
    }
}
