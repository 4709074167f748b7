//! What a database server needs from the filesystem besides durability: locks, fallocate,
//! truncation, sparse writes, hard links, errors; and a process killed mid-run.

mod common;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;

use common::{sync_dir, write_synced, Fixture};
use strata_forgetfs::Image;

#[test]
fn flock_is_exclusive_across_open_files() {
    let fx = Fixture::new(Image::empty());
    write_synced(fx.path("LOCK"), b"");
    let first = File::open(fx.path("LOCK")).expect("open");
    let second = OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.path("LOCK"))
        .expect("open");
    first.try_lock().expect("first lock");
    assert!(matches!(second.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(
        second.try_lock_shared(),
        Err(TryLockError::WouldBlock)
    ));
    first.unlock().expect("unlock");
    second.try_lock().expect("second lock after unlock");
    drop(second);
    first
        .try_lock_shared()
        .expect("lock after the holder closed");
}

fn fallocate(args: &[&str]) -> bool {
    let status = Command::new("fallocate")
        .args(args)
        .status()
        .unwrap_or_else(|e| {
            panic!("the fallocate tool (util-linux) is needed for this test and did not run: {e}")
        });
    status.success()
}

#[test]
fn fallocate_extends_with_zeros_and_set_len_truncates() {
    let mut fx = Fixture::new(Image::empty());
    let path = fx.path("f");
    let p = path.to_str().expect("utf-8 path");
    write_synced(&path, b"abc");

    // fallocate(2) mode 0 through the FUSE fallocate request.
    assert!(fallocate(&["-l", "8192", p]), "fallocate mode 0");
    let bytes = fs::read(&path).expect("read");
    assert_eq!(bytes.len(), 8192);
    assert_eq!(&bytes[..3], b"abc");
    assert!(bytes[3..].iter().all(|&b| b == 0));
    assert!(
        fallocate(&["-o", "10000", "-l", "100", p]),
        "fallocate past the end"
    );
    assert_eq!(fs::metadata(&path).expect("stat").len(), 10100);
    assert!(
        fallocate(&["-n", "-l", "1000000", p]),
        "FALLOC_FL_KEEP_SIZE"
    );
    assert_eq!(fs::metadata(&path).expect("stat").len(), 10100);
    assert!(
        !fallocate(&["-p", "-o", "0", "-l", "2", p]),
        "punch hole is not supported"
    );
    assert_eq!(&fs::read(&path).expect("read")[..3], b"abc");

    // ftruncate (FUSE setattr size) both ways, and pwrite past the end.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    f.set_len(2).expect("shrink");
    f.set_len(5).expect("grow");
    assert_eq!(fs::read(&path).expect("read"), b"ab\0\0\0");
    f.write_all_at(b"Z", 100).expect("pwrite past end");
    let bytes = fs::read(&path).expect("read");
    assert_eq!(bytes.len(), 101);
    assert_eq!(&bytes[..2], b"ab");
    assert!(bytes[2..100].iter().all(|&b| b == 0));
    assert_eq!(bytes[100], b'Z');
    f.sync_all().expect("fsync");
    sync_dir(fx.path(""));
    // An unsynced extension is lost with the power. (Not with the fallocate tool: it fsyncs.)
    f.set_len(4096).expect("grow");
    drop(f);
    let image = fx.cut_power();
    assert_eq!(image.file("f").map(|b| b.len()), Some(101));
    // O_TRUNC goes through setattr too.
    fx.remount(image);
    File::create(&path).expect("open with O_TRUNC");
    assert_eq!(fs::metadata(&path).expect("stat").len(), 0);
}

#[test]
fn directories_links_and_errors() {
    let mut fx = Fixture::new(Image::empty());
    fs::create_dir(fx.path("d")).expect("mkdir");
    write_synced(fx.path("d/f"), b"one inode");
    let err = fs::remove_dir(fx.path("d")).expect_err("rmdir of a non-empty directory");
    assert_eq!(err.kind(), ErrorKind::DirectoryNotEmpty);
    assert_eq!(
        fs::create_dir(fx.path("d"))
            .expect_err("mkdir twice")
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        fs::read(fx.path("nope")).expect_err("missing").kind(),
        ErrorKind::NotFound
    );

    fs::hard_link(fx.path("d/f"), fx.path("g")).expect("link");
    let (m1, m2) = (
        fs::metadata(fx.path("d/f")).expect("stat"),
        fs::metadata(fx.path("g")).expect("stat"),
    );
    assert_eq!(m1.ino(), m2.ino());
    assert_eq!(m1.nlink(), 2);

    let mut names: Vec<_> = fs::read_dir(fx.path(""))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(names, ["d", "g"]);
    assert!(fs::metadata(fx.path("d")).expect("stat").is_dir());

    fs::set_permissions(
        fx.path("g"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    assert_eq!(
        fs::metadata(fx.path("d/f")).expect("stat").mode() & 0o777,
        0o600
    );

    sync_dir(fx.path("d"));
    sync_dir(fx.path(""));
    let image = fx.cut_power();
    fx.remount(image);
    let (m1, m2) = (
        fs::metadata(fx.path("d/f")).expect("stat"),
        fs::metadata(fx.path("g")).expect("stat"),
    );
    assert_eq!(
        m1.ino(),
        m2.ino(),
        "hard links keep one identity across a power cut"
    );
    fs::write(fx.path("g"), b"changed").expect("write through one name");
    assert_eq!(fs::read(fx.path("d/f")).expect("read"), b"changed");

    fs::remove_file(fx.path("g")).expect("unlink");
    fs::remove_file(fx.path("d/f")).expect("unlink");
    fs::remove_dir(fx.path("d")).expect("rmdir");
    // Not synced: everything comes back from the durable state.
    let image = fx.cut_power();
    assert_eq!(image.file("g").as_deref(), Some(&b"one inode"[..]));
    assert!(image.exists("d/f"));
}

#[test]
fn a_killed_process_leaves_its_writes_for_a_clean_unmount_but_not_a_power_cut() {
    let mut fx = Fixture::new(Image::empty());
    let path = fx.path("out");
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"printf 'written before SIGKILL' > "$1"; kill -9 $$"#)
        .arg("sh")
        .arg(&path)
        .status()
        .expect("run sh");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let mut s = String::new();
    File::open(&path)
        .expect("open")
        .read_to_string(&mut s)
        .expect("read");
    assert_eq!(s, "written before SIGKILL");
    sync_dir(fx.path(""));
    assert_eq!(fx.durable_image().file("out").as_deref(), Some(&b""[..]));
    let clean = fx.unmount();
    assert_eq!(
        clean.file("out").as_deref(),
        Some(&b"written before SIGKILL"[..])
    );
}

#[test]
fn power_cut_with_files_still_open_detaches_and_fails_them() {
    let mut fx = Fixture::new(Image::empty());
    let mut f = File::create(fx.path("open")).expect("create");
    f.write_all(b"synced").expect("write");
    f.sync_all().expect("fsync");
    sync_dir(fx.path(""));
    f.write_all(b" lost").expect("write");
    let dir = File::open(fx.path("")).expect("open the root");
    let image = fx.cut_power();
    assert_eq!(image.file("open").as_deref(), Some(&b"synced"[..]));
    // The process still holds files on the dead disk: every use fails.
    let err = f.write_all(b"after the cut").and_then(|()| f.sync_all());
    assert!(err.is_err(), "a write or fsync after the cut must fail");
    assert!(
        dir.sync_all().is_err(),
        "fsync of the directory after the cut must fail"
    );
    drop((f, dir));
    // The mountpoint is free again at once.
    fx.remount(image);
    assert_eq!(fs::read(fx.path("open")).expect("read"), b"synced");
}

#[test]
fn mount_is_listed_as_forgetfs_and_statfs_reports_free_space() {
    let fx = Fixture::new(Image::empty());
    let root = fx.path("");
    let root = root.to_str().expect("utf-8 path").trim_end_matches('/');
    let mounts = fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(root))
        .unwrap_or_else(|| panic!("{root} not in /proc/mounts:\n{mounts}"));
    assert!(
        line.starts_with("forgetfs ") && line.contains(" fuse.forgetfs "),
        "{line}"
    );

    let out = Command::new("stat")
        .args(["-f", "--format=%S %a", root])
        .output()
        .expect("run stat -f");
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().expect("number"))
        .collect();
    assert_eq!(nums.len(), 2, "stat -f printed {text:?}");
    assert!(
        nums[0] * nums[1] >= 1 << 39,
        "free space {} bytes",
        nums[0] * nums[1]
    );
}
