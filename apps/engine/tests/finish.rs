//! Finishing through the binary: imagine with CLIP scores, reranking, the
//! safety check and an upscale; the `upscale` and `score` commands. Runs on
//! the tiny Stable Diffusion model and tiny CLIP, with the real upscaler and
//! safety weights (fetched by the test command).
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{scratch, weights_dir};
use wordup_engine::finish::output;

fn engine(args: &[&str]) -> Output {
    let weights = weights_dir();
    Command::new(env!("CARGO_BIN_EXE_wordup-engine"))
        .args(args)
        .env(
            "WORDUP_UPSCALER_WEIGHTS",
            weights.join("RealESRGAN_x4plus.safetensors"),
        )
        .env(
            "WORDUP_SAFETY_WEIGHTS",
            weights.join("open_nsfw.safetensors"),
        )
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

fn ok(output: &Output) -> Vec<String> {
    common::stdout_lines(output)
}

fn clip_dir() -> String {
    common::fixtures().join("clip-tiny").display().to_string()
}

fn text_of(path: &Path, key: &str) -> Option<String> {
    let bytes = std::fs::read(path).unwrap();
    output::png_text(&bytes)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn imagine_reranks_scores_checks_and_upscales() {
    let model = scratch("finish-model");
    wordup_engine_testkit::tiny::write_tiny_model(&model).unwrap();
    let out = scratch("finish-out");
    let (model_arg, out_arg, clip) = (
        model.display().to_string(),
        out.display().to_string(),
        clip_dir(),
    );
    let lines = ok(&engine(&[
        "imagine",
        "a red fox in the snow",
        "--model",
        &model_arg,
        "--out",
        &out_arg,
        "--cpu",
        "--seed",
        "3",
        "-n",
        "2",
        "--rerank",
        "4",
        "--steps",
        "2",
        "--clip",
        &clip,
        "--upscale",
        "1",
        "--upscale-mode",
        "subtle",
    ]));
    // Two images with scores, the grid, and the upscale.
    assert_eq!(lines.len(), 4, "{lines:?}");
    let (first, first_score) = lines[0].split_once("\tclip score ").unwrap();
    let (_, second_score) = lines[1].split_once("\tclip score ").unwrap();
    let (a, b): (f32, f32) = (first_score.parse().unwrap(), second_score.parse().unwrap());
    assert!(a >= b, "reranked best first: {a} {b}");
    let first = Path::new(first);
    assert_eq!(
        text_of(first, "prompt").as_deref(),
        Some("a red fox in the snow")
    );
    assert_eq!(text_of(first, "clip_score").as_deref(), Some(first_score));
    assert!(
        text_of(first, "DigitalSourceType")
            .unwrap()
            .ends_with("trainedAlgorithmicMedia")
    );
    let seed: u64 = text_of(first, "seed").unwrap().parse().unwrap();
    assert!(
        (3..7).contains(&seed),
        "one of the four candidates' seeds: {seed}"
    );

    assert!(lines[2].ends_with("-grid.png"));
    let grid = image::open(&lines[2]).unwrap();
    assert_eq!((grid.width(), grid.height()), (128, 64));
    assert!(lines[3].ends_with("-subtle.png"));
    let upscaled = image::open(&lines[3]).unwrap();
    assert_eq!((upscaled.width(), upscaled.height()), (128, 128));

    std::fs::remove_dir_all(model).ok();
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn a_blocked_concept_that_clip_sees_withholds_the_image() {
    let model = scratch("concept-model");
    wordup_engine_testkit::tiny::write_tiny_model(&model).unwrap();
    let out = scratch("concept-out");
    let (model_arg, out_arg, clip) = (
        model.display().to_string(),
        out.display().to_string(),
        clip_dir(),
    );
    let base = [
        "imagine",
        "a red fox",
        "--model",
        &model_arg,
        "--out",
        &out_arg,
        "--cpu",
        "--seed",
        "3",
        "--steps",
        "1",
        "--clip",
        &clip,
    ];
    // A threshold of 0 makes every concept present; 100 makes none.
    let mut blocked: Vec<&str> = base.to_vec();
    blocked.extend([
        "--blocked-concepts",
        "a red fox,a cat",
        "--concept-threshold",
        "0",
    ]);
    let output = engine(&blocked);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("withheld: CLIP sees \"a red fox\""));
    assert!(ok(&output).is_empty(), "nothing written");
    let mut allowed: Vec<&str> = base.to_vec();
    allowed.extend([
        "--blocked-concepts",
        "a red fox",
        "--concept-threshold",
        "100",
    ]);
    assert_eq!(ok(&engine(&allowed)).len(), 1);
    std::fs::remove_dir_all(model).ok();
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn upscale_and_score_commands() {
    let dir = scratch("finish-cmds");
    let input = dir.join("small.png");
    image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, 90])
    })
    .save(&input)
    .unwrap();
    let input_arg = input.display().to_string();
    let lines = ok(&engine(&["upscale", &input_arg, "--scale", "2", "--cpu"]));
    assert!(lines[0].ends_with("small-x2.png"));
    assert_eq!(image::open(&lines[0]).unwrap().width(), 48);
    let bad = engine(&["upscale", &input_arg, "--scale", "3", "--cpu"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be 2 or 4"));

    let clip = clip_dir();
    let image0 = PathBuf::from(&clip)
        .join("image_0.png")
        .display()
        .to_string();
    let lines = ok(&engine(&[
        "score",
        &image0,
        "a red fox in the snow",
        "--clip",
        &clip,
        "--cpu",
    ]));
    let score: f32 = lines[0].parse().unwrap();
    // transformers' score for this pair (reference.json, clip_score[0][1]).
    assert!((score - 8.79).abs() < 0.01, "{score}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_draft_is_upscaled_from_the_vaes_decode_of_its_latents() {
    let model = scratch("finish-draft-model");
    wordup_engine_testkit::tiny::write_tiny_model(&model).unwrap();
    let taesd = model.join("draft-decoder");
    wordup_engine_testkit::tiny::write_tiny_taesd(&taesd).unwrap();
    let (model_arg, taesd_arg) = (model.display().to_string(), taesd.display().to_string());
    let run = |out: &Path, draft: bool| {
        let out_arg = out.display().to_string();
        let mut args = vec![
            "imagine",
            "a lighthouse",
            "--model",
            &model_arg,
            "--out",
            &out_arg,
            "--cpu",
            "--seed",
            "9",
            "--steps",
            "2",
            "--upscale",
            "1",
        ];
        if draft {
            args.extend(["--draft", "--draft-decoder", &taesd_arg]);
        }
        let lines = ok(&engine(&args));
        assert_eq!(lines.len(), 2, "the image and its upscale: {lines:?}");
        lines
    };
    let (full_dir, draft_dir) = (scratch("finish-full"), scratch("finish-draft"));
    let full = run(&full_dir, false);
    let draft = run(&draft_dir, true);
    let open = |path: &str| image::open(path).unwrap().to_rgb8();
    // (Compared without printing 256×256 pixels on failure.)
    assert!(open(&draft[0]) != open(&full[0]), "the draft is TAESD's");
    // Both upscales start from the VAE's picture of the same latents.
    assert!(
        open(&draft[1]) == open(&full[1]),
        "the draft's upscale is not the full image's"
    );
    assert_eq!(text_of(Path::new(&draft[1]), "draft_decoder"), None);
    assert!(text_of(Path::new(&draft[0]), "draft_decoder").is_some());
    for dir in [model, full_dir, draft_dir] {
        std::fs::remove_dir_all(dir).ok();
    }
}
