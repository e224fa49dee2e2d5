//! /queue: the user's jobs, their places in line and states.

use std::fmt::Write;

use wordup_queue::{Job, JobState, Request};

use super::{CommandError, Commands};

/// One line per job, in claim order. A queued job of a platform that no
/// live engine serves (`served`) says that it waits for one.
pub fn render(jobs: &[(Job, Option<i64>)], served: &[String]) -> String {
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
            (JobState::Queued, Some(n), _) if !served.contains(&job.origin.platform) => format!(
                "#{n} in line ({}), waiting for an engine that can post to {}",
                job.tier.as_str(),
                job.origin.platform
            ),
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
        Request::Analyze { prompt } => {
            format!("analysis of \"{}\"", crate::text::shorten(prompt, 60))
        }
        Request::Describe {} => "a description of an image".to_owned(),
        Request::Unreadable { .. } => "a job this release cannot read".to_owned(),
    }
}

impl Commands {
    pub async fn queue_status(
        &self,
        platform: &str,
        user_id: &str,
    ) -> Result<String, CommandError> {
        let jobs = self.queue.user_active_jobs(platform, user_id).await?;
        let served = self.queue.served_platforms().await?;
        let mut listed = Vec::with_capacity(jobs.len());
        for job in jobs {
            let position = self.queue.position(job.id).await?;
            listed.push((job, position));
        }
        Ok(render(&listed, &served))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: i64, platform: &str) -> Job {
        crate::commands::test_jobs::queued(id, platform, "u")
    }

    #[test]
    fn a_job_no_engine_can_post_says_it_waits_for_one() {
        let jobs = [
            (queued(1, "discord"), Some(1)),
            (queued(2, "slack"), Some(2)),
        ];
        let text = render(&jobs, &["discord".to_owned()]);
        assert!(
            text.contains("job 1 — \"fox 1\" — #1 in line (fast)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "job 2 — \"fox 2\" — #2 in line (fast), waiting for an engine that can post to slack"
            ),
            "{text}"
        );
    }
}
