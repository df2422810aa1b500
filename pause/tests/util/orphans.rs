//! The shell script that makes an orphan storm, the one copy: pause's reaping tests and
//! the bench (which includes this file by path) both run it inside PID 1's namespace.

/// `n` readers of the script's stdin as fd 3, each a fork of the shell (`read` is a
/// builtin, so 10,000 start fast), left behind by a shell that then exits: orphans of
/// PID 1, which all exit at once when the pipe's writer closes.
pub fn storm_script(n: usize) -> String {
    format!("exec 3<&0; i=0; while [ $i -lt {n} ]; do read x <&3 & i=$((i+1)); done")
}
