//! README's test command where it cannot run: as a user, and without apt-get. Each
//! stops before doing anything, with one line that names what is missing and the
//! command that fixes it. These run the real `xtask` binary.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// uid/gid of `nobody`: tests run as root switch to it to be a user.
const NOBODY: u32 = 65534;

/// A directory that `nobody` can read, holding a copy of the xtask binary (the build
/// directory's parents may be closed to other users).
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        set_mode(&dir, 0o755);
        set_mode(&dir.join("bin"), 0o755);
        std::fs::copy(env!("CARGO_BIN_EXE_xtask"), dir.join("xtask")).unwrap();
        set_mode(&dir.join("xtask"), 0o755);
        Sandbox { dir }
    }

    /// The binary, with a clean environment whose PATH is only this sandbox's bin/.
    fn xtask(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.dir.join("xtask"));
        cmd.args(args)
            .env_clear()
            .env("PATH", self.dir.join("bin"))
            .env("HOME", &self.dir)
            .current_dir(&self.dir);
        cmd
    }

    /// A command named `name` in bin/ that does nothing.
    fn fake_command(&self, name: &str) {
        std::os::unix::fs::symlink("/bin/true", self.dir.join("bin").join(name)).unwrap();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Runs as a user: as `nobody` when the test runs as root, else as the caller.
fn as_user(mut cmd: Command) -> Command {
    if nix::unistd::geteuid().is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

/// The command fails with exactly one line on stderr, which is returned.
fn one_line_error(mut cmd: Command) -> String {
    let out = cmd.output().expect("running xtask");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "xtask succeeded: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn ci_as_a_user_says_it_needs_root() {
    let sandbox = Sandbox::new("user-ci");
    let line = one_line_error(as_user(sandbox.xtask(&["ci"])));
    assert!(line.contains("must run as root"), "{line}");
    assert!(line.contains("sudo"), "{line}");
}

#[test]
fn setup_as_a_user_names_the_packages_and_sudo_apt_get() {
    let sandbox = Sandbox::new("user-setup");
    // apt-get is there, the packages are not: a user is told the command to run.
    sandbox.fake_command("apt-get");
    if !std::fs::read_to_string("/etc/os-release").is_ok_and(|t| t.contains("debian")) {
        eprintln!("skip: not a Debian-like machine, where apt-get is no answer");
        return;
    }
    let line = one_line_error(as_user(sandbox.xtask(&["setup"])));
    assert!(
        line.contains("`sudo apt-get install qemu-user-static "),
        "{line}"
    );
    assert!(line.contains("protobuf-compiler"), "{line}");
}

#[test]
fn setup_without_apt_get_names_the_packages() {
    let sandbox = Sandbox::new("no-apt");
    // Root or not: with no apt-get on PATH, nothing can be installed here.
    let line = one_line_error(sandbox.xtask(&["setup"]));
    assert!(
        line.contains("this is no Debian or Ubuntu with apt-get"),
        "{line}"
    );
    assert!(line.contains("qemu-user-static, util-linux"), "{line}");
    assert!(
        line.contains("`apt-get install qemu-user-static "),
        "{line}"
    );
}
