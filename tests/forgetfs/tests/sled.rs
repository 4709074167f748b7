//! The sled embedded database (0.34) on forgetfs: it must create and reopen its directory, and
//! flushed data must survive a clean unmount. What sled does after a power cut is printed, not
//! asserted.

mod common;

use common::{sync_dir, Fixture};
use strata_forgetfs::Image;

fn open(path: &std::path::Path) -> sled::Result<sled::Db> {
    // No background flusher: only explicit flushes make data durable, so the test decides.
    sled::Config::new().path(path).flush_every_ms(None).open()
}

#[test]
fn sled_reopens_after_a_clean_unmount() {
    let mut fx = Fixture::new(Image::empty());
    let db = open(&fx.path("db")).expect("sled opens on forgetfs");
    db.insert(b"key", b"value".as_slice()).expect("insert");
    db.flush().expect("flush");
    drop(db);
    let stats = fx.stats().snapshot();
    let image = fx.unmount();
    assert!(image.is_dir("db"), "{image:?}");
    println!("sled wrote {image:?}; {stats}");
    assert!(
        stats.file_syncs > 0,
        "sled's flush must reach forgetfs as fsync: {stats}"
    );

    fx.remount(image);
    let db = open(&fx.path("db")).expect("sled reopens");
    assert_eq!(db.get(b"key").expect("get").as_deref(), Some(&b"value"[..]));
    db.insert(b"second", b"write".as_slice())
        .expect("insert after reopen");
    db.flush().expect("flush");
    drop(db);
    let image = fx.unmount();
    fx.remount(image);
    let db = open(&fx.path("db")).expect("sled reopens twice");
    assert_eq!(
        db.get(b"second").expect("get").as_deref(),
        Some(&b"write"[..])
    );
}

/// One power-cut scenario: open sled, insert and `flush()` one key, insert another without a
/// flush, cut the power with the database still open, and report what reopening finds.
///
/// `sync_names`: the test itself fsyncs the mount root and the database directory after sled
/// created its files (sled 0.34 never fsyncs a directory). `flusher`: sled's periodic flusher
/// (which calls fsync) runs every 100 ms, and the test waits for it before the cut.
fn cut_scenario(sync_names: bool, flusher: bool) {
    let mut fx = Fixture::new(Image::empty());
    let path = fx.path("db");
    let mut config = sled::Config::new().path(&path);
    config = config.flush_every_ms(if flusher { Some(100) } else { None });
    let db = config.open().expect("sled opens on forgetfs");
    if sync_names {
        sync_dir(&path);
        sync_dir(fx.path(""));
    }
    db.insert(b"flushed", b"1".as_slice()).expect("insert");
    db.flush().expect("flush");
    if flusher {
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    db.insert(b"unflushed", b"2".as_slice()).expect("insert");
    let stats = fx.stats();
    // The power goes while sled still has the database open.
    let image = fx.cut_power();
    let label = format!("sync_names={sync_names} flusher={flusher}");
    println!("[{label}] at the cut: {}", stats.snapshot());
    println!("[{label}] durable image: {image:?}");
    drop(db);

    fx.remount(image);
    match open(&path) {
        Ok(db) => {
            let flushed = db.get(b"flushed").map(|v| v.is_some());
            let unflushed = db.get(b"unflushed").map(|v| v.is_some());
            println!(
                "[{label}] sled after the power cut opens; flushed key present: {flushed:?}; \
                 unflushed key present: {unflushed:?}"
            );
        }
        Err(e) => println!("[{label}] sled after the power cut fails to open: {e}"),
    }
}

#[test]
fn sled_after_a_power_cut_is_reported() {
    cut_scenario(false, false);
    cut_scenario(true, false);
    cut_scenario(true, true);
}
