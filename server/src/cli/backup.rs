//! `strata backup --to DIR`: a consistent copy of a running server's store
//! into DIR, a data directory that `strata serve --data-dir DIR` opens.
//! Into a DIR that holds an earlier copy only what changed is sent. The
//! copy is complete when the command exits 0; every file and directory is
//! synced before that, and a stale `index/` in DIR is removed (the index
//! is rebuilt from the log at the first start).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::json;
use strata_proto::v1;
use strata_proto::v1::backup_chunk::Kind;

use super::{call_failed, print_line, CliError, Connection};
use strata_server::store::{lock_data_dir, segment_file_base, OpenError, TAIL_BYTES};

/// Arguments of `strata backup`.
#[derive(Clone, Debug, Args)]
pub struct BackupArgs {
    /// The copy's data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,

    #[command(flatten)]
    pub connection: Connection,
}

fn io_error(context: &'static str) -> impl FnOnce(io::Error) -> CliError {
    move |source| CliError::Io { context, source }
}

/// The segment files DIR holds, for the server to send only the rest.
fn have(log: &Path) -> Result<Vec<v1::BackupFile>, CliError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(log).map_err(io_error("listing the copy's log directory"))? {
        let entry = entry.map_err(io_error("listing the copy's log directory"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if segment_file_base(&name).is_none() {
            continue;
        }
        let file = File::open(entry.path()).map_err(io_error("opening a segment of the copy"))?;
        let size = file
            .metadata()
            .map_err(io_error("reading a segment of the copy"))?
            .len();
        let crc_of = |from: u64, len: u64| -> Result<u32, CliError> {
            let mut bytes = vec![0u8; len as usize];
            file.read_exact_at(&mut bytes, from)
                .map_err(io_error("reading a segment of the copy"))?;
            Ok(crc32fast::hash(&bytes))
        };
        let from = size.saturating_sub(TAIL_BYTES);
        out.push(v1::BackupFile {
            path: format!("log/{name}"),
            size,
            head_crc32: crc_of(0, size.min(TAIL_BYTES))?,
            tail_crc32: crc_of(from, size - from)?,
        });
    }
    Ok(out)
}

/// `DIR/log/<segment>` for a path the server sent; anything else is refused.
fn local_path(dir: &Path, path: &str) -> Result<PathBuf, CliError> {
    match path.strip_prefix("log/") {
        Some(name) if segment_file_base(name).is_some() => Ok(dir.join("log").join(name)),
        _ => Err(CliError::Failed(format!(
            "the server sent a file outside the log: {path:?}"
        ))),
    }
}

/// A file of the copy, for writing, created if missing, its bytes kept.
fn open_copy(path: &Path) -> Result<File, CliError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error("opening a file of the copy"))
}

fn sync_dir(path: &Path) -> Result<(), CliError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing a directory of the copy"))
}

/// Runs `strata backup`.
pub async fn run(args: BackupArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let dir = &args.to;
    // The copy's own lock: never write into a directory a server (or
    // another backup) has open.
    let _lock = lock_data_dir(dir).map_err(|e| match e {
        OpenError::Locked(_) => CliError::Usage(format!(
            "{} is in use by a running server or another backup; back up into a directory of its own",
            dir.display()
        )),
        other => CliError::Failed(format!("cannot use {}: {other}", dir.display())),
    })?;
    let log = dir.join("log");
    std::fs::create_dir_all(&log).map_err(io_error("creating the copy's directory"))?;
    let have = have(&log)?;
    let mut client = args
        .connection
        .operations()
        .await?
        .max_decoding_message_size(8 << 20);
    let status = call_failed("backup failed");
    let mut chunks = client
        .backup(v1::BackupRequest { have })
        .await
        .map_err(status)?
        .into_inner();
    let mut open: HashMap<String, File> = HashMap::new();
    loop {
        let Some(chunk) = chunks.message().await.map_err(status)? else {
            return Err(CliError::Failed(
                "the server ended the backup before it was complete; run it again".into(),
            ));
        };
        match chunk.kind {
            Some(Kind::Data(d)) => {
                let file = match open.get(&d.path) {
                    Some(f) => f,
                    None => {
                        let f = open_copy(&local_path(dir, &d.path)?)?;
                        &*open.entry(d.path.clone()).or_insert(f)
                    }
                };
                file.write_all_at(&d.data, d.offset)
                    .map_err(io_error("writing the copy"))?;
            }
            Some(Kind::End(e)) => {
                let file = match open.remove(&e.path) {
                    Some(f) => f,
                    None => open_copy(&local_path(dir, &e.path)?)?,
                };
                file.set_len(e.size)
                    .map_err(io_error("sizing a file of the copy"))?;
                file.sync_all()
                    .map_err(io_error("syncing a file of the copy"))?;
            }
            Some(Kind::Remove(path)) => match std::fs::remove_file(local_path(dir, &path)?) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing a file of the copy")(e)),
            },
            Some(Kind::Done(done)) => {
                // An index left by a server that ran on the copy describes
                // another log: the next start rebuilds it from this one.
                match std::fs::remove_dir_all(dir.join("index")) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("removing the copy's stale index")(e)),
                }
                sync_dir(&log)?;
                sync_dir(dir)?;
                let secs = started.elapsed().as_secs_f64();
                let line = if args.connection.json {
                    json!({
                        "to": dir.display().to_string(),
                        "head_position": done.head_position,
                        "files": done.files,
                        "bytes_sent": done.bytes_sent,
                        "seconds": secs,
                    })
                    .to_string()
                } else {
                    format!(
                        "backed up {} events ({} files, {:.1} MiB sent) to {} in {secs:.2} s",
                        done.head_position,
                        done.files,
                        done.bytes_sent as f64 / (1 << 20) as f64,
                        dir.display()
                    )
                };
                return print_line(&line);
            }
            None => return Err(CliError::Failed("the server sent an empty chunk".into())),
        }
    }
}
