//! CLIP's tokenizer from a model's `tokenizer/` folder (`vocab.json` and
//! `merges.txt`, or `tokenizer.json` alone as transformers 5 saves it; and
//! `tokenizer_config.json`), on the tokenizers crate with CLIP's
//! normalisation and split, as transformers' CLIPTokenizerFast.
//!
//! It is its own crate because the engine encodes prompts with it and the
//! bot counts their tokens with it, to refuse an over-long prompt at once.
//!
//! Long prompts are not cut: they are split into chunks of
//! `max_len - 2` tokens, each wrapped in start/end tokens and padded, and the
//! text encoder's outputs of the chunks are concatenated.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenizers::Tokenizer;

pub mod html;
mod html_entities;

/// Why a tokenizer could not be built or a text encoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("tokenizer: {0}")]
    Invalid(String),
    /// The text needs more chunks than a model reads.
    #[error("prompt is {tokens} tokens long; the limit is {limit}")]
    TooLong { tokens: usize, limit: usize },
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

pub const START: &str = "<|startoftext|>";
pub const END: &str = "<|endoftext|>";
/// CLIP's pre-tokenisation pattern.
const SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The single-file tokenizer that current transformers saves.
pub const TOKENIZER_JSON: &str = "tokenizer.json";

/// The BPE vocabulary and merges ("a b" lines) inside a `tokenizer.json`,
/// whose merges are "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs.
fn bpe_of_tokenizer_json(mut json: Value) -> Result<(Value, Vec<String>)> {
    let model = &mut json["model"];
    if model["type"].as_str().is_some_and(|kind| kind != "BPE") {
        return Err(TokenizerError::Invalid(format!(
            "tokenizer.json holds a {} model, not CLIP's BPE",
            model["type"]
        )));
    }
    let vocab = model["vocab"].take();
    if !vocab.is_object() {
        return Err(TokenizerError::Invalid(
            "tokenizer.json has no BPE vocabulary".into(),
        ));
    }
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| TokenizerError::Invalid("tokenizer.json has no BPE merges".into()))?
        .iter()
        .map(|merge| match merge {
            Value::String(line) => Some(line.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Some(format!("{a} {b}")),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| TokenizerError::Invalid("tokenizer.json has a malformed merge".into()))?;
    Ok((vocab, merges))
}

#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    start: u32,
    end: u32,
    pad: u32,
    /// Tokens per chunk, start and end included (77 for every SD model).
    pub max_len: usize,
    /// Chunks a prompt may use at most.
    pub max_chunks: usize,
}

impl ClipTokenizer {
    /// Loads the vocabulary and merges from `dir` (`vocab.json` and
    /// `merges.txt`, else the BPE model inside `tokenizer.json`), and the pad
    /// token and length from `tokenizer_config.json` where present. Either
    /// way CLIP's own normalisation and split apply.
    pub fn from_dir(dir: &Path) -> Result<ClipTokenizer> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| TokenizerError::Io { path, source })
        };
        let parse = |name: &str| -> Result<Value> {
            serde_json::from_str(&read(name)?).map_err(|source| TokenizerError::Json {
                path: dir.join(name),
                source,
            })
        };
        let (vocab, merges) =
            if dir.join("vocab.json").is_file() || !dir.join(TOKENIZER_JSON).is_file() {
                let merges: Vec<String> = read("merges.txt")?
                    .lines()
                    .filter(|line| !line.starts_with("#version") && !line.trim().is_empty())
                    .map(str::to_owned)
                    .collect();
                (parse("vocab.json")?, merges)
            } else {
                bpe_of_tokenizer_json(parse(TOKENIZER_JSON)?)?
            };
        let optional_json = |name: &str| match read(name) {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let config = optional_json("tokenizer_config.json");
        let special_map = optional_json("special_tokens_map.json");
        // transformers lets special_tokens_map.json override the config.
        let pad = token_name(&special_map["pad_token"])
            .or_else(|| token_name(&config["pad_token"]))
            .unwrap_or_else(|| END.to_owned());
        let max_len = config["model_max_length"]
            .as_u64()
            .filter(|n| (3..=1024).contains(n))
            .unwrap_or(77) as usize;
        ClipTokenizer::new(vocab, merges, &pad, max_len)
    }

    pub fn new(
        vocab: Value,
        merges: Vec<String>,
        pad: &str,
        max_len: usize,
    ) -> Result<ClipTokenizer> {
        let id_of = |token: &str| {
            vocab[token]
                .as_u64()
                .map(|id| id as u32)
                .ok_or_else(|| TokenizerError::Invalid(format!("vocabulary has no {token:?}")))
        };
        let (start, end, pad_id) = (id_of(START)?, id_of(END)?, id_of(pad)?);
        // Special tokens are matched before BPE and never split; transformers
        // makes the pad token one, so SD 2's "!" always maps to its own id.
        let special = |id: u32, content: &str| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        };
        let mut added_tokens = vec![special(start, START), special(end, END)];
        if pad != START && pad != END {
            added_tokens.push(special(pad_id, pad));
        }
        let pad = pad_id;
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}
            ]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": SPLIT}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": END,
                "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges
            }
        });
        let inner: Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|error| TokenizerError::Invalid(format!("building the tokenizer: {error}")))?;
        Ok(ClipTokenizer {
            inner,
            start,
            end,
            pad,
            max_len,
            max_chunks: 4,
        })
    }

    /// Token ids of `text` without start, end or padding.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let cleaned = clean(text);
        let encoding = self
            .inner
            .encode(cleaned.as_str(), false)
            .map_err(|error| TokenizerError::Invalid(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of `text` with start and end tokens, unpadded (as CLIP's
    /// reference tokenizer gives them).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.start];
        ids.extend(self.encode_raw(text)?);
        ids.push(self.end);
        Ok(ids)
    }

    /// `text` as padded chunks of `max_len` ids: one chunk for prompts that
    /// fit, more for longer ones, at least `min_chunks`.
    pub fn encode_chunks(&self, text: &str, min_chunks: usize) -> Result<Vec<Vec<u32>>> {
        let ids = self.encode_raw(text)?;
        let per_chunk = self.max_len - 2;
        let needed = ids.len().div_ceil(per_chunk).max(1);
        if needed > self.max_chunks {
            return Err(TokenizerError::TooLong {
                tokens: ids.len(),
                limit: self.token_limit(),
            });
        }
        let count = needed.max(min_chunks);
        Ok((0..count)
            .map(|chunk| {
                let from = (chunk * per_chunk).min(ids.len());
                let to = ((chunk + 1) * per_chunk).min(ids.len());
                let mut padded = Vec::with_capacity(self.max_len);
                padded.push(self.start);
                padded.extend_from_slice(&ids[from..to]);
                padded.push(self.end);
                padded.resize(self.max_len, self.pad);
                padded
            })
            .collect())
    }

    /// The most tokens a text may have (its chunks, start and end excluded).
    pub fn token_limit(&self) -> usize {
        self.max_chunks * (self.max_len - 2)
    }

    /// How many tokens `text` has, as the text encoder reads it.
    pub fn count(&self, text: &str) -> Result<usize> {
        Ok(self.encode_raw(text)?.len())
    }

    /// The tokenizer as a `tokenizer.json`, in the tokenizers crate's
    /// current format (merges as pairs), as transformers 5 saves it.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|error| TokenizerError::Invalid(format!("saving the tokenizer: {error}")))
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }
}

/// The name of a special token in tokenizer_config.json: a string, or an
/// object with a `content` field.
fn token_name(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map
            .get("content")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// What CLIP's reference tokenizer does before BPE besides lower-casing and
/// whitespace: HTML entities unescaped (twice, as it does), and the parts of
/// ftfy's `fix_text` that prompts meet: curly quotes, Latin ligatures and
/// full-width forms. ftfy's mojibake repair is not reproduced.
fn clean(text: &str) -> String {
    let text = html::unescape(&html::unescape(text));
    text.chars()
        .flat_map(|c| {
            let fixed: &[char] = match c {
                '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' => &['\''],
                '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' => &['"'],
                '\u{fb00}' => &['f', 'f'],
                '\u{fb01}' => &['f', 'i'],
                '\u{fb02}' => &['f', 'l'],
                '\u{fb03}' => &['f', 'f', 'i'],
                '\u{fb04}' => &['f', 'f', 'l'],
                '\u{fb05}' | '\u{fb06}' => &['s', 't'],
                _ => &[],
            };
            let width_fixed = match c as u32 {
                0xff01..=0xff5e => char::from_u32(c as u32 - 0xfee0),
                0x3000 => Some(' '),
                _ => None,
            };
            match (fixed.is_empty(), width_fixed) {
                (false, _) => fixed.to_vec(),
                (true, Some(narrow)) => vec![narrow],
                (true, None) => vec![c],
            }
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_entities_are_unescaped_like_python() {
        for (input, expected) in [
            ("fish &amp; chips", "fish & chips"),
            ("&amp;amp;", "&"),
            ("a &lt;b&gt;", "a <b>"),
            ("&#233;t&#xE9;", "été"),
            ("AT&T", "AT&T"),
            ("&unknown; &", "&unknown; &"),
            ("\u{201c}hi\u{201d} it\u{2019}s", "\"hi\" it's"),
            ("\u{fb01}ne \u{ff21}\u{ff22}\u{ff11}", "fine AB1"),
        ] {
            assert_eq!(clean(input), expected, "{input}");
        }
    }
}
