//! `wordup-engine imagine` against a local diffusers model directory (the
//! tiny random-weight model), as a user runs it.
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::scratch;

fn imagine(model: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wordup-engine"))
        .arg("imagine")
        .args(args)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .arg("--cpu")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

fn written(output: &Output) -> Vec<PathBuf> {
    common::stdout_lines(output)
        .into_iter()
        .map(PathBuf::from)
        .collect()
}

#[test]
fn imagine_writes_seeded_images_of_the_asked_shape() {
    let model = scratch("model");
    wordup_engine_testkit::tiny::write_tiny_model(&model).unwrap();
    let out = scratch("out");

    let first = written(&imagine(
        &model,
        &out,
        &[
            "a red fox in the snow",
            "--seed",
            "7",
            "-n",
            "2",
            "--ar",
            "2:1",
            "--steps",
            "2",
        ],
    ));
    assert_eq!(first.len(), 3, "two images and their grid: {first:?}");
    assert!(
        first[0].ends_with("a-red-fox-in-the-snow-7.png"),
        "{first:?}"
    );
    assert!(first[1].ends_with("a-red-fox-in-the-snow-8.png"));
    assert!(first[2].ends_with("a-red-fox-in-the-snow-7-grid.png"));
    assert_eq!(
        image::open(&first[2]).unwrap().width(),
        2 * image::open(&first[0]).unwrap().width()
    );
    let image = image::open(&first[0]).unwrap().to_rgb8();
    // 64×64 native: 2:1 within 4096 pixels, sides multiples of 4.
    // The largest size within 4096 pixels whose sides are multiples of 4
    // and whose ratio is within 10% of 2:1.
    assert_eq!(image.dimensions(), (92, 44));
    let a = std::fs::read(&first[0]).unwrap();
    let b = std::fs::read(&first[1]).unwrap();
    assert_ne!(a, b, "different seeds, different images");

    let again_dir = scratch("again");
    let again = written(&imagine(
        &model,
        &again_dir,
        &[
            "a red fox in the snow",
            "--seed",
            "7",
            "--ar",
            "2:1",
            "--steps",
            "2",
        ],
    ));
    // Same seed, same image: drawn alone rather than beside seed 8, the
    // products run in other shapes, so rounding may move a pixel by a level.
    let alone = image::open(&again[0]).unwrap().to_rgb8();
    let apart = alone
        .as_raw()
        .iter()
        .zip(image.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap();
    assert!(apart <= 1, "same seed, same image: {apart} levels apart");

    let guided = written(&imagine(
        &model,
        &again_dir,
        &[
            "a red fox",
            "--seed",
            "7",
            "--guidance",
            "4",
            "--no",
            "blurry",
            "--scheduler",
            "ddim",
            "--steps",
            "2",
        ],
    ));
    assert_eq!(guided.len(), 1);

    for dir in [model, out, again_dir] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let model = scratch("model-bad");
    wordup_engine_testkit::tiny::write_tiny_model(&model).unwrap();
    let out = scratch("out-bad");
    for (args, message) in [
        (
            vec!["x", "--ar", "16-9"],
            "aspect ratio must look like 16:9",
        ),
        (
            vec!["x", "--images", "0"],
            "--images must be between 1 and 16",
        ),
        (vec!["x", "--scheduler", "plms"], "unknown scheduler"),
        (vec![&*"cat ".repeat(400)], "the limit is 300"),
    ] {
        let output = imagine(&model, &out, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let missing = imagine(&out.join("nope"), &out, &["x"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("cannot fetch") || stderr.contains("not a diffusers model"),
        "{stderr}"
    );
    std::fs::remove_dir_all(model).ok();
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn run_refuses_a_concept_check_without_clip() {
    let output = Command::new(env!("CARGO_BIN_EXE_wordup-engine"))
        .arg("run")
        .env("WORDUP_BLOCKED_CONCEPTS", "gore")
        .env("WORDUP_CLIP_MODEL", "off")
        // Never reached: the check comes before any connection.
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("WORDUP_BLOCKED_CONCEPTS is set but WORDUP_CLIP_MODEL is off"),
        "{stderr}"
    );
}

#[test]
fn a_model_saved_by_current_transformers_loads() {
    // transformers 5 saves tokenizer/tokenizer.json without vocab.json or merges.txt.
    let model = scratch("model-tokenizer-json");
    wordup_engine_testkit::tiny::write_tiny_model(&model).unwrap();
    wordup_engine_testkit::tiny::to_tokenizer_json_only(&model.join("tokenizer")).unwrap();
    let out = scratch("out-tokenizer-json");
    let written = written(&imagine(&model, &out, &["a red fox", "--seed", "3"]));
    assert_eq!(written.len(), 1, "{written:?}");
    std::fs::remove_dir_all(model).ok();
    std::fs::remove_dir_all(out).ok();
}

fn text_of(path: &Path, key: &str) -> Option<String> {
    let bytes = std::fs::read(path).unwrap();
    wordup_engine::finish::output::png_text(&bytes)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn draft_images_come_from_the_draft_decoder() {
    let model = scratch("model-draft");
    wordup_engine_testkit::tiny::write_tiny_model(&model).unwrap();
    let taesd = model.join("draft-decoder");
    wordup_engine_testkit::tiny::write_tiny_taesd(&taesd).unwrap();
    let taesd_arg = taesd.display().to_string();
    let (full_dir, draft_dir) = (scratch("out-full"), scratch("out-draft"));
    let args = ["a red fox", "--seed", "5", "--steps", "2", "--ar", "3:2"];

    let full = written(&imagine(&model, &full_dir, &args));
    let drafted = imagine(
        &model,
        &draft_dir,
        &[&args[..], &["--draft", "--draft-decoder", &taesd_arg]].concat(),
    );
    let stderr = String::from_utf8_lossy(&drafted.stderr);
    assert!(stderr.contains("draft decoded by"), "{stderr}");
    let draft = written(&drafted);
    assert_eq!((full.len(), draft.len()), (1, 1));
    let (full_image, draft_image) = (
        image::open(&full[0]).unwrap().to_rgb8(),
        image::open(&draft[0]).unwrap().to_rgb8(),
    );
    assert_eq!(draft_image.dimensions(), full_image.dimensions());
    assert!(draft_image != full_image, "the draft decoder's picture");
    assert_eq!(
        text_of(&draft[0], "draft_decoder").as_deref(),
        Some(taesd_arg.as_str())
    );
    assert_eq!(text_of(&full[0], "draft_decoder"), None);

    // --draft with no draft decoder, or one that does not fit the model.
    let misfit = common::fixtures().join("taesd-tiny").display().to_string();
    for (decoder, message) in [
        ("off", "--draft needs a draft decoder"),
        (misfit.as_str(), "does not fit the model"),
    ] {
        let output = imagine(
            &model,
            &draft_dir,
            &["x", "--draft", "--draft-decoder", decoder],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{decoder}");
        assert!(stderr.contains(message), "{decoder}: {stderr}");
    }
    for dir in [model, full_dir, draft_dir] {
        std::fs::remove_dir_all(dir).ok();
    }
}
