//! `[log] file`: logs to a file that rotates by size (`max_file_bytes`), keeping
//! `max_files` older files (`palisade.log.1` newest … `palisade.log.N` oldest), so a node's
//! logs never fill its disk. Each event is written whole (one write under a lock).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A size-rotated log file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    state: Mutex<(File, u64)>,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile { path: path.to_path_buf(), max_bytes, keep, state: Mutex::new((file, size)) })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts `path.1 … path.(keep-1)` up by one (the oldest falls off), moves `path` to
    /// `path.1` and starts a new `path`.
    fn rotate(&self, state: &mut (File, u64)) -> io::Result<()> {
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        *state = (open_append(&self.path)?, 0);
        Ok(())
    }
}

impl Write for &RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1 > 0 && state.1.saturating_add(buf.len() as u64) > self.max_bytes {
            self.rotate(&mut state)?;
        }
        state.0.write_all(buf)?;
        state.1 = state.1.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_only_max_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.log");
        let log = RotatingFile::open(&path, 1000, 3).unwrap();
        let line = [b'x'; 99];
        for i in 0..100u32 {
            let mut l = line.to_vec();
            l.extend_from_slice(format!("{i:03}\n").as_bytes());
            (&log).write_all(&l).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["palisade.log", "palisade.log.1", "palisade.log.2", "palisade.log.3"]);
        for name in &names {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len <= 1000, "{name}: {len} bytes");
        }
        // The newest lines are in the live file, the ones before in .1: nothing is reordered.
        let live = std::fs::read_to_string(&path).unwrap();
        assert!(live.ends_with("099\n"), "{live}");
        let previous = std::fs::read_to_string(dir.path().join("palisade.log.1")).unwrap();
        let last_prev: u32 = previous.lines().last().unwrap()[99..].parse().unwrap();
        let first_live: u32 = live.lines().next().unwrap()[99..].parse().unwrap();
        assert_eq!(last_prev + 1, first_live);
        // A reopen appends and keeps counting the size.
        drop(log);
        let log = RotatingFile::open(&path, 1000, 3).unwrap();
        (&log).write_all(&[b'y'; 990]).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= 1000);
    }
}
