//! `probe-disk`: what this machine's disk allows, with no server involved,
//! in the directory where the servers keep their data.
//!
//! 1. `fdatasync (preallocated)`: overwrite 4 KiB at a time, sequentially,
//!    in a 64 MiB file that was written and synced beforehand, and
//!    fdatasync after each write (the commit pattern of a preallocated log).
//! 2. `fdatasync (growing)`: append 4 KiB to a new file and fdatasync after
//!    each write (every sync also commits the file's new size).
//! 3. `seq write 4 MiB + fdatasync`: 4 MiB writes to a new file, each
//!    followed by fdatasync, wrapping at 1 GiB: the physical sequential
//!    bandwidth, the ceiling for append-batch.
//! 4. `seq read 4 MiB (cold)`: the file of (3) read back in 4 MiB reads
//!    after the page cache was dropped (root): the ceiling for cold reads.
//!
//! Each runs for `--duration`; latency is one write + fdatasync.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};
use crate::report::Row;
use crate::stats::Latency;

const SMALL: usize = 4096;
const PREALLOC: u64 = 64 << 20;
const LARGE: usize = 4 << 20;
const WRAP: u64 = 1 << 30;

/// Runs the three probes in `dir` (blocking I/O on a blocking thread).
pub async fn probe_disk(dir: &Path, duration: Duration) -> Result<Vec<Row>> {
    let dir = dir.join("probe-disk");
    let rows = tokio::task::spawn_blocking(move || -> Result<Vec<Row>> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| BenchError::io("creating the probe directory", &dir, e))?;
        let (written, seq_row) = sequential(&dir, duration)?;
        let rows = vec![
            preallocated(&dir, duration)?,
            growing(&dir, duration)?,
            seq_row,
            sequential_read(&dir, written, duration)?,
        ];
        let _ = std::fs::remove_dir_all(&dir);
        Ok(rows)
    })
    .await??;
    Ok(rows)
}

fn create(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| BenchError::io("creating a probe file", path, e))
}

/// Writes `len` bytes at `offset` then fdatasyncs; returns the time both took.
fn write_sync(file: &File, path: &Path, buf: &[u8], offset: u64) -> Result<u64> {
    let t = Instant::now();
    file.write_all_at(buf, offset)
        .map_err(|e| BenchError::io("writing a probe file", path, e))?;
    file.sync_data()
        .map_err(|e| BenchError::io("fdatasync of a probe file", path, e))?;
    Ok(t.elapsed().as_nanos() as u64)
}

fn probe_row(name: &str, bytes_per_op: usize, mut samples: Vec<u64>, elapsed: Duration) -> Row {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ops = samples.len() as f64;
    Row {
        system: "disk".into(),
        workload: name.into(),
        clients: 1,
        ops_per_s: ops / secs,
        events_per_s: 0.0,
        mib_per_s: ops * bytes_per_op as f64 / secs / (1 << 20) as f64,
        latency: Latency::from_nanos(&mut samples),
        seconds: secs,
        load_avg_1m: crate::procstat::load_avg_1m(),
        notes: format!("{} KiB per write+fdatasync", bytes_per_op / 1024),
        ..Row::default()
    }
}

fn preallocated(dir: &Path, duration: Duration) -> Result<Row> {
    let path = dir.join("prealloc");
    let mut file = create(&path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(PREALLOC >> 20) {
        file.write_all(&zeros)
            .map_err(|e| BenchError::io("preallocating a probe file", &path, e))?;
    }
    file.sync_all()
        .map_err(|e| BenchError::io("fsync of a probe file", &path, e))?;
    let buf = vec![0x5Au8; SMALL];
    let (mut samples, mut offset) = (Vec::new(), 0u64);
    let start = Instant::now();
    while start.elapsed() < duration {
        samples.push(write_sync(&file, &path, &buf, offset)?);
        offset = (offset + SMALL as u64) % PREALLOC;
    }
    Ok(probe_row(
        "fdatasync (preallocated)",
        SMALL,
        samples,
        start.elapsed(),
    ))
}

fn growing(dir: &Path, duration: Duration) -> Result<Row> {
    let path = dir.join("growing");
    let file = create(&path)?;
    let buf = vec![0x5Au8; SMALL];
    let (mut samples, mut offset) = (Vec::new(), 0u64);
    let start = Instant::now();
    while start.elapsed() < duration {
        samples.push(write_sync(&file, &path, &buf, offset)?);
        offset += SMALL as u64;
    }
    Ok(probe_row(
        "fdatasync (growing)",
        SMALL,
        samples,
        start.elapsed(),
    ))
}

/// Returns how far the file was written, with the row.
fn sequential(dir: &Path, duration: Duration) -> Result<(u64, Row)> {
    let path = dir.join("sequential");
    let file = create(&path)?;
    let buf = vec![0x5Au8; LARGE];
    let (mut samples, mut offset, mut written) = (Vec::new(), 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < duration {
        samples.push(write_sync(&file, &path, &buf, offset)?);
        offset = (offset + LARGE as u64) % WRAP;
        written = written.max(offset).max(if offset == 0 { WRAP } else { 0 });
    }
    let row = probe_row(
        "seq write 4 MiB + fdatasync",
        LARGE,
        samples,
        start.elapsed(),
    );
    Ok((written, row))
}

fn sequential_read(dir: &Path, written: u64, duration: Duration) -> Result<Row> {
    let path = dir.join("sequential");
    let file = File::open(&path).map_err(|e| BenchError::io("opening a probe file", &path, e))?;
    super::drop_page_cache_now()?;
    let mut buf = vec![0u8; LARGE];
    let (mut samples, mut offset) = (Vec::new(), 0u64);
    let start = Instant::now();
    while start.elapsed() < duration && offset + LARGE as u64 <= written {
        let t = Instant::now();
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| BenchError::io("reading a probe file", &path, e))?;
        samples.push(t.elapsed().as_nanos() as u64);
        offset += LARGE as u64;
    }
    let mut row = probe_row("seq read 4 MiB (cold)", LARGE, samples, start.elapsed());
    row.notes = format!("{} KiB per read, page cache dropped first", LARGE / 1024);
    Ok(row)
}
