//! /cancel: stopping one's own queued or running job. A queued job is
//! cancelled at once; a running one is stopped by its engine within a
//! step. Either way the job's own message then says "cancelled".

use wordup_queue::{CancelOutcome, Job, JobId, JobState};

use super::queue_status::describe;
use super::{CommandError, Commands, UserError};

/// The job a /cancel names: `42`, `#42` or `job 42`; none for the user's
/// only active job.
pub fn parse_target(text: &str) -> Result<Option<JobId>, UserError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let number = text
        .strip_prefix("job")
        .map(str::trim_start)
        .unwrap_or(text)
        .trim_start_matches('#');
    number
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(|id| Some(JobId(id)))
        .ok_or_else(|| UserError::BadJobNumber(text.to_owned()))
}

/// Whether `user` of `platform` may cancel `job`: only their own.
pub fn may_cancel(job: &Job, platform: &str, user: &str) -> Result<(), UserError> {
    if job.origin.platform != platform || job.origin.user_id != user {
        return Err(UserError::NotYourJob(job.id));
    }
    Ok(())
}

/// Which job to cancel when none was named: the only active one.
pub fn only_active(active: &[Job]) -> Result<JobId, UserError> {
    match active {
        [] => Err(UserError::NothingToCancel),
        [job] => Ok(job.id),
        several => Err(UserError::WhichJob(
            several
                .iter()
                .map(|job| format!("job {} ({})", job.id, describe(&job.request)))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// What the canceller is told.
pub fn outcome_text(job: JobId, outcome: CancelOutcome) -> Result<String, UserError> {
    match outcome {
        CancelOutcome::Cancelled => Ok(format!("Cancelled job {job}; it will not run.")),
        CancelOutcome::Signalled => Ok(format!(
            "Stopping job {job}; its message will say when it has stopped."
        )),
        CancelOutcome::AlreadyFinished => Err(UserError::AlreadyFinished(job)),
        CancelOutcome::NotFound => Err(UserError::NoSuchJob(job)),
    }
}

impl Commands {
    /// Cancels `target` (or the user's only active job) for `user`.
    pub async fn cancel(
        &self,
        platform: &str,
        user: &str,
        target: Option<JobId>,
    ) -> Result<String, CommandError> {
        let id = match target {
            Some(id) => {
                let job = self.queue.job(id).await?.ok_or(UserError::NoSuchJob(id))?;
                may_cancel(&job, platform, user)?;
                if !matches!(job.state, JobState::Queued | JobState::Running) {
                    return Err(UserError::AlreadyFinished(id).into());
                }
                id
            }
            None => only_active(&self.queue.user_active_jobs(platform, user).await?)?,
        };
        let outcome = self.queue.cancel(id).await?;
        Ok(outcome_text(id, outcome)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test_jobs::queued as job;

    #[test]
    fn a_target_is_a_job_number_or_nothing() {
        for (text, expected) in [
            ("", Ok(None)),
            ("  ", Ok(None)),
            ("42", Ok(Some(JobId(42)))),
            ("#42", Ok(Some(JobId(42)))),
            ("job 42", Ok(Some(JobId(42)))),
            ("0", Err(UserError::BadJobNumber("0".into()))),
            ("-3", Err(UserError::BadJobNumber("-3".into()))),
            ("fox", Err(UserError::BadJobNumber("fox".into()))),
            (
                "99999999999999999999",
                Err(UserError::BadJobNumber("99999999999999999999".into())),
            ),
        ] {
            assert_eq!(parse_target(text), expected, "{text:?}");
        }
    }

    #[test]
    fn only_the_requester_on_the_same_platform_may_cancel() {
        let mine = job(7, "discord", "u1");
        assert_eq!(may_cancel(&mine, "discord", "u1"), Ok(()));
        for (platform, user) in [("discord", "u2"), ("slack", "u1")] {
            assert_eq!(
                may_cancel(&mine, platform, user),
                Err(UserError::NotYourJob(JobId(7)))
            );
        }
    }

    #[test]
    fn without_a_number_the_only_active_job_is_meant() {
        assert_eq!(only_active(&[]), Err(UserError::NothingToCancel));
        assert_eq!(only_active(&[job(3, "slack", "u")]), Ok(JobId(3)));
        assert_eq!(
            only_active(&[job(3, "slack", "u"), job(4, "slack", "u")]),
            Err(UserError::WhichJob(
                "job 3 (\"fox 3\"), job 4 (\"fox 4\")".into()
            ))
        );
    }

    #[test]
    fn outcomes_read_as_what_happened() {
        let id = JobId(5);
        assert!(
            outcome_text(id, CancelOutcome::Cancelled)
                .unwrap()
                .starts_with("Cancelled job 5")
        );
        assert!(
            outcome_text(id, CancelOutcome::Signalled)
                .unwrap()
                .starts_with("Stopping job 5")
        );
        assert_eq!(
            outcome_text(id, CancelOutcome::AlreadyFinished),
            Err(UserError::AlreadyFinished(id))
        );
        assert_eq!(
            outcome_text(id, CancelOutcome::NotFound),
            Err(UserError::NoSuchJob(id))
        );
    }
}
