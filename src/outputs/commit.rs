//! All-or-nothing output: a set of files that land together or not at all.
//!
//! Each file is first written in full to a hidden temporary beside its target (same folder, so
//! same file system). The commit then, for each file, moves any earlier target aside and renames
//! the temporary into place. If any step fails, every step done is undone in reverse, so the
//! folder holds exactly what it held before. One lock covers staging and the commit; a SIGINT or
//! SIGTERM takes the same lock before it cleans up and exits, so a signal never lands in the
//! middle of a commit: it finds either the old files or the complete new set.
//!
//! A SIGKILL or a power cut during the commit's few renames cannot be caught. For those, the
//! commit first writes a journal (which targets it replaces, and which existed); the next run in
//! the same folder finds the journal of a process that no longer runs and rolls its commit back,
//! and removes such processes' temporaries.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::Result;

use crate::error::{error, ErrorKind};

/// Temporaries and backups carry this prefix, the process id and the target's name.
const PREFIX: &str = ".image-learner-";
const PARTIAL: &str = ".partial";
const PREVIOUS: &str = ".previous";
const JOURNAL: &str = "commit.journal";

/// What a signal needs to know: the temporaries to remove, and whether a set was committed.
struct Shared {
    temporaries: Vec<PathBuf>,
    committed: bool,
}

static STATE: Mutex<Shared> = Mutex::new(Shared { temporaries: Vec::new(), committed: false });

fn lock() -> MutexGuard<'static, Shared> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// One step of a commit, for the fault-injection hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Moving the earlier file of target `i` aside.
    Backup(usize),
    /// Renaming the new file of target `i` into place.
    Install(usize),
}

struct Staged {
    target: PathBuf,
    temporary: PathBuf,
    backup: PathBuf,
}

/// Files staged for one commit.
#[derive(Default)]
pub struct OutputSet {
    staged: Vec<Staged>,
}

impl OutputSet {
    pub fn new() -> OutputSet {
        OutputSet::default()
    }

    /// Writes `bytes` in full to a temporary beside `target`, synced to disk.
    pub fn stage(&mut self, target: &Path, bytes: &[u8]) -> Result<()> {
        self.stage_with(target, &mut |f| f.write_all(bytes))
    }

    /// Stages what `write` writes into the temporary beside `target`, for an output too large to
    /// hold in memory first.
    pub fn stage_with(&mut self, target: &Path, write: &mut dyn FnMut(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
        let dir = parent(target);
        let name = target
            .file_name()
            .ok_or_else(|| error(ErrorKind::Output, format!("the output path {} names no file", target.display())))?
            .to_string_lossy()
            .into_owned();
        if self.staged.iter().any(|s| super::resolved(&s.target) == super::resolved(target)) {
            return Err(error(ErrorKind::Internal, format!("{} staged twice", target.display())));
        }
        if !self.staged.iter().any(|s| parent(&s.target) == dir) {
            clean_stale(dir);
        }
        let pid = std::process::id();
        let temporary = dir.join(format!("{PREFIX}{pid}.{name}{PARTIAL}"));
        let backup = dir.join(format!("{PREFIX}{pid}.{name}{PREVIOUS}"));
        // Under the lock, so that a signal's clean-up never races a file being created.
        let mut shared = lock();
        shared.temporaries.push(temporary.clone());
        let created = std::fs::File::create(&temporary);
        // Written outside the lock: a long write must not hold up a signal's clean-up.
        drop(shared);
        let written = created.and_then(|mut f| {
            write(&mut f)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            lock().temporaries.retain(|t| *t != temporary);
            return Err(output_error(target, e));
        }
        self.staged.push(Staged { target: target.to_path_buf(), temporary, backup });
        Ok(())
    }

    /// Puts every staged file in place, or none of them.
    pub fn commit(self) -> Result<()> {
        let (fail_at, pause) = fault_hooks();
        let mut count = 0;
        self.commit_with(&mut |_| {
            count += 1;
            if let Some(ms) = pause {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            if Some(count) == fail_at {
                return Err(std::io::Error::other(format!("fault injected at commit step {count}")));
            }
            Ok(())
        })
    }

    /// `commit`, with `fault` called before every rename: an error it returns fails that step.
    pub fn commit_with(mut self, fault: &mut dyn FnMut(Step) -> std::io::Result<()>) -> Result<()> {
        let mut shared = lock();
        // Nothing moves unless every target can take a file.
        for s in &self.staged {
            if let Ok(meta) = std::fs::symlink_metadata(&s.target) {
                if !meta.is_file() {
                    let what = if meta.is_dir() { "a folder" } else { "something that is not a file" };
                    let e = error(ErrorKind::Output, format!(
                        "cannot write {}: {what} of that name is in the way; remove it or choose another output folder",
                        s.target.display()
                    ));
                    self.discard(&mut shared);
                    return Err(e);
                }
            }
        }
        let journals = match self.write_journals() {
            Ok(j) => j,
            Err(e) => {
                self.discard(&mut shared);
                return Err(e);
            }
        };
        let mut backed_up = Vec::new();
        let mut installed = Vec::new();
        let mut failure = None;
        for (i, s) in self.staged.iter().enumerate() {
            if s.target.exists() {
                if let Err(e) = fault(Step::Backup(i)).and_then(|_| std::fs::rename(&s.target, &s.backup)) {
                    failure = Some(output_error(&s.target, e));
                    break;
                }
                backed_up.push(i);
            }
            if let Err(e) = fault(Step::Install(i)).and_then(|_| std::fs::rename(&s.temporary, &s.target)) {
                failure = Some(output_error(&s.target, e));
                break;
            }
            installed.push(i);
        }
        if let Some(e) = failure {
            // Undo in reverse: new files back to their temporaries, earlier files back in place.
            for &i in installed.iter().rev() {
                let s = &self.staged[i];
                let _ = std::fs::rename(&s.target, &s.temporary);
            }
            for &i in backed_up.iter().rev() {
                let s = &self.staged[i];
                let _ = std::fs::rename(&s.backup, &s.target);
            }
            self.discard(&mut shared);
            remove_all(&journals);
            return Err(e);
        }
        for s in &self.staged {
            sync_dir(parent(&s.target));
        }
        remove_all(&journals);
        for s in &self.staged {
            let _ = std::fs::remove_file(&s.backup);
        }
        shared.temporaries.retain(|t| !self.staged.iter().any(|s| s.temporary == *t));
        shared.committed = true;
        self.staged.clear();
        Ok(())
    }

    /// One journal per folder: a line per target, `old` or `new` (whether it existed), then its
    /// file name. Synced before anything moves.
    fn write_journals(&self) -> Result<Vec<PathBuf>> {
        let mut by_dir: Vec<(PathBuf, String)> = Vec::new();
        for s in &self.staged {
            let dir = parent(&s.target).to_path_buf();
            let existed = if s.target.exists() { "old" } else { "new" };
            let line = format!("{existed} {}\n", s.target.file_name().unwrap_or_default().to_string_lossy());
            match by_dir.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, text)) => text.push_str(&line),
                None => by_dir.push((dir, line)),
            }
        }
        let mut written = Vec::new();
        for (dir, text) in by_dir {
            let path = dir.join(format!("{PREFIX}{}.{JOURNAL}", std::process::id()));
            let result = std::fs::File::create(&path).and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            });
            if let Err(e) = result {
                let _ = std::fs::remove_file(&path);
                remove_all(&written);
                return Err(output_error(&path, e));
            }
            sync_dir(&dir);
            written.push(path);
        }
        Ok(written)
    }

    fn discard(&mut self, shared: &mut Shared) {
        for s in self.staged.drain(..) {
            let _ = std::fs::remove_file(&s.temporary);
            shared.temporaries.retain(|t| *t != s.temporary);
        }
    }
}

impl Drop for OutputSet {
    /// A run that fails before committing leaves no temporary behind.
    fn drop(&mut self) {
        if !self.staged.is_empty() {
            let mut shared = lock();
            self.discard(&mut shared);
        }
    }
}

/// Test hooks: `IMAGE_LEARNER_FAULT_COMMIT_STEP=N` fails the commit's N-th rename (from 1);
/// `IMAGE_LEARNER_FAULT_COMMIT_PAUSE_MS=M` waits M ms before each, so that a test's signal can
/// land inside a commit.
fn fault_hooks() -> (Option<usize>, Option<u64>) {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    (var("IMAGE_LEARNER_FAULT_COMMIT_STEP").map(|v: u64| v as usize), var("IMAGE_LEARNER_FAULT_COMMIT_PAUSE_MS"))
}

/// For the signal handler: waits for a commit in progress to end, removes what is staged, and
/// says whether a set of outputs was committed. The lock stays held, so nothing commits after.
pub fn stop_for_signal() -> bool {
    let shared = lock();
    for t in &shared.temporaries {
        let _ = std::fs::remove_file(t);
    }
    let committed = shared.committed;
    std::mem::forget(shared);
    committed
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether process `pid` still runs.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    pid == std::process::id()
        || unsafe { libc::kill(pid as i32, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn remove_all(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

/// Rolls back the commit that process `pid` began in `dir` and did not finish (its journal is
/// there): each earlier output it moved aside goes back, and each output that did not exist
/// before is removed. Then the journal goes.
fn roll_back(dir: &Path, pid: u32) {
    let journal = dir.join(format!("{PREFIX}{pid}.{JOURNAL}"));
    let Ok(text) = std::fs::read_to_string(&journal) else { return };
    for line in text.lines() {
        let Some((existed, name)) = line.split_once(' ') else { continue };
        if name.is_empty() || name.contains('/') {
            continue;
        }
        let target = dir.join(name);
        let backup = dir.join(format!("{PREFIX}{pid}.{name}{PREVIOUS}"));
        if backup.exists() {
            let _ = std::fs::rename(&backup, &target);
        } else if existed == "new" {
            let _ = std::fs::remove_file(&target);
        }
    }
    sync_dir(dir);
    let _ = std::fs::remove_file(journal);
}

/// Removes in `dir` what runs that no longer exist left: a commit they began is rolled back
/// (their journal says how), then their temporaries and staging folders go. An earlier output
/// they had moved aside and not replaced is put back.
pub fn clean_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let entries: Vec<_> = entries.flatten().collect();
    for entry in &entries {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(PREFIX).and_then(|r| r.strip_suffix(&format!(".{JOURNAL}"))) else { continue };
        if let Ok(pid) = pid.parse::<u32>() {
            if !alive(pid) {
                roll_back(dir, pid);
            }
        }
    }
    for entry in entries {
        if !entry.path().exists() {
            continue;
        }
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(PREFIX) else { continue };
        // `<pid>.<name>.partial`, `<pid>.<name>.previous`, and the older `staging-<pid>` folders.
        let (pid, name) = match rest.strip_prefix("staging-") {
            Some(pid) => (pid, ""),
            None => rest.split_once('.').unwrap_or((rest, "")),
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if alive(pid) {
            continue;
        }
        let path = entry.path();
        if let Some(target) = name.strip_suffix(PREVIOUS) {
            let target = dir.join(target);
            if !target.exists() {
                let _ = std::fs::rename(&path, &target);
                continue;
            }
        }
        let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
}

pub fn output_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => " (the disk is full: free space or choose another --output-dir)",
        Some(libc::EACCES) | Some(libc::EROFS) | Some(libc::EPERM) => " (no permission: choose another --output-dir)",
        Some(libc::ENOENT) => " (its folder does not exist)",
        _ => "",
    };
    error(ErrorKind::Output, format!("cannot write {}: {e}{hint}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["a.csv", "b.zip", "c.html"];

    fn listing(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap_or_default()))
            .collect();
        v.sort();
        v
    }

    fn staged(dir: &Path, tag: &str) -> OutputSet {
        let mut set = OutputSet::new();
        for n in NAMES {
            set.stage(&dir.join(n), format!("{tag} {n}").as_bytes()).unwrap();
        }
        set
    }

    /// Every step of the commit failing in turn, over an empty folder and over a folder holding
    /// an earlier run's files: each time the folder is left exactly as it was.
    #[test]
    fn a_fault_at_any_step_leaves_the_folder_as_it_was() {
        for with_earlier in [false, true] {
            let steps = if with_earlier { 2 * NAMES.len() } else { NAMES.len() };
            for fail in 0..steps {
                let dir = tempfile::tempdir().unwrap();
                if with_earlier {
                    for n in NAMES {
                        std::fs::write(dir.path().join(n), format!("old {n}")).unwrap();
                    }
                }
                let before = listing(dir.path());
                let mut k = 0;
                let r = staged(dir.path(), "new").commit_with(&mut |_| {
                    k += 1;
                    if k == fail + 1 { Err(std::io::Error::other("injected")) } else { Ok(()) }
                });
                assert!(r.is_err(), "step {fail} fails");
                assert_eq!(crate::error::kind_of(&r.unwrap_err()), ErrorKind::Output);
                assert_eq!(listing(dir.path()), before, "fault at step {} of {steps}, earlier files: {with_earlier}", fail + 1);
            }
            // Without a fault every new file is in place and nothing else is left.
            let dir = tempfile::tempdir().unwrap();
            if with_earlier {
                std::fs::write(dir.path().join("a.csv"), "old").unwrap();
            }
            staged(dir.path(), "new").commit().unwrap();
            let want: Vec<_> = NAMES.iter().map(|n| (n.to_string(), format!("new {n}"))).collect();
            assert_eq!(listing(dir.path()), want);
        }
    }

    /// A process killed at any step of its commit (the commit stops there: nothing is undone),
    /// over a folder with one earlier output: the next run's clean-up restores the folder.
    #[test]
    fn a_commit_killed_at_any_step_is_rolled_back_by_the_next_run() {
        // Steps: backup a.csv, install a.csv, install b.zip, install c.html.
        for kill_at in 0..=4 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("a.csv"), "old a.csv").unwrap();
            let before = listing(dir.path());
            let set = staged(dir.path(), "new");
            let mut k = 0;
            let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                set.commit_with(&mut |_| {
                    k += 1;
                    if k == kill_at + 1 {
                        panic!("killed");
                    }
                    Ok(())
                })
            }));
            if kill_at == 4 {
                killed.unwrap().unwrap();
                let want: Vec<_> = NAMES.iter().map(|n| (n.to_string(), format!("new {n}"))).collect();
                assert_eq!(listing(dir.path()), want, "a finished commit leaves no journal to roll back");
                continue;
            }
            assert!(killed.is_err());
            assert!(listing(dir.path()).iter().any(|(n, _)| n.ends_with(".commit.journal")));
            roll_back(dir.path(), std::process::id());
            for (n, _) in listing(dir.path()) {
                if n.ends_with(PARTIAL) {
                    let _ = std::fs::remove_file(dir.path().join(n));
                }
            }
            assert_eq!(listing(dir.path()), before, "killed before step {}", kill_at + 1);
        }
    }

    #[test]
    fn a_folder_in_the_way_stops_the_commit_before_anything_moves() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "old").unwrap();
        std::fs::create_dir(dir.path().join("c.html")).unwrap();
        let before = listing(dir.path());
        let e = staged(dir.path(), "new").commit().unwrap_err();
        assert!(format!("{e}").contains("c.html: a folder of that name is in the way"), "{e}");
        assert_eq!(listing(dir.path()), before);
    }

    #[test]
    fn a_set_dropped_before_its_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(staged(dir.path(), "new"));
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn what_dead_runs_left_is_cleaned_and_a_moved_aside_output_restored() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // pid 0x7ffffffe is above Linux's pid limit: never a live process.
        let dead = 0x7fff_fffe_u32;
        std::fs::write(d.join(format!(".image-learner-{dead}.a.csv.partial")), "half").unwrap();
        std::fs::write(d.join(format!(".image-learner-{dead}.b.zip.previous")), "old b").unwrap();
        std::fs::write(d.join(format!(".image-learner-{dead}.c.html.previous")), "old c").unwrap();
        std::fs::write(d.join("c.html"), "new c").unwrap();
        std::fs::create_dir(d.join(format!(".image-learner-staging-{dead}"))).unwrap();
        let mine = d.join(format!(".image-learner-{}.x.partial", std::process::id()));
        std::fs::write(&mine, "mine").unwrap();
        std::fs::write(d.join(".hidden-of-the-user"), "keep").unwrap();
        clean_stale(d);
        let names: Vec<_> = listing(d).into_iter().collect();
        assert_eq!(
            names,
            vec![
                (".hidden-of-the-user".to_string(), "keep".to_string()),
                (format!(".image-learner-{}.x.partial", std::process::id()), "mine".to_string()),
                ("b.zip".to_string(), "old b".to_string()),
                ("c.html".to_string(), "new c".to_string()),
            ]
        );
    }
}
