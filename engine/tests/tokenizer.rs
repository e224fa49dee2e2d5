//! The CLIP tokenizer on the real CLIP BPE vocabulary against the ids of
//! OpenAI's reference tokenizer (fixtures made by
//! scripts/fixtures/make_clip_tokenizer.py).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use wordup_tokenizer::ClipTokenizer;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tokenizer")
}

/// ftfy's mojibake repair is the one cleaning step we do not reproduce.
const KNOWN_DIFFERENCES: &[&str] = &["cafÃ© crÃ¨me (mojibake)"];

#[test]
fn matches_openai_reference_ids() {
    let tokenizer = ClipTokenizer::from_dir(&fixtures()).unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("reference_ids.json")).unwrap(),
    )
    .unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    let mut checked = 0;
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap() as u32)
            .collect();
        let got = tokenizer.encode(text).unwrap();
        if KNOWN_DIFFERENCES.contains(&text) {
            assert_ne!(
                got, expected,
                "{text:?} now matches: drop it from KNOWN_DIFFERENCES"
            );
            continue;
        }
        assert_eq!(got, expected, "{text:?}");
        checked += 1;
    }
    assert_eq!(checked, cases.len() - KNOWN_DIFFERENCES.len());
}

#[test]
fn a_tokenizer_json_alone_gives_the_same_ids() {
    let dir = wordup_engine_testkit::fixtures::scratch("tokenizer-json");
    for name in ["vocab.json", "merges.txt"] {
        std::fs::copy(fixtures().join(name), dir.join(name)).unwrap();
    }
    wordup_engine_testkit::tiny::to_tokenizer_json_only(&dir).unwrap();
    assert!(!dir.join("vocab.json").exists());
    let from_json = ClipTokenizer::from_dir(&dir).unwrap();
    let from_bpe_files = ClipTokenizer::from_dir(&fixtures()).unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("reference_ids.json")).unwrap(),
    )
    .unwrap();
    for case in reference["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            from_json.encode(text).unwrap(),
            from_bpe_files.encode(text).unwrap(),
            "{text:?}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn long_prompts_are_chunked_not_cut() {
    let tokenizer = ClipTokenizer::from_dir(&fixtures()).unwrap();
    let prompt = "a watercolour painting of a lighthouse on a cliff at dawn, ".repeat(10);
    let raw = tokenizer.encode_raw(&prompt).unwrap();
    assert!(raw.len() > 75 && raw.len() <= 150, "{} tokens", raw.len());
    let chunks = tokenizer.encode_chunks(&prompt, 1).unwrap();
    assert_eq!(chunks.len(), 2);
    let rejoined: Vec<u32> = chunks
        .iter()
        .flat_map(|chunk| {
            assert_eq!(chunk.len(), 77);
            assert_eq!(chunk[0], 49406);
            let end = chunk.iter().position(|id| *id == 49407).unwrap();
            chunk[1..end].to_vec()
        })
        .collect();
    assert_eq!(rejoined, raw, "every token is kept, in order");

    let short = tokenizer.encode_chunks("a cat", 2).unwrap();
    assert_eq!(short.len(), 2, "padded up to the asked chunk count");
    let too_long = "cat ".repeat(400);
    let error = tokenizer
        .encode_chunks(&too_long, 1)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("400 tokens") && error.contains("limit is 300"),
        "{error}"
    );
}
