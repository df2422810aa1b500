//! What /proc says about a process: its parent, its state, its fds, its CPU time.
//! pause's tests, and the harness's e2e checks and benchmarks, all watch pause from
//! outside with these; the harness includes this file by path (it cannot depend on
//! a test directory), so there is one copy.

use std::fs;

/// `(state, ppid)` from /proc/PID/stat; `None` once the process is gone.
pub fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let mut fields = text[text.rfind(')')? + 2..].split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every process whose parent is `ppid`, with its state.
pub fn children_of(ppid: u32) -> Vec<(u32, char)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            state_and_parent(pid)
                .filter(|(_, parent)| *parent == ppid)
                .map(|(state, _)| (pid, state))
        })
        .collect()
}

/// True once the process has a signalfd open: pause opens it right after blocking its
/// signals, so from then on no catchable signal kills it.
pub fn has_signalfd(pid: u32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:[signalfd]"))
}

/// A field of /proc/PID/status, split on whitespace (e.g. `Uid:` → four ids).
pub fn status_field(pid: u32, name: &str) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_default()
}

/// The CPU time the kernel has charged to the process, user and system, in ns: the
/// first field of /proc/PID/schedstat. It counts the kernel's work on the process's
/// behalf (waitpid, signal delivery), and nothing another process does.
pub fn cpu_time_ns(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The children of `pid` as the kernel lists them (/proc/PID/task/PID/children): one
/// small read, where `children_of` scans every process on the machine.
pub fn kernel_children(pid: u32) -> Option<Vec<u32>> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    Some(
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

/// A `kB` field (`VmRSS:`, `Pss:`) of /proc/PID/`file`.
pub fn kb_field(pid: u32, file: &str, name: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
