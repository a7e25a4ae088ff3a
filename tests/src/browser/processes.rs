//! What `/proc` says about the browser's processes: which run in a process
//! group, and which name the browser's directory on their command line
//! (Chromium's crash handler leaves the group, but not the directory: its
//! database is under the browser's HOME).

use std::path::Path;

/// Whether a process of group `group` is still running (a zombie, dead and
/// waiting for its parent to reap it, does not count).
pub fn group_has_running_process(group: u32) -> bool {
    process_dirs().any(|dir| {
        read_state_and_group(&dir).is_some_and(|(state, pgrp)| pgrp == group && is_running(state))
    })
}

/// The process group of process `pid`, while it exists.
pub fn process_group(pid: u32) -> Option<u32> {
    read_state_and_group(Path::new(&format!("/proc/{pid}"))).map(|(_, group)| group)
}

/// The running processes whose command line mentions `dir`.
pub fn running_processes_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    process_dirs()
        .filter(|proc_dir| {
            std::fs::read(proc_dir.join("cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|window| window == needle))
        })
        .filter(|proc_dir| {
            read_state_and_group(proc_dir).is_some_and(|(state, _)| is_running(state))
        })
        .filter_map(|proc_dir| proc_dir.file_name()?.to_str()?.parse().ok())
        .collect()
}

fn process_dirs() -> impl Iterator<Item = std::path::PathBuf> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        })
        .map(|entry| entry.path())
}

/// Zombies (`Z`) and the dead (`X`) run no more.
fn is_running(state: char) -> bool {
    state != 'Z' && state != 'X'
}

fn read_state_and_group(proc_dir: &Path) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    state_and_group(&stat)
}

/// A process's state and process group from `/proc/PID/stat`: after the
/// command name (in parentheses, and which may hold anything), the fields
/// are state, parent pid, process group.
fn state_and_group(stat: &str) -> Option<(char, u32)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn reads_state_and_group_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (chrome (x) y) S 4200 4100 4100 0 -1 4194560";
        assert_eq!(state_and_group(stat), Some(('S', 4100)));
        assert_eq!(state_and_group("garbage"), None);
    }

    #[test]
    fn finds_a_group_of_its_own_and_a_process_naming_a_path_until_they_end() {
        // A shell in a new process group (its id is the shell's pid, in
        // whatever PID namespace this runs), naming a marker path as its $0.
        let marker = format!("/nonexistent/deployd-browser-test-{}", std::process::id());
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", &marker])
            .process_group(0)
            .spawn()
            .expect("sh");
        let pid = child.id();
        // The shell's command line is /proc's once it has started.
        let named = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            running_processes_naming(Path::new(&marker)) == [pid]
        });
        assert!(named, "{:?}", running_processes_naming(Path::new(&marker)));
        assert_eq!(process_group(pid), Some(pid));
        assert!(group_has_running_process(pid));
        assert!(
            running_processes_naming(Path::new("/nonexistent/no-process-names-this")).is_empty()
        );
        let group = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
        rustix::process::kill_process_group(group, rustix::process::Signal::KILL)
            .expect("kill the group");
        child.wait().expect("reaped");
        let gone = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            !group_has_running_process(pid)
        });
        assert!(gone, "the group still runs");
        assert!(running_processes_naming(Path::new(&marker)).is_empty());
    }
}
