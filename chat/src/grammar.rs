//! The /imagine grammar: a prompt with inline parameters, as users type it
//! on every platform (`a lighthouse at dusk --ar 16:9 --no people --seed 7`).
//!
//! Parameters may stand anywhere; `--no` takes the words up to the next
//! parameter. Phones turn `--` into `—`, so an em dash works too.

use std::fmt;

use wordup_queue::prompt::{WeightError, weighted_parts};
use wordup_queue::style;
use wordup_queue::{AspectRatio, Tier};

pub const MAX_PROMPT_CHARS: usize = 1000;
pub const MAX_NEGATIVE_CHARS: usize = 500;
pub const MAX_STEPS: u32 = 50;
pub const MAX_GUIDANCE: f32 = 20.0;
pub const MAX_ASPECT_SIDE: u32 = 32;
/// Longest side over shortest side.
pub const MAX_ASPECT_STRETCH: u32 = 4;
/// Most candidates drawn per image shown (`--quality`).
pub const MAX_QUALITY: u32 = 4;
/// `--chaos` runs from 0 (the grid's images differ by their seeds alone) to this.
pub const MAX_CHAOS: u32 = 100;
/// `--iw` runs from 0 (the image barely stays) to this (it mostly stays).
pub const MAX_IMAGE_WEIGHT: f32 = 2.0;
/// Most jobs one permutation prompt expands into.
pub const MAX_PERMUTATIONS: usize = 12;

/// What `/imagine` asked for, before channel defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImagineArgs {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub aspect: Option<AspectRatio>,
    pub seed: Option<u64>,
    pub steps: Option<u32>,
    pub guidance: Option<f32>,
    pub style: Option<String>,
    pub tier: Option<Tier>,
    /// `--draft`: a quick, softer decode (the engine's draft decoder).
    pub draft: bool,
    /// `--quality K`: K candidates drawn per image shown, the best kept by
    /// CLIP score.
    pub quality: Option<u32>,
    /// `--chaos N`: more variety across the grid.
    pub chaos: Option<u32>,
    /// `--tile`: a seamless texture.
    pub tile: bool,
    /// `--iw W`: how much of an attached image stays.
    pub image_weight: Option<f32>,
}

/// Why a prompt was refused; the text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GrammarError {
    #[error("the prompt is empty: describe what to draw, e.g. `/imagine a red fox in the snow`")]
    EmptyPrompt,
    #[error("the prompt is {chars} characters long; the limit is {MAX_PROMPT_CHARS}")]
    PromptTooLong { chars: usize },
    #[error("`--no` is {chars} characters long; the limit is {MAX_NEGATIVE_CHARS}")]
    NegativeTooLong { chars: usize },
    #[error(
        "unknown parameter `{0}`; try --ar, --seed, --no, --steps, --guidance, --style, --quality, --chaos, --tile, --iw, --draft, --fast or --relax"
    )]
    UnknownFlag(String),
    #[error("`{0}` needs a value")]
    MissingValue(&'static str),
    #[error("`{flag}` was given twice")]
    Repeated { flag: &'static str },
    #[error("`{flag} {value}` is not valid: {expected}")]
    BadValue {
        flag: &'static str,
        value: String,
        expected: String,
    },
    #[error("`--fast` and `--relax` cannot be used together")]
    TierConflict,
    #[error("{0}")]
    Weights(#[from] WeightError),
    #[error("a `{{` has no closing `}}`: permutations are written `a {{red, blue}} bird`")]
    UnclosedBrace,
    #[error("a `}}` has no opening `{{`: permutations are written `a {{red, blue}} bird`")]
    UnopenedBrace,
    #[error("permutations cannot be nested: `{{a, {{b, c}}}}` → write `{{a, b, c}}`")]
    NestedBraces,
    #[error("the permutations make {count} prompts; the limit is {MAX_PERMUTATIONS}")]
    TooManyPermutations { count: usize },
}

/// Parses `/imagine`'s text.
pub fn parse_imagine(text: &str) -> Result<ImagineArgs, GrammarError> {
    let mut args = ImagineArgs::default();
    let mut prompt_words: Vec<&str> = Vec::new();
    let mut negative_words: Option<Vec<&str>> = None;
    let mut in_negative = false;
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let Some(flag) = flag_name(word) else {
            match (&mut negative_words, in_negative) {
                (Some(negative), true) => negative.push(word),
                _ => prompt_words.push(word),
            }
            continue;
        };
        in_negative = false;
        let mut value = |name: &'static str| words.next().ok_or(GrammarError::MissingValue(name));
        match flag.to_ascii_lowercase().as_str() {
            "ar" | "aspect" => {
                let raw = value("--ar")?;
                set(&mut args.aspect, "--ar", parse_aspect(raw)?)?;
            }
            "seed" => {
                let raw = value("--seed")?;
                let seed = raw.parse::<u32>().map_err(|_| GrammarError::BadValue {
                    flag: "--seed",
                    value: raw.to_owned(),
                    expected: format!("a whole number from 0 to {}", u32::MAX),
                })?;
                set(&mut args.seed, "--seed", u64::from(seed))?;
            }
            "steps" => {
                let raw = value("--steps")?;
                let steps = raw
                    .parse::<u32>()
                    .ok()
                    .filter(|s| (1..=MAX_STEPS).contains(s))
                    .ok_or_else(|| GrammarError::BadValue {
                        flag: "--steps",
                        value: raw.to_owned(),
                        expected: format!("a whole number from 1 to {MAX_STEPS}"),
                    })?;
                set(&mut args.steps, "--steps", steps)?;
            }
            "guidance" | "cfg" => {
                let raw = value("--guidance")?;
                let guidance = raw
                    .parse::<f32>()
                    .ok()
                    .filter(|g| g.is_finite() && (0.0..=MAX_GUIDANCE).contains(g))
                    .ok_or_else(|| GrammarError::BadValue {
                        flag: "--guidance",
                        value: raw.to_owned(),
                        expected: format!("a number from 0 to {MAX_GUIDANCE}"),
                    })?;
                set(&mut args.guidance, "--guidance", guidance)?;
            }
            "style" => {
                let raw = value("--style")?;
                let preset = style::style(raw).ok_or_else(|| GrammarError::BadValue {
                    flag: "--style",
                    value: raw.to_owned(),
                    expected: format!("one of {}", style::style_names()),
                })?;
                set(&mut args.style, "--style", preset.name.to_owned())?;
            }
            "no" => {
                if negative_words.is_some() {
                    return Err(GrammarError::Repeated { flag: "--no" });
                }
                negative_words = Some(Vec::new());
                in_negative = true;
            }
            "quality" | "q" => {
                let raw = value("--quality")?;
                let quality = raw
                    .parse::<u32>()
                    .ok()
                    .filter(|q| (1..=MAX_QUALITY).contains(q))
                    .ok_or_else(|| GrammarError::BadValue {
                        flag: "--quality",
                        value: raw.to_owned(),
                        expected: format!("a whole number from 1 to {MAX_QUALITY}"),
                    })?;
                set(&mut args.quality, "--quality", quality)?;
            }
            "chaos" | "c" => {
                let raw = value("--chaos")?;
                let chaos = raw
                    .parse::<u32>()
                    .ok()
                    .filter(|c| *c <= MAX_CHAOS)
                    .ok_or_else(|| GrammarError::BadValue {
                        flag: "--chaos",
                        value: raw.to_owned(),
                        expected: format!("a whole number from 0 to {MAX_CHAOS}"),
                    })?;
                set(&mut args.chaos, "--chaos", chaos)?;
            }
            "iw" => {
                let raw = value("--iw")?;
                let weight = raw
                    .parse::<f32>()
                    .ok()
                    .filter(|w| w.is_finite() && (0.0..=MAX_IMAGE_WEIGHT).contains(w))
                    .ok_or_else(|| GrammarError::BadValue {
                        flag: "--iw",
                        value: raw.to_owned(),
                        expected: format!("a number from 0 to {MAX_IMAGE_WEIGHT}"),
                    })?;
                set(&mut args.image_weight, "--iw", weight)?;
            }
            "tile" => {
                if args.tile {
                    return Err(GrammarError::Repeated { flag: "--tile" });
                }
                args.tile = true;
            }
            "draft" => {
                if args.draft {
                    return Err(GrammarError::Repeated { flag: "--draft" });
                }
                args.draft = true;
            }
            "fast" | "relax" => {
                let tier = if flag.eq_ignore_ascii_case("fast") {
                    Tier::Fast
                } else {
                    Tier::Relax
                };
                match args.tier {
                    Some(existing) if existing != tier => return Err(GrammarError::TierConflict),
                    Some(_) => {
                        return Err(GrammarError::Repeated {
                            flag: if tier == Tier::Fast {
                                "--fast"
                            } else {
                                "--relax"
                            },
                        });
                    }
                    None => args.tier = Some(tier),
                }
            }
            _ => return Err(GrammarError::UnknownFlag(word.to_owned())),
        }
    }
    args.prompt = prompt_words.join(" ");
    let chars = args.prompt.chars().count();
    if chars == 0 {
        return Err(GrammarError::EmptyPrompt);
    }
    if chars > MAX_PROMPT_CHARS {
        return Err(GrammarError::PromptTooLong { chars });
    }
    weighted_parts(&args.prompt)?;
    if let Some(words) = negative_words {
        if words.is_empty() {
            return Err(GrammarError::MissingValue("--no"));
        }
        let negative = words.join(" ");
        let chars = negative.chars().count();
        if chars > MAX_NEGATIVE_CHARS {
            return Err(GrammarError::NegativeTooLong { chars });
        }
        args.negative_prompt = Some(negative);
    }
    Ok(args)
}

/// Expands permutations: each `{a, b, c}` in `text` (prompt or parameter
/// values alike) stands for each of its options in turn, and the prompts
/// are every combination, in order, the first group varying slowest.
/// Text without braces is one prompt.
pub fn expand_permutations(text: &str) -> Result<Vec<String>, GrammarError> {
    // Literal pieces and option groups, in order.
    let mut pieces: Vec<Vec<&str>> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(GrammarError::UnopenedBrace);
        }
        pieces.push(vec![&rest[..open]]);
        let inner = &rest[open + 1..];
        let close = inner.find('}').ok_or(GrammarError::UnclosedBrace)?;
        if inner[..close].contains('{') {
            return Err(GrammarError::NestedBraces);
        }
        pieces.push(inner[..close].split(',').map(str::trim).collect());
        rest = &inner[close + 1..];
    }
    pieces.push(vec![rest]);
    let count = pieces
        .iter()
        .try_fold(1usize, |n, options| n.checked_mul(options.len()))
        .filter(|&n| n <= MAX_PERMUTATIONS)
        .ok_or_else(|| GrammarError::TooManyPermutations {
            count: pieces
                .iter()
                .fold(1usize, |n, options| n.saturating_mul(options.len())),
        })?;
    let mut prompts = Vec::with_capacity(count);
    for mut index in 0..count {
        let mut chosen = Vec::with_capacity(pieces.len());
        // The last group varies fastest.
        for options in pieces.iter().rev() {
            chosen.push(options[index % options.len()]);
            index /= options.len();
        }
        chosen.reverse();
        prompts.push(chosen.concat());
    }
    Ok(prompts)
}

/// `--name` or `—name` → `name`; a bare `--` or `—` is prompt text.
fn flag_name(word: &str) -> Option<&str> {
    let name = word.strip_prefix("--").or_else(|| word.strip_prefix('—'))?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then_some(name)
}

fn set<T>(slot: &mut Option<T>, flag: &'static str, value: T) -> Result<(), GrammarError> {
    if slot.is_some() {
        return Err(GrammarError::Repeated { flag });
    }
    *slot = Some(value);
    Ok(())
}

fn parse_aspect(raw: &str) -> Result<AspectRatio, GrammarError> {
    let bad = || GrammarError::BadValue {
        flag: "--ar",
        value: raw.to_owned(),
        expected: format!(
            "W:H with whole numbers from 1 to {MAX_ASPECT_SIDE}, at most {MAX_ASPECT_STRETCH}:1 either way, e.g. 16:9"
        ),
    };
    let (w, h) = raw.split_once(':').ok_or_else(bad)?;
    let width: u32 = w.parse().map_err(|_| bad())?;
    let height: u32 = h.parse().map_err(|_| bad())?;
    let sides = 1..=MAX_ASPECT_SIDE;
    if !sides.contains(&width)
        || !sides.contains(&height)
        || width.max(height) > MAX_ASPECT_STRETCH * width.min(height)
    {
        return Err(bad());
    }
    Ok(AspectRatio { width, height })
}

impl fmt::Display for ImagineArgs {
    /// The canonical form: the prompt, then its parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prompt)?;
        if let Some(a) = self.aspect {
            write!(f, " --ar {}:{}", a.width, a.height)?;
        }
        if let Some(n) = &self.negative_prompt {
            write!(f, " --no {n}")?;
        }
        if let Some(s) = self.seed {
            write!(f, " --seed {s}")?;
        }
        if let Some(s) = self.steps {
            write!(f, " --steps {s}")?;
        }
        if let Some(g) = self.guidance {
            write!(f, " --guidance {g}")?;
        }
        if let Some(s) = &self.style {
            write!(f, " --style {s}")?;
        }
        if let Some(q) = self.quality {
            write!(f, " --quality {q}")?;
        }
        if let Some(c) = self.chaos {
            write!(f, " --chaos {c}")?;
        }
        if let Some(w) = self.image_weight {
            write!(f, " --iw {w}")?;
        }
        if self.tile {
            f.write_str(" --tile")?;
        }
        if self.draft {
            f.write_str(" --draft")?;
        }
        match self.tier {
            Some(Tier::Fast) => f.write_str(" --fast"),
            Some(Tier::Relax) => f.write_str(" --relax"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<ImagineArgs, GrammarError>) {
        assert_eq!(parse_imagine(input), expected, "input: {input:?}");
    }

    fn prompt(p: &str) -> ImagineArgs {
        ImagineArgs {
            prompt: p.to_owned(),
            ..ImagineArgs::default()
        }
    }

    #[test]
    fn accepts_prompts_with_parameters() {
        check("a red fox", Ok(prompt("a red fox")));
        check("  a   red\nfox  ", Ok(prompt("a red fox")));
        check(
            "a cozy coffee shop at sunset --ar 16:9",
            Ok(ImagineArgs {
                aspect: Some(AspectRatio {
                    width: 16,
                    height: 9,
                }),
                ..prompt("a cozy coffee shop at sunset")
            }),
        );
        check(
            "castle --no people, cars --seed 42 --steps 4 --guidance 7.5 --style PHOTO --relax",
            Ok(ImagineArgs {
                negative_prompt: Some("people, cars".into()),
                seed: Some(42),
                steps: Some(4),
                guidance: Some(7.5),
                style: Some("photo".into()),
                tier: Some(Tier::Relax),
                ..prompt("castle")
            }),
        );
        // Parameters anywhere; text after a value parameter is prompt again.
        check(
            "a cat --ar 2:3 in a hat --fast",
            Ok(ImagineArgs {
                aspect: Some(AspectRatio {
                    width: 2,
                    height: 3,
                }),
                tier: Some(Tier::Fast),
                ..prompt("a cat in a hat")
            }),
        );
        // A phone's em dash, and --cfg as an alias.
        check(
            "dunes —ar 3:2 --cfg 0",
            Ok(ImagineArgs {
                aspect: Some(AspectRatio {
                    width: 3,
                    height: 2,
                }),
                guidance: Some(0.0),
                ..prompt("dunes")
            }),
        );
        // Dashes that are not parameters stay in the prompt.
        check("a -- b — c x--y", Ok(prompt("a -- b — c x--y")));
        // --draft takes no value: the words after it are prompt again.
        check(
            "a quick sketch --draft of a barn --ar 3:2",
            Ok(ImagineArgs {
                aspect: Some(AspectRatio {
                    width: 3,
                    height: 2,
                }),
                draft: true,
                ..prompt("a quick sketch of a barn")
            }),
        );
        check(
            "fields —DRAFT --no fences --relax",
            Ok(ImagineArgs {
                negative_prompt: Some("fences".into()),
                tier: Some(Tier::Relax),
                draft: true,
                ..prompt("fields")
            }),
        );
        // After --no, --draft ends the negative prompt.
        check(
            "a cat --no dogs --draft",
            Ok(ImagineArgs {
                negative_prompt: Some("dogs".into()),
                draft: true,
                ..prompt("a cat")
            }),
        );
        check(
            "max seed --seed 4294967295",
            Ok(ImagineArgs {
                seed: Some(4_294_967_295),
                ..prompt("max seed")
            }),
        );
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        check("", Err(GrammarError::EmptyPrompt));
        check("   --ar 1:1", Err(GrammarError::EmptyPrompt));
        check(
            &"x".repeat(MAX_PROMPT_CHARS + 1),
            Err(GrammarError::PromptTooLong {
                chars: MAX_PROMPT_CHARS + 1,
            }),
        );
        check(
            "a cat --qualities 2",
            Err(GrammarError::UnknownFlag("--qualities".into())),
        );
        check(
            "a cat --quality 2",
            Ok(ImagineArgs {
                quality: Some(2),
                ..prompt("a cat")
            }),
        );
        check(
            "a cat --q 4 at night",
            Ok(ImagineArgs {
                quality: Some(4),
                ..prompt("a cat at night")
            }),
        );
        for bad in ["0", "5", "two", "1.5"] {
            check(
                &format!("a cat --quality {bad}"),
                Err(GrammarError::BadValue {
                    flag: "--quality",
                    value: bad.into(),
                    expected: "a whole number from 1 to 4".into(),
                }),
            );
        }
        check(
            "a --quality 2 --quality 3",
            Err(GrammarError::Repeated { flag: "--quality" }),
        );
        check("a cat --ar", Err(GrammarError::MissingValue("--ar")));
        check("a cat --no", Err(GrammarError::MissingValue("--no")));
        check(
            "a cat --no --seed 1",
            Err(GrammarError::MissingValue("--no")),
        );
        check(
            "a --seed 1 --seed 2",
            Err(GrammarError::Repeated { flag: "--seed" }),
        );
        check(
            "a --no x --no y",
            Err(GrammarError::Repeated { flag: "--no" }),
        );
        check("a --fast --relax", Err(GrammarError::TierConflict));
        check(
            "a --draft --draft",
            Err(GrammarError::Repeated { flag: "--draft" }),
        );
        check("--draft", Err(GrammarError::EmptyPrompt));
        check(
            "a cat --drafts",
            Err(GrammarError::UnknownFlag("--drafts".into())),
        );
        check(
            "a --fast --fast",
            Err(GrammarError::Repeated { flag: "--fast" }),
        );
        for (input, flag, value) in [
            ("a --ar 16x9", "--ar", "16x9"),
            ("a --ar 0:1", "--ar", "0:1"),
            ("a --ar 5:1", "--ar", "5:1"),
            ("a --ar 33:32", "--ar", "33:32"),
            ("a --seed -1", "--seed", "-1"),
            ("a --seed 4294967296", "--seed", "4294967296"),
            ("a --steps 0", "--steps", "0"),
            ("a --steps 51", "--steps", "51"),
            ("a --guidance 21", "--guidance", "21"),
            ("a --guidance NaN", "--guidance", "NaN"),
            ("a --style baroque", "--style", "baroque"),
        ] {
            match parse_imagine(input) {
                Err(GrammarError::BadValue {
                    flag: f, value: v, ..
                }) => {
                    assert_eq!((f, v.as_str()), (flag, value), "{input}");
                }
                other => panic!("{input}: expected a bad value, got {other:?}"),
            }
        }
    }

    #[test]
    fn reads_chaos_tile_and_image_weight() {
        check(
            "moss --chaos 40 --tile --iw 1.5",
            Ok(ImagineArgs {
                chaos: Some(40),
                tile: true,
                image_weight: Some(1.5),
                ..prompt("moss")
            }),
        );
        check(
            "moss --c 100 --iw 0",
            Ok(ImagineArgs {
                chaos: Some(100),
                image_weight: Some(0.0),
                ..prompt("moss")
            }),
        );
        for (input, flag, value) in [
            ("a --chaos 101", "--chaos", "101"),
            ("a --chaos -1", "--chaos", "-1"),
            ("a --chaos 5.5", "--chaos", "5.5"),
            ("a --iw 2.1", "--iw", "2.1"),
            ("a --iw -0.5", "--iw", "-0.5"),
            ("a --iw inf", "--iw", "inf"),
        ] {
            match parse_imagine(input) {
                Err(GrammarError::BadValue {
                    flag: f, value: v, ..
                }) => assert_eq!((f, v.as_str()), (flag, value), "{input}"),
                other => panic!("{input}: expected a bad value, got {other:?}"),
            }
        }
        check(
            "a --tile --tile",
            Err(GrammarError::Repeated { flag: "--tile" }),
        );
        check(
            "a --chaos 1 --c 2",
            Err(GrammarError::Repeated { flag: "--chaos" }),
        );
        check("a --iw", Err(GrammarError::MissingValue("--iw")));
    }

    #[test]
    fn weighted_prompts_are_checked_before_the_queue() {
        check(
            "a castle:: winter::2 fog::-0.5 --ar 3:2",
            Ok(ImagineArgs {
                aspect: Some(AspectRatio {
                    width: 3,
                    height: 2,
                }),
                ..prompt("a castle:: winter::2 fog::-0.5")
            }),
        );
        check(
            "fog::-2 castle",
            Err(GrammarError::Weights(WeightError::NotPositive(-1.0))),
        );
        check(
            "::3 castle",
            Err(GrammarError::Weights(WeightError::EmptyPart)),
        );
    }

    #[test]
    fn permutations_expand_into_every_combination() {
        for (input, expected) in [
            ("a red bird", vec!["a red bird"]),
            (
                "a {red, blue, green} bird",
                vec!["a red bird", "a blue bird", "a green bird"],
            ),
            (
                "a {red,blue} bird --ar {1:1, 16:9}",
                vec![
                    "a red bird --ar 1:1",
                    "a red bird --ar 16:9",
                    "a blue bird --ar 1:1",
                    "a blue bird --ar 16:9",
                ],
            ),
            // An empty option leaves the words out.
            ("a {, tiny} cat", vec!["a  cat", "a tiny cat"]),
            ("{solo}", vec!["solo"]),
        ] {
            assert_eq!(
                expand_permutations(input),
                Ok(expected.iter().map(|s| s.to_string()).collect()),
                "{input}"
            );
        }
        for (input, expected) in [
            ("a {red, blue bird", GrammarError::UnclosedBrace),
            ("a red} bird", GrammarError::UnopenedBrace),
            ("a {red, {blue, green}} bird", GrammarError::NestedBraces),
            (
                "{a,b,c} {d,e,f} {g,h}",
                GrammarError::TooManyPermutations { count: 18 },
            ),
        ] {
            assert_eq!(expand_permutations(input), Err(expected), "{input}");
        }
        // Exactly the limit is allowed.
        assert_eq!(
            expand_permutations("{a,b,c} {d,e,f,g}").unwrap().len(),
            MAX_PERMUTATIONS
        );
        // Every expanded prompt goes through the grammar on its own.
        let prompts = expand_permutations("a fox --steps {2, 99}").unwrap();
        assert!(parse_imagine(&prompts[0]).is_ok());
        assert!(parse_imagine(&prompts[1]).is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let text = parse_imagine("a --steps 99").unwrap_err().to_string();
        assert_eq!(
            text,
            "`--steps 99` is not valid: a whole number from 1 to 50"
        );
        let text = parse_imagine("a --style baroque").unwrap_err().to_string();
        assert!(text.contains("photo, cinematic"), "{text}");
    }

    #[test]
    fn canonical_form_parses_back_to_the_same_arguments() {
        for input in [
            "a cat --ar 16:9 --no dogs, birds --seed 3 --steps 2 --guidance 1.5 --style anime --relax",
            "moss::2 stone --chaos 30 --tile --iw 0.5",
            "a barn --draft --fast",
            "just words",
        ] {
            let parsed = parse_imagine(input).unwrap();
            assert_eq!(parse_imagine(&parsed.to_string()).unwrap(), parsed);
        }
    }
}
