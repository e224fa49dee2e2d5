//! The crate graph is the architecture (ARCHITECTURE.md): the engine's
//! library and the queue never link the chat side, and the queue never
//! links candle. Read from `cargo tree`, so a dependency added anywhere
//! down the graph fails here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

/// Every package `root` links on this host, following normal dependencies
/// only (tests and build scripts may use more), as `cargo tree` resolves them.
fn linked(root: &str) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            root,
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    let mut names: BTreeSet<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.remove(root);
    names
}

fn assert_links_none(root: &str, forbidden: &[&str]) {
    let linked = linked(root);
    let found: Vec<&&str> = forbidden.iter().filter(|f| linked.contains(**f)).collect();
    assert!(found.is_empty(), "{root} links {found:?}");
}

const CHAT: &[&str] = &[
    "wordup-chat",
    "wordup-bot",
    "serenity",
    "slack-morphism",
    "tokio-tungstenite",
];

#[test]
fn the_engine_library_links_nothing_of_the_chat_side() {
    assert_links_none("wordup-engine", CHAT);
    // The check itself sees the graph: the engine does link candle.
    assert!(linked("wordup-engine").contains("candle-core"));
}

#[test]
fn the_queue_links_neither_chat_nor_engine() {
    let mut forbidden = CHAT.to_vec();
    forbidden.extend(["wordup-engine", "wordup-runtime", "candle-core"]);
    assert_links_none("wordup-queue", &forbidden);
}

#[test]
fn the_chat_side_links_no_engine() {
    assert_links_none("wordup-chat", &["wordup-engine", "candle-core"]);
    assert!(linked("wordup-chat").contains("serenity"));
}
