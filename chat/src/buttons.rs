//! Button ids: a button carries its action, the job it belongs to and an
//! image index, so that a press resolves through Postgres alone and buttons
//! keep working across restarts. Discord's `custom_id` and Slack's
//! `action_id` both hold the same text.

use std::fmt;

use wordup_queue::{GRID_IMAGES, JobId, Request, UpscaleMode, VaryStrength};

/// Discord's limit for a `custom_id` (Slack allows 255 for `action_id`).
pub const MAX_ID_CHARS: usize = 100;
const PREFIX: &str = "wu";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// U1–U4 on a grid.
    Upscale { index: u8 },
    /// V1–V4 on a grid.
    Vary { index: u8 },
    /// 🔄 on a grid.
    Reroll,
    /// "Vary (subtle)" and "Vary (strong)" under an upscaled image.
    VaryUpscaled { strength: VaryStrength },
    /// ❌ under any result: its requester or a channel manager deletes it.
    Delete,
    /// "Use 1"–"Use 4" under /describe's suggestions: /imagine with one.
    Suggestion { index: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonId {
    pub action: Action,
    /// The job whose output the button is under.
    pub job: JobId,
}

impl ButtonId {
    /// The follow-up job a press asks for; none for ❌.
    pub fn request(&self) -> Option<Request> {
        let parent = self.job;
        Some(match self.action {
            Action::Upscale { index } => Request::Upscale {
                parent,
                index,
                mode: UpscaleMode::Plain,
            },
            Action::Vary { index } => Request::Vary {
                parent,
                index,
                strength: VaryStrength::Strong,
                remix: None,
            },
            Action::Reroll => Request::Reroll { parent },
            Action::VaryUpscaled { strength } => Request::Vary {
                parent,
                index: 0,
                strength,
                remix: None,
            },
            // The prompt is the stored suggestion's: see `Commands::press`.
            Action::Delete | Action::Suggestion { .. } => return None,
        })
    }

    /// The image the button is about, if one.
    pub fn index(&self) -> Option<u8> {
        match self.action {
            Action::Upscale { index } | Action::Vary { index } => Some(index),
            Action::VaryUpscaled { .. } => Some(0),
            Action::Reroll | Action::Delete | Action::Suggestion { .. } => None,
        }
    }

    /// Whether pressing the button again (while its job lives) gives the
    /// same job: an image is upscaled once, while every press of 🔄 or V
    /// asks for new images.
    pub fn once_per_button(&self) -> bool {
        matches!(self.action, Action::Upscale { .. })
    }

    /// The idempotency key of a press: per button for [`once_per_button`]
    /// buttons, else per interaction (`interaction_id`, the platform's id
    /// for this press), so that a repeated delivery of one press stays one job.
    ///
    /// [`once_per_button`]: ButtonId::once_per_button
    pub fn press_key(&self, platform: &str, interaction_id: &str) -> String {
        if self.once_per_button() {
            format!("{platform}:button:{self}")
        } else {
            format!("{platform}:press:{interaction_id}")
        }
    }

    /// The button's label as users see it.
    pub fn label(&self) -> String {
        match self.action {
            Action::Upscale { index } => format!("U{}", index + 1),
            Action::Vary { index } => format!("V{}", index + 1),
            Action::Reroll => "🔄".to_owned(),
            Action::VaryUpscaled {
                strength: VaryStrength::Subtle,
            } => "Vary (subtle)".to_owned(),
            Action::VaryUpscaled {
                strength: VaryStrength::Strong,
            } => "Vary (strong)".to_owned(),
            Action::Delete => "❌".to_owned(),
            Action::Suggestion { index } => format!("Use {}", index + 1),
        }
    }

    /// What a press starts, for the presser: "Upscaling image 2".
    pub fn headline(&self) -> String {
        match self.action {
            Action::Upscale { index } => format!("Upscaling image {}", index + 1),
            Action::Vary { index } => format!("Making variations of image {}", index + 1),
            Action::Reroll => "Re-rolling".to_owned(),
            Action::VaryUpscaled {
                strength: VaryStrength::Subtle,
            } => "Making subtle variations".to_owned(),
            Action::VaryUpscaled {
                strength: VaryStrength::Strong,
            } => "Making strong variations".to_owned(),
            Action::Delete => "Deleting the result".to_owned(),
            Action::Suggestion { index } => format!("Drawing suggestion {}", index + 1),
        }
    }

    /// The buttons under a grid: U1–U4, V1–V4, then 🔄 and ❌, in rows.
    pub fn grid_rows(job: JobId) -> Vec<Vec<ButtonId>> {
        let row = |action: fn(u8) -> Action| {
            (0..GRID_IMAGES)
                .map(|index| ButtonId {
                    action: action(index),
                    job,
                })
                .collect::<Vec<_>>()
        };
        vec![
            row(|index| Action::Upscale { index }),
            row(|index| Action::Vary { index }),
            vec![
                ButtonId {
                    action: Action::Reroll,
                    job,
                },
                ButtonId {
                    action: Action::Delete,
                    job,
                },
            ],
        ]
    }

    /// The buttons under /describe's `count` suggestions.
    pub fn suggestion_row(job: JobId, count: u8) -> Vec<ButtonId> {
        (0..count.min(GRID_IMAGES))
            .map(|index| ButtonId {
                action: Action::Suggestion { index },
                job,
            })
            .collect()
    }

    /// The buttons under an upscaled image: the two variations and ❌.
    pub fn upscale_row(job: JobId) -> Vec<ButtonId> {
        [VaryStrength::Subtle, VaryStrength::Strong]
            .into_iter()
            .map(|strength| Action::VaryUpscaled { strength })
            .chain([Action::Delete])
            .map(|action| ButtonId { action, job })
            .collect()
    }

    pub fn parse(text: &str) -> Option<ButtonId> {
        let mut parts = text.split(':');
        if parts.next()? != PREFIX {
            return None;
        }
        let action = parts.next()?;
        let job = JobId(parts.next()?.parse().ok().filter(|id: &i64| *id > 0)?);
        let raw_index = parts.next();
        if parts.next().is_some() {
            return None;
        }
        let no_index = raw_index.is_none();
        let index = || raw_index?.parse::<u8>().ok().filter(|i| *i < GRID_IMAGES);
        let action = match action {
            "u" => Action::Upscale { index: index()? },
            "v" => Action::Vary { index: index()? },
            "r" if no_index => Action::Reroll,
            "vs" if no_index => Action::VaryUpscaled {
                strength: VaryStrength::Subtle,
            },
            "vS" if no_index => Action::VaryUpscaled {
                strength: VaryStrength::Strong,
            },
            "x" if no_index => Action::Delete,
            "p" => Action::Suggestion { index: index()? },
            _ => return None,
        };
        Some(ButtonId { action, job })
    }
}

impl fmt::Display for ButtonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let job = self.job;
        match self.action {
            Action::Upscale { index } => write!(f, "{PREFIX}:u:{job}:{index}"),
            Action::Vary { index } => write!(f, "{PREFIX}:v:{job}:{index}"),
            Action::Reroll => write!(f, "{PREFIX}:r:{job}"),
            Action::VaryUpscaled {
                strength: VaryStrength::Subtle,
            } => write!(f, "{PREFIX}:vs:{job}"),
            Action::VaryUpscaled {
                strength: VaryStrength::Strong,
            } => write!(f, "{PREFIX}:vS:{job}"),
            Action::Delete => write!(f, "{PREFIX}:x:{job}"),
            Action::Suggestion { index } => write!(f, "{PREFIX}:p:{job}:{index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_button_round_trips_within_the_limits() {
        let job = JobId(i64::MAX);
        let grid: Vec<ButtonId> = ButtonId::grid_rows(job).into_iter().flatten().collect();
        let upscaled = ButtonId::upscale_row(job);
        let suggestions = ButtonId::suggestion_row(job, 4);
        assert_eq!((grid.len(), upscaled.len(), suggestions.len()), (10, 3, 4));
        for message in [grid, upscaled, suggestions] {
            let mut ids = std::collections::HashSet::new();
            for button in message {
                let text = button.to_string();
                assert!(!text.is_empty() && text.len() <= MAX_ID_CHARS, "{text}");
                assert!(
                    ids.insert(text.clone()),
                    "ids must be unique per message: {text}"
                );
                assert_eq!(ButtonId::parse(&text), Some(button), "{text}");
            }
        }
    }

    #[test]
    fn parses_ids_and_refuses_others() {
        for (text, expected) in [
            (
                "wu:u:12:1",
                Some(ButtonId {
                    action: Action::Upscale { index: 1 },
                    job: JobId(12),
                }),
            ),
            (
                "wu:r:7",
                Some(ButtonId {
                    action: Action::Reroll,
                    job: JobId(7),
                }),
            ),
            ("wu:u:12:4", None),
            ("wu:u:12", None),
            ("wu:r:7:0", None),
            ("wu:u:0:1", None),
            ("wu:u:-3:1", None),
            (
                "wu:x:12",
                Some(ButtonId {
                    action: Action::Delete,
                    job: JobId(12),
                }),
            ),
            ("wu:x:12:1", None),
            ("wu:q:12", None),
            ("xx:u:12:1", None),
            ("wu:u:12:1:9", None),
            ("", None),
        ] {
            assert_eq!(ButtonId::parse(text), expected, "{text}");
        }
    }

    #[test]
    fn presses_ask_for_the_right_follow_up() {
        let job = JobId(5);
        let rows = ButtonId::grid_rows(job);
        assert_eq!(
            rows[0][1].request(),
            Some(Request::Upscale {
                parent: job,
                index: 1,
                mode: UpscaleMode::Plain
            })
        );
        assert_eq!(rows[1][3].label(), "V4");
        assert_eq!(rows[2][0].request(), Some(Request::Reroll { parent: job }));
        assert_eq!(rows[2][1].label(), "❌");
        assert_eq!(rows[2][1].request(), None);
        assert_eq!(
            ButtonId::upscale_row(job)[0].request(),
            Some(Request::Vary {
                parent: job,
                index: 0,
                strength: VaryStrength::Subtle,
                remix: None,
            })
        );
        assert_eq!(ButtonId::upscale_row(job)[2].action, Action::Delete);
    }

    #[test]
    fn upscales_are_one_job_per_button_and_other_presses_one_per_press() {
        let job = JobId(5);
        for (action, first, second) in [
            (
                Action::Upscale { index: 1 },
                "discord:button:wu:u:5:1",
                "discord:button:wu:u:5:1",
            ),
            (
                Action::Vary { index: 1 },
                "discord:press:111",
                "discord:press:222",
            ),
            (Action::Reroll, "discord:press:111", "discord:press:222"),
            (
                Action::VaryUpscaled {
                    strength: VaryStrength::Subtle,
                },
                "discord:press:111",
                "discord:press:222",
            ),
        ] {
            let button = ButtonId { action, job };
            assert_eq!(button.press_key("discord", "111"), first);
            assert_eq!(button.press_key("discord", "222"), second);
        }
    }
}
