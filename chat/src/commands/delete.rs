//! ❌ under a result: deleting it, for its requester or someone who
//! manages the channel. The platform adapters delete the messages.

use wordup_queue::{Job, JobId};

use super::{CommandError, Commands, UserError};

/// Whether `presser` may delete `job`'s result: its requester may, and so
/// may whoever manages the channel's messages.
pub fn may_delete(job: &Job, presser: &str, manages_channel: bool) -> Result<(), UserError> {
    if job.origin.user_id == presser || manages_channel {
        Ok(())
    } else {
        Err(UserError::NotYourResult)
    }
}

impl Commands {
    /// Whether `presser` may delete the result of `job`: a channel manager
    /// always may (the job may be past retention); anyone else only their own.
    pub async fn may_delete(
        &self,
        job: JobId,
        presser: &str,
        manages_channel: bool,
    ) -> Result<(), CommandError> {
        if manages_channel {
            return Ok(());
        }
        let job = self.queue.job(job).await?.ok_or(UserError::UnknownGrid {
            days: self.config.retention_days,
        })?;
        Ok(may_delete(&job, presser, manages_channel)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test_jobs::queued;

    #[test]
    fn the_requester_or_a_channel_manager_may_delete() {
        let job = queued(9, "discord", "alice");
        for (presser, manages, expected) in [
            ("alice", false, Ok(())),
            ("bob", true, Ok(())),
            ("bob", false, Err(UserError::NotYourResult)),
        ] {
            assert_eq!(may_delete(&job, presser, manages), expected, "{presser}");
        }
    }
}
