//! The softphone's command line (issue 15 point 7): `softphone --help` explains the program
//! rather than opening with the crate's description, each command's help lists only the options
//! that command takes, and every global option is still accepted by every command, before or
//! after its name (scripts rely on that).

use std::process::{Command, Output};

fn softphone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softphone")).args(args).output().expect("run softphone")
}

fn stdout_of(args: &[&str]) -> String {
    let out = softphone(args);
    assert!(out.status.success(), "softphone {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The long option names a help text lists (`--name` at the start of an option line).
fn options_in(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| l.trim_start().strip_prefix("-h, ").or(Some(l.trim_start())))
        .filter(|l| l.starts_with("--"))
        .filter_map(|l| l.split([' ', ',', '<', '\t']).next().map(str::to_owned))
        .collect()
}

#[test]
fn top_level_help_explains_the_program_not_the_crate() {
    let help = stdout_of(&["--help"]);
    let first = help.lines().next().unwrap_or("");
    let crate_description = env!("CARGO_PKG_DESCRIPTION");
    assert!(
        !first.contains(crate_description) && !first.contains("session initiation service"),
        "opens with the crate description: {first}"
    );
    assert!(first.to_lowercase().contains("phone"), "the first line says what the program is: {first}");
    for command in ["dial", "answer", "send", "load"] {
        assert!(help.contains(command), "the help names the `{command}` command:\n{help}");
    }
    // The prompt (no command) takes every call option.
    let opts = options_in(&help);
    for o in ["--bind", "--tone", "--record", "--summary", "--register", "--t1-ms"] {
        assert!(opts.iter().any(|x| x == o), "{o} missing from the top-level help: {opts:?}");
    }
}

#[test]
fn each_command_help_lists_only_its_options() {
    let send = options_in(&stdout_of(&["send", "--help"]));
    for o in ["--bind", "--to", "--wait"] {
        assert!(send.iter().any(|x| x == o), "send --help lacks {o}: {send:?}");
    }
    for o in ["--tone", "--record", "--codec", "--register", "--rtp-ports", "--summary", "--user", "--dtmf"] {
        assert!(!send.iter().any(|x| x == o), "send --help lists {o}, which send does not use: {send:?}");
    }
    let load = options_in(&stdout_of(&["load", "--help"]));
    for o in ["--bind", "--user", "--password-file", "--summary", "--rate", "--calls"] {
        assert!(load.iter().any(|x| x == o), "load --help lacks {o}: {load:?}");
    }
    for o in ["--tone", "--record", "--register", "--rtp-timeout", "--t1-ms"] {
        assert!(!load.iter().any(|x| x == o), "load --help lists {o}, which load does not use: {load:?}");
    }
    let dial = options_in(&stdout_of(&["dial", "--help"]));
    for o in ["--duration", "--bind", "--tone", "--record", "--summary", "--t1-ms", "--register"] {
        assert!(dial.iter().any(|x| x == o), "dial --help lacks {o}: {dial:?}");
    }
    assert!(!dial.iter().any(|x| x == "--to" || x == "--rate"), "dial --help lists another command's option: {dial:?}");
    let answer = options_in(&stdout_of(&["answer", "--help"]));
    for o in ["--calls", "--after", "--tone", "--record", "--t1-ms"] {
        assert!(answer.iter().any(|x| x == o), "answer --help lacks {o}: {answer:?}");
    }
}

#[test]
fn global_options_are_still_accepted_everywhere() {
    // A global option a command does not use is accepted (and ignored) before or after its name,
    // as before: the error is about the missing file, not the option.
    for args in [
        &["send", "/nonexistent.sip", "--to", "127.0.0.1:9", "--tone", "440", "--wait", "0.1"][..],
        &["--tone", "440", "--record", "x.wav", "send", "/nonexistent.sip", "--to", "127.0.0.1:9"][..],
    ] {
        let out = softphone(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("cannot read /nonexistent.sip"), "softphone {args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line of reason: {err}");
    }
    // An option no command knows is still refused.
    let out = softphone(&["send", "/nonexistent.sip", "--to", "127.0.0.1:9", "--no-such-flag"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}
