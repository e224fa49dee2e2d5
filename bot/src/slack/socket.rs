//! Socket Mode: `apps.connections.open` with the app-level token, then
//! envelopes over a WebSocket, acked on the socket, handled by the same
//! [`SlackApp`] as the HTTP endpoints. No public URL is needed.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use slack_morphism::prelude::{SlackCommandEvent, SlackInteractionEvent};
use tokio_tungstenite::tungstenite::Message;

use super::handler::SlackApp;
use crate::secret::Secret;

/// Connects, serves until Slack asks us to reconnect or the socket drops,
/// and connects again, forever.
pub async fn run(app: SlackApp, app_token: Secret) -> anyhow::Result<()> {
    let mut failures = 0u32;
    loop {
        match serve_once(&app, &app_token).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "Socket Mode connection failed");
            }
        }
        tokio::time::sleep(crate::retry::backoff(failures)).await;
    }
}

async fn serve_once(app: &SlackApp, app_token: &Secret) -> anyhow::Result<()> {
    let url = app.api.open_connection(app_token).await?;
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    tracing::info!("connected to Slack over Socket Mode");
    let (mut sink, mut stream) = socket.split();
    while let Some(frame) = stream.next().await {
        let text = match frame? {
            Message::Text(text) => text,
            Message::Ping(payload) => {
                sink.send(Message::Pong(payload)).await?;
                continue;
            }
            Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
            tracing::warn!("unreadable Socket Mode frame");
            continue;
        };
        let id = envelope["envelope_id"].clone();
        match envelope["type"].as_str() {
            Some("hello") => tracing::debug!("Socket Mode hello"),
            Some("disconnect") => return Ok(()),
            Some("slash_commands") => {
                let handled = match serde_json::from_value::<SlackCommandEvent>(
                    envelope["payload"].clone(),
                ) {
                    Ok(event) => app.command(event).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable slash command");
                        crate::ack::Handled::now(Value::Null)
                    }
                };
                // The ack carries the command's response, as the HTTP body would.
                let mut ack = json!({ "envelope_id": id });
                if !handled.response.is_null() {
                    ack["payload"] = handled.response;
                }
                sink.send(Message::Text(ack.to_string())).await?;
                if let Some(after) = handled.after {
                    tokio::spawn(after);
                }
            }
            Some("interactive") => {
                sink.send(Message::Text(json!({ "envelope_id": id }).to_string()))
                    .await?;
                if let Ok(event) =
                    serde_json::from_value::<SlackInteractionEvent>(envelope["payload"].clone())
                    && let Some(after) = app.interaction(event).await.after
                {
                    tokio::spawn(after);
                }
            }
            _ if !id.is_null() => {
                // Ack what we do not handle, so Slack does not redeliver it.
                sink.send(Message::Text(json!({ "envelope_id": id }).to_string()))
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}
