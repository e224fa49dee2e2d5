//! Property tests: whatever text or payload a user or a platform sends,
//! parsing never panics, and what parses round-trips.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use wordup_chat::buttons::{Action, ButtonId, MAX_ID_CHARS};
use wordup_chat::discord::endpoint as discord;
use wordup_chat::grammar::{MAX_PROMPT_CHARS, parse_imagine};
use wordup_chat::policy::Blocklist;
use wordup_chat::slack::endpoint as slack;
use wordup_chat::slack::settings_text;
use wordup_queue::{AspectRatio, JobId, VaryStrength};

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0u8..4).prop_map(|index| Action::Upscale { index }),
        (0u8..4).prop_map(|index| Action::Vary { index }),
        Just(Action::Reroll),
        Just(Action::VaryUpscaled {
            strength: VaryStrength::Subtle
        }),
        Just(Action::VaryUpscaled {
            strength: VaryStrength::Strong
        }),
    ]
}

/// Words without flags: what a prompt is made of.
fn prompt_words() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[\\p{L}\\p{N}][\\p{L}\\p{N},.!?'-]{0,11}", 1..30)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_imagine_text_parses_or_is_refused_without_panic(text in "\\PC{0,1200}") {
        let _ = parse_imagine(&text);
    }

    #[test]
    fn flag_like_text_never_panics(
        words in prop::collection::vec(prop_oneof![
            "--[a-z]{1,8}".prop_map(String::from),
            "[0-9:.-]{1,6}".prop_map(String::from),
            "\\PC{1,6}".prop_map(String::from),
        ], 0..20)
    ) {
        let _ = parse_imagine(&words.join(" "));
    }

    #[test]
    fn prompt_seed_and_aspect_round_trip(
        words in prompt_words(),
        seed in any::<u32>(),
        (w, h) in (1u32..=4, 1u32..=4),
    ) {
        let prompt = words.join(" ");
        prop_assume!(prompt.chars().count() <= MAX_PROMPT_CHARS);
        let args = parse_imagine(&format!("{prompt} --seed {seed} --ar {w}:{h}")).unwrap();
        prop_assert_eq!(args.prompt, prompt);
        prop_assert_eq!(args.seed, Some(u64::from(seed)));
        prop_assert_eq!(args.aspect, Some(AspectRatio { width: w, height: h }));
    }

    #[test]
    fn button_ids_round_trip_within_discords_limit(action in action(), job in 1..=i64::MAX) {
        let button = ButtonId { action, job: JobId(job) };
        let id = button.to_string();
        prop_assert!(id.chars().count() <= MAX_ID_CHARS);
        prop_assert_eq!(ButtonId::parse(&id), Some(button));
    }

    #[test]
    fn any_button_id_text_parses_or_not_without_panic(text in "\\PC{0,120}", job in any::<i64>()) {
        let _ = ButtonId::parse(&text);
        let _ = ButtonId::parse(&format!("wu:{text}"));
        let _ = ButtonId::parse(&format!("wu:u:{job}:{text}"));
    }

    #[test]
    fn any_platform_payload_parses_or_not_without_panic(text in "\\PC{0,400}") {
        let _ = discord::parse_interaction(text.as_bytes());
        let _ = discord::parse_interaction(format!("{{\"type\":2,\"data\":{text}}}").as_bytes());
        let _ = slack::parse_command(&text);
        let _ = slack::parse_interaction(&text);
        let _ = slack::parse_interaction(&format!("payload={text}"));
        let _ = settings_text::parse(&text);
        let _ = Blocklist::parse("gore,blood bath").find(&text);
    }
}
