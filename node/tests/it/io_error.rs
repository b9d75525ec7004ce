//! Issue 16, a real I/O error under a running node: its data directory is on an ext4
//! filesystem (a loop device) that the test shuts down with `EXT4_IOC_SHUTDOWN`, after which
//! every read and write of it fails with EIO, as on a disk that died. The node must stop with
//! exit code 74 (the store failed) rather than serve a half-failed store, within its shutdown
//! bound; once the filesystem is mounted again, it starts on the same data directory with
//! every record it acknowledged.
//!
//! Needs root (mount, losetup); `.ci/run` runs as root. Elsewhere the test says it is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::start_in;

/// `EXT4_IOC_SHUTDOWN` (`_IOR('X', 125, __u32)`, linux/fs/ext4/ext4.h) with
/// `EXT4_GOING_FLAGS_LOGFLUSH` (flush the journal, then shut down), from Python: the crate
/// forbids `unsafe`, and xfstests' `godown` is not packaged.
const SHUTDOWN_PY: &str = "import fcntl, os, struct, sys\n\
fd = os.open(sys.argv[1], os.O_RDONLY)\n\
fcntl.ioctl(fd, 0x8004587D, struct.pack('I', 1))\n";

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A 128 MiB ext4 filesystem on a loop device, mounted at a temp dir; unmounted and detached
/// on drop.
struct Ext4 {
    mount: tempfile::TempDir,
    _image_dir: tempfile::TempDir,
    image: PathBuf,
    mounted: bool,
}

impl Ext4 {
    fn new() -> Ext4 {
        let image_dir = tempfile::tempdir().unwrap();
        let image = image_dir.path().join("fs.img");
        std::fs::File::create(&image).unwrap().set_len(128 * 1024 * 1024).unwrap();
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        let mut fs =
            Ext4 { mount: tempfile::tempdir().unwrap(), _image_dir: image_dir, image, mounted: false };
        fs.mount();
        fs
    }

    fn mount(&mut self) {
        run("mount", &["-o", "loop", self.image.to_str().unwrap(), self.mount.path().to_str().unwrap()]);
        self.mounted = true;
    }

    fn unmount(&mut self) {
        run("umount", &[self.mount.path().to_str().unwrap()]);
        self.mounted = false;
    }

    fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Every later I/O on the filesystem fails with EIO.
    fn shut_down(&self) {
        run("python3", &["-c", SHUTDOWN_PY, self.path().to_str().unwrap()]);
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[test]
fn a_disk_that_fails_under_the_node_stops_it_with_exit_74_and_loses_nothing_acknowledged() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a loop device (.ci/run runs as root)");
        return;
    }
    let mut fs = Ext4::new();
    let config = "[store]\nmin_free_disk_bytes = 1048576\nwarn_free_disk_bytes = 2097152\nshutdown_timeout_secs = 10\n";
    let node = start_in(tempfile::tempdir_in(fs.path()).unwrap(), Some(config));
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let out = crate::submit_attestation(&node, &format!("pkg:cargo/io@1.0.{n}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        acknowledged.push(v["id"].as_str().unwrap().to_string());
    }

    fs.shut_down();
    // The next write meets EIO; nothing more may be acknowledged.
    let refused = crate::submit_attestation(&node, "pkg:cargo/io@2.0.0");
    assert!(!refused.status.success(), "a submission was acknowledged on a dead disk");
    let mut node = node;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the node still runs 30 s after its disk failed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(74), "the node must stop with exit code 74 (store failed)");

    // The disk comes back (mounted again, its journal replayed): the node starts on the same
    // data directory with every acknowledged record, and takes records again.
    let data = std::mem::replace(&mut node.dir, tempfile::tempdir().unwrap());
    drop(node);
    fs.unmount();
    fs.mount();
    // The test wrote the config without fsync: the shutdown may have lost it. Write it again.
    let node = start_in(data, Some(config));
    for id in &acknowledged {
        assert!(node.cli(&["records", "get", id]).status.success(), "acknowledged record {id} lost");
    }
    let again = crate::submit_attestation(&node, "pkg:cargo/io@3.0.0");
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    node.stop();
}
