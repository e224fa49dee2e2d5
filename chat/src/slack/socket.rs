//! Socket Mode: `apps.connections.open` with the app-level token, then
//! envelopes over a WebSocket, acked on the socket, handled by the same
//! [`SlackApp`] as the HTTP endpoints. No public URL is needed.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use slack_morphism::prelude::{SlackCommandEvent, SlackInteractionEvent};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::handler::SlackApp;
use wordup_runtime::secret::Secret;

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

/// Slack sends pings every few seconds and asks for reconnects every few
/// hours; a socket silent for this long is dead.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

async fn serve_once(app: &SlackApp, app_token: &Secret) -> anyhow::Result<()> {
    let url = app.api.open_connection(app_token).await?;
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    tracing::info!("connected to Slack over Socket Mode");
    let (mut sink, mut stream) = socket.split();
    // One writer; every envelope is handled on its own task, so a slow
    // command never holds up the acks of the envelopes behind it.
    let (outbox, mut outgoing) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let result = read(app, &mut stream, &outbox).await;
    drop(outbox);
    writer.abort();
    result
}

async fn read<S>(
    app: &SlackApp,
    stream: &mut S,
    outbox: &mpsc::UnboundedSender<Message>,
) -> anyhow::Result<()>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let send = |message: Message| {
        outbox
            .send(message)
            .map_err(|_| anyhow::anyhow!("the socket writer stopped"))
    };
    loop {
        let frame = match tokio::time::timeout(READ_TIMEOUT, stream.next()).await {
            Ok(Some(frame)) => frame?,
            Ok(None) => return Ok(()),
            Err(_) => anyhow::bail!("no frame from Slack in {READ_TIMEOUT:?}"),
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Ping(payload) => {
                send(Message::Pong(payload))?;
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
                let app = app.clone();
                let outbox = outbox.clone();
                app.commands.pending.clone().spawn(async move {
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
                    let _ = outbox.send(Message::Text(ack.to_string()));
                    if let Some(after) = handled.after {
                        after.await;
                    }
                });
            }
            Some("interactive") => {
                send(Message::Text(json!({ "envelope_id": id }).to_string()))?;
                let app = app.clone();
                app.commands.pending.clone().spawn(async move {
                    if let Ok(event) =
                        serde_json::from_value::<SlackInteractionEvent>(envelope["payload"].clone())
                        && let Some(after) = app.interaction(event).await.after
                    {
                        after.await;
                    }
                });
            }
            _ if !id.is_null() => {
                // Ack what we do not handle, so Slack does not redeliver it.
                send(Message::Text(json!({ "envelope_id": id }).to_string()))?;
            }
            _ => {}
        }
    }
}
