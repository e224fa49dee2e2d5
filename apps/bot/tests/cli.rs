//! The binary's command line: subcommands are described, bad settings are
#![allow(clippy::unwrap_used)]
//! refused with a message that names them.

use std::process::Command;

fn bot(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wordup-bot"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn help_describes_every_subcommand() {
    let output = bot(&["--help"]);
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success());
    for line in ["migrate", "status", "maintain", "DATABASE_URL"] {
        assert!(help.contains(line), "{line} missing from:\n{help}");
    }
}

#[test]
fn an_unreachable_database_is_reported_not_panicked_on() {
    let output = bot(&[
        "status",
        "--db-connect-timeout-secs",
        "1",
        "--database-url",
        "postgres://wordup:secret-pw@127.0.0.1:1/x",
    ]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert!(stderr.contains("cannot connect to Postgres"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains("secret-pw"),
        "the password leaked: {stderr}"
    );
}

#[test]
fn a_bad_setting_is_named() {
    let output = bot(&["status", "--max-attempts", "0"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert!(stderr.contains("WORDUP_MAX_ATTEMPTS"), "{stderr}");
}
