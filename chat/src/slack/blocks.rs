//! Block Kit for results: the buttons under a grid or an upscaled image.

use serde_json::{Value, json};
use wordup_queue::JobId;

use crate::buttons::ButtonId;
use wordup_queue::ResultKind;

/// Actions blocks, one per row; each button's `action_id` and `value` are
/// the button id (Slack allows 255 and 2000 characters).
pub fn result_blocks(job: JobId, kind: ResultKind, text: &str) -> Value {
    let rows = match kind {
        ResultKind::Grid => ButtonId::grid_rows(job),
        ResultKind::Upscaled => vec![ButtonId::upscale_row(job)],
    };
    let mut blocks = vec![json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })];
    for (i, row) in rows.into_iter().enumerate() {
        blocks.push(actions(job, i, &row));
    }
    Value::Array(blocks)
}

/// An actions block of buttons; each button's `action_id` and `value` are
/// its id.
fn actions(job: JobId, row: usize, buttons: &[ButtonId]) -> Value {
    json!({
        "type": "actions",
        "block_id": format!("wu-{job}-{row}"),
        "elements": buttons.iter().map(|b| json!({
            "type": "button",
            "action_id": b.to_string(),
            "value": b.to_string(),
            "text": { "type": "plain_text", "text": b.label(), "emoji": true },
        })).collect::<Vec<_>>(),
    })
}

/// A text answer with `choices` buttons that run its suggestions.
pub fn choice_blocks(job: JobId, text: &str, choices: u8) -> Value {
    let mut blocks = vec![json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })];
    let row = ButtonId::suggestion_row(job, choices);
    if !row.is_empty() {
        blocks.push(actions(job, 0, &row));
    }
    Value::Array(blocks)
}

/// A progress message with a preview: the text, then the image by its
/// file id (uploaded privately; the bot that posts it can read it).
pub fn preview_blocks(text: &str, file_id: &str, alt_text: &str) -> Value {
    json!([
        { "type": "section", "text": { "type": "mrkdwn", "text": text } },
        { "type": "image", "slack_file": { "id": file_id }, "alt_text": alt_text },
    ])
}

/// Escapes Slack's control characters so a prompt shows as typed.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Sets the text of the button `action_id` in a message's blocks.
pub fn relabel(blocks: &mut Value, action_id: &str, label: &str) {
    for block in blocks.as_array_mut().into_iter().flatten() {
        for element in block["elements"].as_array_mut().into_iter().flatten() {
            if element["action_id"] == action_id {
                element["text"]["text"] = serde_json::json!(label);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_blocks_carry_twelve_buttons_in_three_rows() {
        let blocks = result_blocks(JobId(9), ResultKind::Grid, "hi");
        let rows: Vec<usize> = blocks.as_array().unwrap()[1..]
            .iter()
            .map(|b| b["elements"].as_array().unwrap().len())
            .collect();
        assert_eq!(rows, [4, 4, 4]);
        assert_eq!(blocks[1]["elements"][2]["action_id"], "wu:u:9:2");
        assert_eq!(escape("<@U1> & co"), "&lt;@U1&gt; &amp; co");
        assert_eq!(
            escape("<https://evil.example|Free Nitro> <!channel>"),
            "&lt;https://evil.example|Free Nitro&gt; &lt;!channel&gt;"
        );
    }
}
