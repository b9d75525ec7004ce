//! [`LiveNode`]: a `palisade run` in a temp dir for the end-to-end tests, killed if a test
//! drops it without stopping it (a failed assertion).

use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use serde_json::Value;

use crate::{palisade, sigterm, spawn_run, wait_for_line};

/// A running `palisade run` in a temp dir.
pub(crate) struct LiveNode {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
}

impl LiveNode {
    pub(crate) fn start(extra: &[&str]) -> LiveNode {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_run(dir.path(), extra);
        wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
        LiveNode { child, dir }
    }

    pub(crate) fn data(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `palisade --data-dir <dir> <args>`.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        palisade(self.data()).args(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "palisade {args:?} exited {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command with `--json` that must succeed; returns the parsed output.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("palisade {args:?}: not JSON ({e}):\n{text}"))
    }

    pub(crate) fn stop(mut self) {
        sigterm(&self.child);
        assert!(self.child.wait().unwrap().success());
    }
}

impl LiveNode {
    /// Stops the node and hands its data directory back (for a restart in the same place).
    pub(crate) fn stop_keeping_data(mut self) -> tempfile::TempDir {
        sigterm(&self.child);
        assert!(self.child.wait().unwrap().success());
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

/// A test that fails (panics) before it stops its node must not leave the daemon running.
impl Drop for LiveNode {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
