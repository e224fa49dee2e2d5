//! /imagine-analyze: how a prompt reads and what each comma-separated phrase
//! weighs, without drawing. Only engines hold CLIP, so it is a job like any
//! other (quota, place in line); its answer is text.

use wordup_queue::{Request, Tier};

use super::{Accepted, CommandError, Commands, Invocation, UserError, imagine};
use crate::grammar::ImagineArgs;

/// The batch key of analyses: jobs that draw nothing, claimed together.
pub const BATCH_KEY: &str = "analyze";

/// Checks the text as `/imagine` would (grammar and blocklist); the
/// parameters are parsed away and the prompt alone is analysed.
pub fn check(text: &str, config: &super::CommandConfig) -> Result<ImagineArgs, UserError> {
    imagine::check(text, config)
}

impl Commands {
    pub async fn analyze(
        &self,
        invocation: &Invocation,
        args: &ImagineArgs,
    ) -> Result<Accepted, CommandError> {
        if let Some(replayed) = self.replayed(&invocation.idempotency_key).await? {
            return Ok(replayed);
        }
        let channel = self
            .queue
            .channel_settings(&invocation.origin.platform, &invocation.origin.channel_id)
            .await?;
        let job = invocation.job(
            &channel,
            invocation.idempotency_key.clone(),
            // Quick to answer: it waits in the fast line.
            Tier::Fast,
            Request::Analyze {
                prompt: args.prompt.clone(),
            },
            BATCH_KEY.to_owned(),
        );
        self.enqueue_within_quota(&job).await
    }
}
