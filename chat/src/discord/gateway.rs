//! Gateway mode: interactions arrive over serenity's websocket instead of
//! the HTTP endpoint (no public URL needed), and go to the same handler.

use std::time::Duration;

use serenity::all::{
    Client, ClientBuilder, Context, EventHandler, GatewayIntents, HttpBuilder, Interaction, Ready,
};
use serenity::async_trait;

use super::handler::DiscordApp;
use wordup_runtime::secret::Secret;

struct Gateway {
    app: DiscordApp,
}

#[async_trait]
impl EventHandler for Gateway {
    async fn ready(&self, _: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to the Discord gateway");
    }

    async fn interaction_create(&self, _: Context, interaction: Interaction) {
        let (id, token, channel) = match &interaction {
            Interaction::Command(c) => (c.id, c.token.clone(), Some(c.channel_id)),
            Interaction::Component(c) => (c.id, c.token.clone(), Some(c.channel_id)),
            _ => return,
        };
        let nsfw = match channel {
            Some(channel) => self.channel_nsfw(channel).await,
            None => false,
        };
        let handled = self.app.handle(interaction, nsfw).await;
        let path = format!("/interactions/{id}/{token}/callback");
        match self.app.rest.post(&path, &handled.response).await {
            Ok(_) => {
                if let Some(after) = handled.after {
                    self.app.commands.pending.spawn(after);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not answer an interaction"),
        }
    }
}

impl Gateway {
    /// The gateway's interaction payload reaches us through serenity's
    /// model, which drops `channel.nsfw`; ask the REST API, briefly.
    async fn channel_nsfw(&self, channel: serenity::all::ChannelId) -> bool {
        let path = format!("/channels/{channel}");
        let lookup = self.app.rest.get(&path);
        match tokio::time::timeout(Duration::from_millis(300), lookup).await {
            Ok(Ok(channel)) => channel
                .get("nsfw")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            _ => false,
        }
    }
}

/// Runs until the connection ends for good. Slash commands need no
/// privileged intents, so none are asked for. `api_url` other than
/// Discord's (a stand-in, in tests) goes through serenity's proxy seam, which
/// needs its ratelimiter off; the gateway URL then comes from the stand-in.
pub async fn run(app: DiscordApp, bot_token: &Secret, api_url: &str) -> anyhow::Result<()> {
    let builder = if api_url.trim_end_matches('/') == super::rest::DISCORD_URL {
        Client::builder(bot_token.expose(), GatewayIntents::empty())
    } else {
        let http = HttpBuilder::new(bot_token.expose())
            .proxy(api_url.trim_end_matches('/'))
            .ratelimiter_disabled(true)
            .build();
        ClientBuilder::new_with_http(http, GatewayIntents::empty())
    };
    let mut client = builder.event_handler(Gateway { app }).await?;
    client.start_autosharded().await?;
    Ok(())
}
