//! The fake platforms refuse what Discord and Slack refuse, so that a test
//! cannot pass where production fails.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use wordup_tests::fake_discord::{self, FilePart};
use wordup_tests::fake_slack;

#[test]
fn the_fake_discord_refuses_what_discord_refuses() {
    let ok = json!({"content": "hi", "attachments": [{"id": 0, "description": "a".repeat(1024)}]});
    assert!(fake_discord::refusal(Some(&ok), &[]).is_none());
    let refused = |payload: serde_json::Value| {
        fake_discord::refusal(Some(&payload), &[]).map(|r| r.status().as_u16())
    };
    assert_eq!(refused(json!({"content": "x".repeat(2001)})), Some(400));
    assert_eq!(
        refused(json!({"attachments": [{"id": 0, "description": "a".repeat(1025)}]})),
        Some(400)
    );
    let button = |id: &str| json!({"type": 2, "custom_id": id, "label": "x", "style": 2});
    let row = |ids: &[&str]| json!({"type": 1, "components": ids.iter().map(|i| button(i)).collect::<Vec<_>>()});
    assert_eq!(
        refused(json!({"components": [row(&["a", "b", "c", "d", "e", "f"])]})),
        Some(400),
        "six buttons in a row"
    );
    assert_eq!(
        refused(json!({"components": [row(&["a"]), row(&["a"])]})),
        Some(400),
        "a duplicated custom_id"
    );
    assert_eq!(
        refused(json!({"components": [row(&[&"x".repeat(101)])]})),
        Some(400)
    );
    let big = FilePart {
        name: "files[0]".into(),
        filename: "grid.png".into(),
        content_type: "image/png".into(),
        bytes: vec![0; 10 * 1024 * 1024 + 1],
    };
    assert_eq!(
        fake_discord::refusal(None, &[big]).map(|r| r.status().as_u16()),
        Some(413)
    );
}

#[test]
fn the_fake_slack_refuses_what_slack_refuses() {
    assert_eq!(
        fake_slack::refusal(
            "files.getUploadURLExternal",
            &json!({"alt_txt": "a".repeat(1001)})
        ),
        Some("alt_txt_too_large")
    );
    assert_eq!(
        fake_slack::refusal(
            "files.getUploadURLExternal",
            &json!({"alt_txt": "a".repeat(1000)})
        ),
        None
    );
    assert_eq!(
        fake_slack::refusal("chat.postMessage", &json!({"text": "a".repeat(40_001)})),
        Some("msg_too_long")
    );
    let section = json!({"type": "section", "text": {"type": "mrkdwn", "text": "a".repeat(3001)}});
    assert_eq!(
        fake_slack::refusal(
            "chat.postMessage",
            &json!({"text": "x", "blocks": [section]})
        ),
        Some("invalid_blocks")
    );
    let actions = json!({"type": "actions", "elements": [{"type": "button", "action_id": "a".repeat(256), "value": "v"}]});
    assert_eq!(
        fake_slack::refusal(
            "chat.postMessage",
            &json!({"text": "x", "blocks": [actions]})
        ),
        Some("invalid_blocks")
    );
}
