//! The command line: upstream pause ignores every argument but the version flag.

/// True when `-v`, `-V` or `--version` appears anywhere among the arguments
/// (the program name excluded).
pub(crate) fn wants_version<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> bool {
    args.any(|arg| matches!(arg, b"-v" | b"-V" | b"--version"))
}

#[cfg(test)]
mod tests {
    use super::wants_version;

    fn args<'a>(list: &'a [&'a str]) -> impl Iterator<Item = &'a [u8]> {
        list.iter().map(|arg| arg.as_bytes())
    }

    #[test]
    fn version_flag_in_any_form_and_position() {
        for flag in ["-v", "-V", "--version"] {
            assert!(wants_version(args(&[flag])), "{flag} alone");
            assert!(wants_version(args(&["x", flag])), "{flag} last");
            assert!(wants_version(args(&[flag, "--other", "y"])), "{flag} first");
        }
    }

    #[test]
    fn other_arguments_are_ignored() {
        assert!(!wants_version(args(&[])));
        assert!(!wants_version(args(&[
            "-vv",
            "--versions",
            "v",
            "-x",
            "version"
        ])));
    }
}
