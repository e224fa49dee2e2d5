//! The texts a requester sees about their command, on every platform: the
//! outcome of an enqueue, failures, and progress. Adapters only wrap them
//! in their wire format.

use wordup_queue::Progress;

use super::imagine::Group;
use super::{Accepted, CommandError, position_text};
use crate::text::shorten;

/// Shown when a command's task itself failed; the details go to the log.
pub const OUR_FAULT: &str = "⚠️ something went wrong on our side; please try again";

/// What happened to an enqueue: its place in line, or that the same
/// interaction had already made the job (whose result is posted `where_posted`).
pub fn accepted_text(headline: &str, accepted: &Accepted, where_posted: &str) -> String {
    if accepted.created {
        format!("{headline} — {}", position_text(accepted.position))
    } else {
        match accepted.position {
            Some(_) => format!(
                "{headline} — already asked for: {}",
                position_text(accepted.position)
            ),
            None => format!(
                "{headline} — already asked for (job {}); its result is posted {where_posted}",
                accepted.job
            ),
        }
    }
}

/// A refused command's text; our own failures are logged, not described.
pub fn error_text(e: &CommandError) -> String {
    e.log();
    format!("⚠️ {}", e.user_message())
}

/// What a permutation prompt queued: each prompt's place in line, and the
/// one refused (with why), if any.
/// `escape` makes a prompt plain text in the platform's markup.
pub fn group_text(
    headline: &str,
    group: &Group,
    where_posted: &str,
    escape: fn(&str) -> String,
) -> String {
    let prompts = group.queued.len() + usize::from(group.refused.is_some());
    let mut text = format!("{headline} — {prompts} prompts:");
    for (n, (prompt, accepted)) in group.queued.iter().enumerate() {
        text.push_str(&format!(
            "\n{}. {} — {} (job {})",
            n + 1,
            escape(&shorten(prompt, 150)),
            if accepted.created {
                position_text(accepted.position)
            } else {
                "already asked for".to_owned()
            },
            accepted.job
        ));
    }
    if let Some((prompt, error)) = &group.refused {
        text.push_str(&format!(
            "\n{}. {} — not queued: {}",
            group.queued.len() + 1,
            escape(&shorten(prompt, 150)),
            error_text(error).trim_start_matches("⚠️ ")
        ));
    }
    text.push_str(&format!("\nEach result is posted {where_posted}."));
    text
}

/// The outcome of a command's task, whichever way it ended.
pub fn outcome_text(
    headline: &str,
    result: Result<Result<Accepted, CommandError>, tokio::task::JoinError>,
    where_posted: &str,
) -> String {
    match result {
        Ok(Ok(accepted)) => accepted_text(headline, &accepted, where_posted),
        Ok(Err(e)) => error_text(&e),
        Err(e) => {
            tracing::error!(error = %e, "command task failed");
            OUR_FAULT.to_owned()
        }
    }
}

/// "<what> — denoising 2/4": a running job's stage, with the step when the
/// stage has several.
pub fn progress_text(what: &str, progress: &Progress) -> String {
    let step = if progress.total > 1 {
        format!(" {}/{}", progress.step, progress.total)
    } else {
        String::new()
    };
    format!("{what} — {}{step}", progress.stage)
}

#[cfg(test)]
mod tests {
    use wordup_queue::JobId;

    use super::*;
    use crate::commands::UserError;

    fn accepted(created: bool, position: Option<i64>) -> Accepted {
        Accepted {
            job: JobId(7),
            position,
            created,
        }
    }

    #[test]
    fn enqueue_outcomes_read_as_the_user_expects() {
        for (accepted, expected) in [
            (accepted(true, Some(1)), "**fox** — queued — next in line"),
            (accepted(true, Some(3)), "**fox** — queued — #3 in line"),
            (accepted(true, None), "**fox** — started"),
            (
                accepted(false, Some(2)),
                "**fox** — already asked for: queued — #2 in line",
            ),
            (
                accepted(false, None),
                "**fox** — already asked for (job 7); its result is posted in the thread",
            ),
        ] {
            assert_eq!(
                accepted_text("**fox**", &accepted, "in the thread"),
                expected
            );
        }
        assert_eq!(
            outcome_text(
                "x",
                Ok(Err(UserError::NotFinished.into())),
                "in this channel"
            ),
            "⚠️ that job has not finished yet"
        );
    }

    #[test]
    fn progress_shows_the_step_only_for_stages_with_several() {
        let progress = |stage: &str, step, total| Progress {
            stage: stage.into(),
            step,
            total,
        };
        assert_eq!(
            progress_text("**fox**", &progress("denoising", 2, 4)),
            "**fox** — denoising 2/4"
        );
        assert_eq!(
            progress_text("**fox**", &progress("decoding", 0, 1)),
            "**fox** — decoding"
        );
    }
}
