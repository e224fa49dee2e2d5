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
    assert_eq!(
        std::fs::read(&again[0]).unwrap(),
        a,
        "same seed, same image"
    );

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
fn run_refuses_settings_it_would_ignore() {
    let output = Command::new(env!("CARGO_BIN_EXE_wordup-engine"))
        .arg("run")
        .env("WORDUP_BLOCKED_CONCEPTS", "gore")
        // Never reached: the check comes before any connection.
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("WORDUP_BLOCKED_CONCEPTS is set"),
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
