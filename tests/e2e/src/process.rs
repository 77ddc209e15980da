//! A helper process the harness owns (Redis, the rate-limit service): its
//! own temp dir and log file, killed on drop, its log tail printed when the
//! thread is panicking (a failed test), and tracked in the same pid list as
//! the Envoys so [`crate::envoy::kill_envoys_on_panic`] kills it in a
//! `panic = "abort"` binary too.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::envoy::{file_tail, print_log_tail, running, temp_dir_for};

/// Lines of a helper's log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// A running child process with a log file in its own temp dir.
pub struct Process {
    name: String,
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl Process {
    /// A fresh temp dir for a process called `name` (`$TMPDIR/e2e-<name>-…`)
    /// and the path of its log file, `<dir>/<name>.log`, before spawning.
    pub fn prepare(name: &str) -> (PathBuf, PathBuf) {
        let dir = temp_dir_for(name);
        let log = dir.join(format!("{name}.log"));
        (dir, log)
    }

    /// Spawns `command` (whose stdio the caller has set up) and tracks it.
    ///
    /// # Panics
    ///
    /// If it cannot be spawned.
    pub fn spawn(name: &str, mut command: Command, dir: PathBuf, log: PathBuf) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({command:?}): {e}"));
        running().push(child.id());
        Self {
            name: name.to_owned(),
            child: Some(child),
            dir,
            log,
        }
    }

    /// The child, while it has not been stopped.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// The exit status if the process has exited by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Its pid (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills it (SIGKILL: a crash, not a clean shutdown, which is what a
    /// fault test wants) and waits for it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let _ = child.kill();
            let _ = child.wait();
            running().retain(|p| *p != pid);
        }
    }

    /// Whether it has not been stopped (it may still have exited by itself).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Its temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log, LOG_TAIL_LINES)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            print_log_tail(&self.name, &self.dir, &self.log_tail());
        }
        self.stop();
        if !failed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
