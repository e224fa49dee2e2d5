//! /queue: the user's jobs, their places in line and states.

use std::fmt::Write;

use wordup_queue::{Job, JobState, Request};

use super::{CommandError, Commands};

/// One line per job, in claim order.
pub fn render(jobs: &[(Job, Option<i64>)]) -> String {
    if jobs.is_empty() {
        return "You have no jobs waiting or running.".to_owned();
    }
    let mut text = String::from("Your jobs:\n");
    for (job, position) in jobs {
        let what = describe(&job.request);
        let state = match (job.state, position, &job.progress) {
            (JobState::Running, _, Some(p)) => {
                format!("running — {} {}/{}", p.stage, p.step, p.total)
            }
            (JobState::Running, _, None) => "running".to_owned(),
            (JobState::Queued, Some(n), _) => format!("#{n} in line ({})", job.tier.as_str()),
            (state, _, _) => state.as_str().to_owned(),
        };
        let _ = writeln!(text, "• job {} — {what} — {state}", job.id);
    }
    text
}

/// A short description of a request for lists.
pub fn describe(request: &Request) -> String {
    match request {
        Request::Imagine(r) => {
            format!("\"{}\"", crate::text::shorten(&r.prompt, 60))
        }
        Request::Upscale { parent, index, .. } => {
            format!("upscale of image {} of job {parent}", index + 1)
        }
        Request::Vary { parent, index, .. } => {
            format!("variations of image {} of job {parent}", index + 1)
        }
        Request::Reroll { parent } => format!("re-roll of job {parent}"),
    }
}

impl Commands {
    pub async fn queue_status(
        &self,
        platform: &str,
        user_id: &str,
    ) -> Result<String, CommandError> {
        let jobs = self.queue.user_active_jobs(platform, user_id).await?;
        let mut listed = Vec::with_capacity(jobs.len());
        for job in jobs {
            let position = self.queue.position(job.id).await?;
            listed.push((job, position));
        }
        Ok(render(&listed))
    }
}
