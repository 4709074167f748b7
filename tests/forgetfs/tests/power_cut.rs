//! The durability rules, through a real mount: file data needs the file's fsync, a name needs
//! its directory's fsync, and a rename is a name change like any other.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use common::{sync_dir, write_synced, Fixture};
use strata_forgetfs::Image;

#[test]
fn file_data_survives_only_if_fsynced() {
    let mut fx = Fixture::new(Image::empty());
    let stats = fx.stats();

    // "a": synced, then appended to and overwritten in place without a sync.
    write_synced(fx.path("a"), b"durable");
    let mut a = OpenOptions::new()
        .append(true)
        .open(fx.path("a"))
        .expect("open a");
    a.write_all(b" volatile").expect("append");
    drop(a);
    let a = OpenOptions::new()
        .write(true)
        .open(fx.path("a"))
        .expect("open a");
    a.write_all_at(b"DUR", 0).expect("overwrite");
    drop(a);
    // "b": its name is made durable but its data never synced.
    fs::write(fx.path("b"), b"never synced").expect("write b");
    // "c": fdatasync is enough for data.
    let c = fs::File::create(fx.path("c")).expect("create c");
    c.write_all_at(b"datasync", 0).expect("write c");
    c.sync_data().expect("fdatasync");
    drop(c);
    // "o": opened O_DSYNC: the kernel fsyncs after each write.
    let mut o = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DSYNC)
        .open(fx.path("o"))
        .expect("create o");
    o.write_all(b"o_dsync").expect("write o");
    drop(o);
    sync_dir(fx.path(""));
    assert_eq!(fs::read(fx.path("a")).expect("read a"), b"DURable volatile");

    let image = fx.cut_power();
    assert_eq!(image.file("a").as_deref(), Some(&b"durable"[..]));
    assert_eq!(
        image.file("b").as_deref(),
        Some(&b""[..]),
        "unsynced file is empty"
    );
    assert_eq!(image.file("c").as_deref(), Some(&b"datasync"[..]));
    assert_eq!(image.file("o").as_deref(), Some(&b"o_dsync"[..]));
    let s = stats.snapshot();
    println!("{s}");
    // " volatile" (9) + "DUR" (3) + "never synced" (12).
    assert_eq!(s.bytes_dropped, 9 + 3 + 12);
    assert_eq!(s.names_dropped, 0);
    assert_eq!(s.file_syncs, 3);
    assert!(s.dir_syncs >= 1);
    assert_eq!(s.bytes_written, 7 + 9 + 3 + 12 + 8 + 7);

    // The same through the filesystem after remounting what survived.
    fx.remount(image);
    assert_eq!(fs::read(fx.path("a")).expect("read a"), b"durable");
    assert_eq!(fs::metadata(fx.path("b")).expect("stat b").len(), 0);
}

#[test]
fn a_name_survives_only_if_its_directory_is_fsynced() {
    let mut fx = Fixture::new(Image::empty());
    write_synced(fx.path("f"), b"data");
    fs::create_dir(fx.path("d")).expect("mkdir");
    write_synced(fx.path("d/g"), b"nested");
    sync_dir(fx.path("d"));
    let stats = fx.stats();
    let image = fx.cut_power();
    assert!(!image.exists("f"), "file synced, directory not: {image:?}");
    assert!(!image.exists("d"), "d synced, its parent not: {image:?}");
    assert_eq!(stats.snapshot().names_dropped, 3);
    assert_eq!(stats.snapshot().bytes_dropped, 4 + 6);
    println!("{}", stats.snapshot());

    fx.remount(image);
    assert!(fs::read_dir(fx.path("")).expect("readdir").next().is_none());
    write_synced(fx.path("f"), b"data");
    fs::create_dir(fx.path("d")).expect("mkdir");
    write_synced(fx.path("d/g"), b"nested");
    sync_dir(fx.path("d"));
    sync_dir(fx.path(""));
    let image = fx.cut_power();
    assert_eq!(image.file("f").as_deref(), Some(&b"data"[..]));
    assert_eq!(image.file("d/g").as_deref(), Some(&b"nested"[..]));

    // A directory synced before its new entry was added keeps only what it had then.
    fx.remount(image);
    write_synced(fx.path("d/h"), b"late");
    sync_dir(fx.path(""));
    let image = fx.cut_power();
    assert!(image.exists("d/g") && !image.exists("d/h"), "{image:?}");
}

#[test]
fn rename_needs_a_directory_fsync() {
    let mut fx = Fixture::new(Image::empty());
    // A fully synced tmp file, renamed onto a new name, directory not synced.
    write_synced(fx.path("tmp"), b"contents");
    sync_dir(fx.path(""));
    fs::rename(fx.path("tmp"), fx.path("new")).expect("rename");
    assert!(fx.path("new").exists() && !fx.path("tmp").exists());
    let stats = fx.stats();
    let image = fx.cut_power();
    assert_eq!(image.file("tmp").as_deref(), Some(&b"contents"[..]));
    assert!(!image.exists("new"), "{image:?}");
    let s = stats.snapshot();
    assert_eq!(
        (s.names_dropped, s.names_resurrected, s.bytes_dropped),
        (1, 1, 0)
    );

    // Same with the directory synced after the rename.
    fx.remount(image);
    fs::rename(fx.path("tmp"), fx.path("new")).expect("rename");
    sync_dir(fx.path(""));
    let image = fx.cut_power();
    assert_eq!(image.paths(), vec![std::path::PathBuf::from("new")]);
    assert_eq!(image.file("new").as_deref(), Some(&b"contents"[..]));

    // Rename over an existing name: the old contents stay under it until the directory sync.
    fx.remount(image);
    write_synced(fx.path("new.tmp"), b"replacement");
    fs::rename(fx.path("new.tmp"), fx.path("new")).expect("rename over");
    assert_eq!(fs::read(fx.path("new")).expect("read"), b"replacement");
    let before_sync = fx.cut_power();
    assert_eq!(before_sync.file("new").as_deref(), Some(&b"contents"[..]));
    assert!(!before_sync.exists("new.tmp"), "new.tmp was never durable");
    fx.remount(before_sync);
    write_synced(fx.path("new.tmp"), b"replacement");
    fs::rename(fx.path("new.tmp"), fx.path("new")).expect("rename over");
    sync_dir(fx.path(""));
    let image = fx.cut_power();
    assert_eq!(image.file("new").as_deref(), Some(&b"replacement"[..]));
    assert_eq!(image.paths().len(), 1);
}

#[test]
fn clean_unmount_keeps_everything_and_big_synced_logs_are_cheap() {
    let mut fx = Fixture::new(Image::empty());
    fs::create_dir_all(fx.path("x/y")).expect("mkdir -p");
    fs::write(fx.path("x/y/z"), b"kept by a clean unmount").expect("write");
    // A 16 MiB log appended in 128 KiB pieces with an fsync after each: each fsync costs a
    // pointer per chunk, not a copy of the file.
    let mut log = fs::File::create(fx.path("log")).expect("create log");
    let piece: Vec<u8> = (0..128 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..128 {
        log.write_all(&piece).expect("append");
        log.sync_data().expect("fdatasync");
    }
    drop(log);
    sync_dir(fx.path(""));
    let durable = fx.cut_power();
    assert_eq!(durable.file("log").map(|l| l.len()), Some(16 << 20));
    // x was named in the root's sync; its own entries were never synced.
    assert!(durable.is_dir("x") && !durable.exists("x/y"), "{durable:?}");

    fx.remount(durable);
    fs::write(fx.path("unsynced"), b"kept too").expect("write");
    let clean = fx.unmount();
    assert_eq!(clean.file("unsynced").as_deref(), Some(&b"kept too"[..]));
    let log = clean.file("log").expect("log");
    assert!(log.chunks(piece.len()).all(|c| c == piece.as_slice()));
}
