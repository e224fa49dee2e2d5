//! Model download through hf-hub against a fake hub on 127.0.0.1 that
//! speaks the hub's resolve protocol (ranged GETs, etag and commit headers),
//! run through the real `wordup-engine models fetch` command.
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::scratch;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use wordup_engine::sd::source::{ModelSource, SingleModelFiles, Variant};
use wordup_engine::sd::taesd::TinyAutoEncoder;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Serves each `(root, repo, revision)`: `root`'s files as repo `repo` at
/// revision `revision`; records request paths.
async fn fake_hub(
    repos: Vec<(PathBuf, &'static str, &'static str)>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let repos = Arc::new(repos);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let repos = repos.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).await.unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_owned();
                log.lock().unwrap().push(path.clone());
                let file = repos.iter().find_map(|(root, repo, revision)| {
                    let prefix = format!("/{repo}/resolve/{revision}/");
                    path.strip_prefix(&prefix).map(|f| root.join(f))
                });
                let response = match file.as_deref().map(std::fs::read) {
                    Some(Ok(bytes)) => {
                        let total = bytes.len();
                        let (start, end) = headers
                            .get("range")
                            .and_then(|r| r.strip_prefix("bytes="))
                            .and_then(|r| r.split_once('-'))
                            .map(|(a, b)| {
                                (
                                    a.parse::<usize>().unwrap(),
                                    b.parse::<usize>().unwrap().min(total - 1),
                                )
                            })
                            .unwrap_or((0, total - 1));
                        let body = &bytes[start..=end];
                        let mut head = format!(
                            "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {start}-{end}/{total}\r\netag: \"{:x}-{total}\"\r\nx-repo-commit: {COMMIT}\r\nconnection: close\r\n\r\n",
                            body.len(),
                            path.len() * 7919 + total,
                        )
                        .into_bytes();
                        head.extend_from_slice(body);
                        head
                    }
                    _ => {
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = write.write_all(&response).await;
                let _ = write.shutdown().await;
            });
        }
    });
    (format!("http://{address}"), seen)
}

/// `models fetch` of `model` at `revision`, and of the draft decoder `draft`
/// (a hub id, or "off").
fn fetch(
    endpoint: &str,
    home: &Path,
    model: &str,
    revision: &str,
    draft: &str,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wordup-engine"))
        .args([
            "models",
            "fetch",
            "--cpu",
            "--model",
            model,
            "--revision",
            revision,
            "--draft-decoder",
            draft,
        ])
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_fetch_downloads_a_pinned_revision_and_the_model_loads() {
    let served = scratch("hub-files");
    wordup_engine_testkit::tiny::write_tiny_model(&served).unwrap();
    let served_draft = scratch("hub-files-draft");
    wordup_engine_testkit::tiny::write_tiny_taesd(&served_draft).unwrap();
    // The draft decoder is fetched at its main revision, the model at the pinned one.
    let (endpoint, seen) = fake_hub(vec![
        (served.clone(), "wordup/tiny-sd", "v1"),
        (served_draft.clone(), "wordup/tiny-sd-draft", "main"),
    ])
    .await;
    let home = scratch("hf-home");

    let output = tokio::task::spawn_blocking({
        let (endpoint, home) = (endpoint.clone(), home.clone());
        move || {
            fetch(
                &endpoint,
                &home,
                "wordup/tiny-sd",
                "v1",
                "wordup/tiny-sd-draft",
            )
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("wordup/tiny-sd is ready in"), "{stdout}");
    assert!(
        stdout.contains("draft decoder wordup/tiny-sd-draft@main is ready in"),
        "{stdout}"
    );

    let requests = seen.lock().unwrap().clone();
    assert!(
        requests.iter().all(|path| {
            path.starts_with("/wordup/tiny-sd/resolve/v1/")
                || path.starts_with("/wordup/tiny-sd-draft/resolve/main/")
        }),
        "{requests:?}"
    );
    assert!(
        requests.contains(
            &"/wordup/tiny-sd-draft/resolve/main/diffusion_pytorch_model.safetensors".to_owned()
        ),
        "{requests:?}"
    );
    let draft_snapshot = home
        .join("hub/models--wordup--tiny-sd-draft/snapshots")
        .join(COMMIT);
    let draft_files = SingleModelFiles::from_dir(&draft_snapshot, Variant::Full).unwrap();
    let options = wordup_engine::PipelineOptions {
        device: candle_core::Device::Cpu,
        dtype: candle_core::DType::F32,
        scheduler: None,
    };
    TinyAutoEncoder::load(&draft_files, &options).unwrap();
    assert!(
        requests
            .iter()
            .any(|path| path.ends_with("unet/diffusion_pytorch_model.safetensors"))
    );

    // The cache holds a snapshot at the served commit that loads as a model.
    let snapshot = home
        .join("hub/models--wordup--tiny-sd/snapshots")
        .join(COMMIT);
    let files = wordup_engine::sd::source::ModelFiles::from_dir(
        &snapshot,
        wordup_engine::sd::source::Variant::Full,
    )
    .unwrap();
    for (ours, theirs) in [
        (
            &files.unet_weights,
            served.join("unet/diffusion_pytorch_model.safetensors"),
        ),
        (
            &files.vae_weights,
            served.join("vae/diffusion_pytorch_model.safetensors"),
        ),
    ] {
        assert_eq!(std::fs::read(ours).unwrap(), std::fs::read(theirs).unwrap());
    }

    // A second fetch is served from the cache: the hub is not asked again.
    let before = seen.lock().unwrap().len();
    let output = tokio::task::spawn_blocking({
        let (endpoint, home) = (endpoint.clone(), home.clone());
        move || {
            fetch(
                &endpoint,
                &home,
                "wordup/tiny-sd",
                "v1",
                "wordup/tiny-sd-draft",
            )
        }
    })
    .await
    .unwrap();
    assert!(output.status.success());
    assert_eq!(seen.lock().unwrap().len(), before);

    // A draft decoder the hub does not have fails the fetch, saying how to
    // go without one.
    let output = tokio::task::spawn_blocking({
        let (endpoint, home) = (endpoint.clone(), home.clone());
        move || {
            fetch(
                &endpoint,
                &home,
                "wordup/tiny-sd",
                "v1",
                "wordup/no-such-draft",
            )
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("fetching the draft decoder wordup/no-such-draft@main")
            && stderr.contains("WORDUP_DRAFT_DECODER=off"),
        "{stderr}"
    );

    for dir in [served, served_draft, home] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_model_with_only_tokenizer_json_is_fetched() {
    let served = scratch("hub-files-json");
    wordup_engine_testkit::tiny::write_tiny_model(&served).unwrap();
    wordup_engine_testkit::tiny::to_tokenizer_json_only(&served.join("tokenizer")).unwrap();
    let (endpoint, seen) = fake_hub(vec![(served.clone(), "wordup/tiny-sd-json", "v1")]).await;
    let home = scratch("hf-home-json");
    let output = tokio::task::spawn_blocking({
        let (endpoint, home) = (endpoint.clone(), home.clone());
        move || fetch(&endpoint, &home, "wordup/tiny-sd-json", "v1", "off")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|path| path.ends_with("tokenizer/tokenizer.json")),
        "{requests:?}"
    );
    let snapshot = home
        .join("hub/models--wordup--tiny-sd-json/snapshots")
        .join(COMMIT);
    wordup_tokenizer::ClipTokenizer::from_dir(&snapshot.join("tokenizer")).unwrap();
    std::fs::remove_dir_all(served).ok();
    std::fs::remove_dir_all(home).ok();
}

#[test]
fn offline_fetch_fails_with_a_clear_message() {
    let home = scratch("hf-offline");
    // Nothing listens on port 1.
    let output = fetch(
        "http://127.0.0.1:1",
        &home,
        "stabilityai/sd-turbo",
        "main",
        wordup_engine::sd::source::DEFAULT_TAESD,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot fetch model_index.json of stabilityai/sd-turbo"),
        "{stderr}"
    );
    assert!(stderr.contains("offline"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(home).ok();
}

/// hf-hub takes HF_ENDPOINT and HF_HOME from the environment, which a test
/// cannot set in its own process (no unsafe code): the library's one-model
/// fetch runs in a copy of this test binary started with them, running only
/// `single_model_fetch_in_child`, which does nothing unless this is set.
const CHILD_REPO: &str = "WORDUP_TEST_SINGLE_MODEL_REPO";

#[tokio::test]
async fn single_model_fetch_in_child() {
    let Ok(repo) = std::env::var(CHILD_REPO) else {
        return;
    };
    let source = ModelSource::parse(&repo, Some("v1"));
    match SingleModelFiles::fetch(&source, Variant::PreferFp16, false).await {
        // On a line of its own: libtest has written "test … " before it.
        Ok(files) => println!("\nFETCHED {}", files.root.display()),
        Err(error) => println!("\nFAILED {error}"),
    }
}

/// The child's `FETCHED <root>` or `FAILED <error>` line.
async fn fetch_single_model(endpoint: &str, home: &Path, repo: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "single_model_fetch_in_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home)
        .env(CHILD_REPO, repo);
    let output = tokio::task::spawn_blocking(move || child.output().unwrap())
        .await
        .unwrap();
    common::stdout_lines(&output)
        .into_iter()
        .find(|line| line.starts_with("FETCHED ") || line.starts_with("FAILED "))
        .unwrap_or_else(|| panic!("no result from the child: {output:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taesd_repo_is_fetched_and_loads() {
    let served = scratch("hub-taesd");
    let fixture = common::fixtures().join("taesd-tiny");
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(fixture.join(file), served.join(file)).unwrap();
    }
    let (endpoint, seen) = fake_hub(vec![(served.clone(), "wordup/tiny-taesd", "v1")]).await;
    let home = scratch("hf-home-taesd");

    let line = fetch_single_model(&endpoint, &home, "wordup/tiny-taesd").await;
    let snapshot = home
        .join("hub/models--wordup--tiny-taesd/snapshots")
        .join(COMMIT);
    assert_eq!(line, format!("FETCHED {}", snapshot.display()));
    let requests = seen.lock().unwrap().clone();
    for file in [
        "config.json",
        // The repository has no fp16 variant: asked for, then the full file.
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.safetensors",
    ] {
        let path = format!("/wordup/tiny-taesd/resolve/v1/{file}");
        assert!(requests.contains(&path), "{path} not in {requests:?}");
    }

    let files = SingleModelFiles::from_dir(&snapshot, Variant::PreferFp16).unwrap();
    assert_eq!(
        std::fs::read(&files.weights).unwrap(),
        std::fs::read(served.join("diffusion_pytorch_model.safetensors")).unwrap()
    );
    let options = wordup_engine::PipelineOptions {
        device: candle_core::Device::Cpu,
        dtype: candle_core::DType::F32,
        scheduler: None,
    };
    TinyAutoEncoder::load(&files, &options).unwrap();

    std::fs::remove_dir_all(served).ok();
    std::fs::remove_dir_all(home).ok();
}

#[tokio::test]
async fn offline_taesd_fetch_fails_with_a_clear_message() {
    let home = scratch("hf-offline-taesd");
    // Nothing listens on port 1.
    let line = fetch_single_model(
        "http://127.0.0.1:1",
        &home,
        wordup_engine::sd::source::DEFAULT_TAESD,
    )
    .await;
    assert!(
        line.starts_with("FAILED ")
            && line.contains("cannot fetch config.json of madebyollin/taesd"),
        "{line}"
    );
    assert!(line.contains("offline"), "{line}");
    std::fs::remove_dir_all(home).ok();
}
