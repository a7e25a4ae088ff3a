//! The switch lock: current NixOS's switch-to-configuration takes
//! `/run/nixos/switch-to-configuration.lock` with a non-blocking `flock`
//! and, while another switch holds it (`nixos-rebuild`,
//! `system.autoUpgrade`), exits at once with the errno status ("Could not
//! acquire lock"; nixpkgs `pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs`).
//! deployd waits for the lock to be free before it moves the profile or
//! starts a switch, so it never rolls back because of it.
//!
//! The lock is looked at, never taken: taking it, even for an instant,
//! could make a switch that starts in that instant fail. The kernel lists
//! every lock held in `/proc/locks`, by device and inode (only those of
//! processes in the reader's PID namespace: a switch run from another, which
//! the look misses, still makes deployd's switch exit 11 having done
//! nothing, and deployd then waits and tries again).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether a process holds an `flock` on the file at `lock` (none when the
/// file does not exist or the kernel's list cannot be read: the switch's
/// own status then tells).
pub fn is_held(lock: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(lock) else {
        return false;
    };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return false;
    };
    let file = file_id(metadata.dev(), metadata.ino());
    locks.lines().any(|line| holds_flock_on(line, &file))
}

/// How `/proc/locks` names a file: `MAJOR:MINOR:INODE`, the device numbers
/// in hexadecimal of at least two digits (`fs/locks.c`, `lock_get_status`).
fn file_id(dev: u64, inode: u64) -> String {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major:02x}:{minor:02x}:{inode}")
}

/// Whether a line of `/proc/locks` is a held (not a waiting, `->`) `FLOCK`
/// on `file`: `1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF`.
fn holds_flock_on(line: &str, file: &str) -> bool {
    let mut words = line.split_whitespace().skip(1);
    words.next() == Some("FLOCK") && words.nth(3) == Some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_proc_locks() {
        let file = "00:1a:5678";
        assert!(holds_flock_on(
            "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF",
            file
        ));
        assert!(!holds_flock_on(
            "1: -> FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF",
            file
        ));
        assert!(!holds_flock_on(
            "2: POSIX  ADVISORY  WRITE 1234 00:1a:5678 0 EOF",
            file
        ));
        assert!(!holds_flock_on(
            "3: FLOCK  ADVISORY  WRITE 1234 00:1a:56789 0 EOF",
            file
        ));
        assert_eq!(file_id(0x0801, 42), "08:01:42");
        assert_eq!(file_id(26, 7), "00:1a:7");
    }

    #[test]
    fn a_held_flock_is_seen_and_a_released_one_is_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("switch-to-configuration.lock");
        assert!(!is_held(&path), "no file, no lock");
        let file = std::fs::File::create(&path).expect("create");
        assert!(!is_held(&path));
        // Held by another process, as another switch would (itself, not a
        // child that would outlive it).
        let mut holder = std::process::Command::new("flock")
            .arg("--no-fork")
            .arg(&path)
            .args(["sleep", "30"])
            .spawn()
            .expect("flock");
        let seen = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            is_held(&path)
        });
        let _ = holder.kill();
        let _ = holder.wait();
        assert!(seen, "the held lock was not seen");
        assert!(!is_held(&path), "the lock is released with its holder");
        drop(file);
    }
}
