//! Where a model's files come from: a local diffusers directory, or the
//! Hugging Face Hub (through hf-hub, which honours HF_ENDPOINT and HF_HOME)
//! at a pinned revision, cached locally.

use std::path::{Path, PathBuf};

use hf_hub::api::tokio::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Repo, RepoType};

use crate::error::{EngineError, Result};

/// The default model: SD-Turbo (SD 2.1 distilled for 1–4 steps).
pub const DEFAULT_MODEL: &str = "stabilityai/sd-turbo";
/// The revision of the default model we test against; "main" follows the hub.
pub const DEFAULT_REVISION: &str = "main";

/// Files a diffusers Stable Diffusion pipeline needs; `{v}` is where a
/// weight variant goes ("" or ".fp16").
const CONFIG_FILES: &[&str] = &[
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "unet/config.json",
    "vae/config.json",
];
/// The tokenizer's files, in either layout: the BPE files, or the single
/// `tokenizer.json` that transformers 5 saves instead.
const TOKENIZER_LAYOUTS: &[&[&str]] = &[
    &["tokenizer/vocab.json", "tokenizer/merges.txt"],
    &["tokenizer/tokenizer.json"],
];
const OPTIONAL_FILES: &[&str] = &[
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
];
const WEIGHT_FILES: &[(&str, &str)] = &[
    ("text_encoder", "model"),
    ("unet", "diffusion_pytorch_model"),
    ("vae", "diffusion_pytorch_model"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Dir(PathBuf),
    Hub { repo: String, revision: String },
}

impl ModelSource {
    /// An existing directory, or anything written as a path (absolute, or
    /// starting with `.` or `~`), is a local model; anything else a hub id.
    pub fn parse(spec: &str, revision: Option<&str>) -> ModelSource {
        let path = Path::new(spec);
        if path.is_dir() || path.is_absolute() || spec.starts_with('.') || spec.starts_with('~') {
            ModelSource::Dir(path.to_path_buf())
        } else {
            ModelSource::Hub {
                repo: spec.to_owned(),
                revision: revision.unwrap_or(DEFAULT_REVISION).to_owned(),
            }
        }
    }

    /// A name for metadata and logs: the directory or `repo@revision`.
    pub fn id(&self) -> String {
        match self {
            ModelSource::Dir(path) => path.display().to_string(),
            ModelSource::Hub { repo, revision } => format!("{repo}@{revision}"),
        }
    }
}

/// The default draft decoder: TAESD for SD 1.x/2.x (and SD-Turbo) latents,
/// a one-model repository ([`SingleModelFiles`]).
pub const DEFAULT_TAESD: &str = "madebyollin/taesd";

/// The default CLIP for scores and reranking.
pub const DEFAULT_CLIP: &str = "openai/clip-vit-base-patch32";
/// The CLIP that reads text as a model's text encoder does: OpenAI's
/// ViT-L/14 for SD 1.x (768-wide text states), OpenCLIP's ViT-H/14 for SD
/// 2.x and SD-Turbo (1024).
pub fn clip_for(cross_attention_dim: usize) -> &'static str {
    match cross_attention_dim {
        768 => "openai/clip-vit-large-patch14",
        _ => "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    }
}

/// Files of a transformers CLIP directory.
pub const CLIP_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "vocab.json",
    "merges.txt",
];
pub const CLIP_OPTIONAL_FILES: &[&str] = &["tokenizer_config.json", "special_tokens_map.json"];

/// A local directory holding `files` of `spec`: the directory itself, or the
/// hub snapshot after fetching them (`optional` ones when present).
pub async fn fetch_dir(
    spec: &str,
    revision: Option<&str>,
    files: &[&str],
    optional: &[&str],
    progress: bool,
) -> Result<PathBuf> {
    match ModelSource::parse(spec, revision) {
        ModelSource::Dir(dir) => {
            let missing: Vec<&str> = files
                .iter()
                .copied()
                .filter(|f| !dir.join(f).is_file())
                .collect();
            if missing.is_empty() {
                Ok(dir)
            } else {
                Err(EngineError::MissingFile(format!(
                    "{} has no {}",
                    dir.display(),
                    missing.join(", ")
                )))
            }
        }
        ModelSource::Hub { repo, revision } => {
            let (root, _) = fetch_from_hub(&repo, &revision, files, optional, progress).await?;
            Ok(root)
        }
    }
}

/// Fetches `files` (and `optional` ones where present) of a hub repository
/// into the cache; returns the snapshot folder (the first file's folder)
/// and the repository handle for further files.
async fn fetch_from_hub(
    repo: &str,
    revision: &str,
    files: &[&str],
    optional: &[&str],
    progress: bool,
) -> Result<(PathBuf, ApiRepo)> {
    let api = ApiBuilder::from_env()
        .with_progress(progress)
        .build()
        .map_err(|error| EngineError::Download(error.to_string()))?;
    let hub = api.repo(Repo::with_revision(
        repo.to_owned(),
        RepoType::Model,
        revision.to_owned(),
    ));
    let mut root = None;
    for file in files {
        let path = hub
            .get(file)
            .await
            .map_err(|error| download_error(repo, file, error))?;
        root = root.or_else(|| path.parent().map(Path::to_path_buf));
    }
    for file in optional {
        if let Err(error) = hub.get(file).await {
            tracing::debug!(file, %error, "optional file not fetched");
        }
    }
    let root = root.ok_or_else(|| EngineError::Download(format!("{repo}: nothing to fetch")))?;
    Ok((root, hub))
}

/// Which weight files to prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `*.safetensors`.
    Full,
    /// `*.fp16.safetensors` where present, else the full ones.
    PreferFp16,
}

/// A model's files on local disk, in the diffusers layout.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub root: PathBuf,
    pub text_encoder_weights: PathBuf,
    pub unet_weights: PathBuf,
    pub vae_weights: PathBuf,
}

impl ModelFiles {
    /// Resolves the files of a local directory, checking that all are there.
    pub fn from_dir(root: &Path, variant: Variant) -> Result<ModelFiles> {
        let mut missing: Vec<String> = CONFIG_FILES
            .iter()
            .copied()
            .filter(|file| !root.join(file).is_file())
            .map(str::to_owned)
            .collect();
        let tokenizer_present = TOKENIZER_LAYOUTS
            .iter()
            .any(|layout| layout.iter().all(|file| root.join(file).is_file()));
        if !tokenizer_present {
            missing.push(
                TOKENIZER_LAYOUTS
                    .iter()
                    .map(|layout| layout.join(" and "))
                    .collect::<Vec<_>>()
                    .join(", or "),
            );
        }
        if !missing.is_empty() {
            return Err(EngineError::MissingFile(format!(
                "{} is not a diffusers model directory: no {}",
                root.display(),
                missing.join(", ")
            )));
        }
        let weights = |folder: &str, stem: &str| -> Result<PathBuf> {
            let candidates = weight_names(stem, variant);
            candidates
                .iter()
                .map(|name| root.join(folder).join(name))
                .find(|path| path.is_file())
                .ok_or_else(|| {
                    EngineError::MissingFile(format!(
                        "{}/{folder} has no {}",
                        root.display(),
                        candidates.join(" or ")
                    ))
                })
        };
        Ok(ModelFiles {
            root: root.to_path_buf(),
            text_encoder_weights: weights("text_encoder", "model")?,
            unet_weights: weights("unet", "diffusion_pytorch_model")?,
            vae_weights: weights("vae", "diffusion_pytorch_model")?,
        })
    }

    /// Local files for `source`, downloading what the hub cache lacks.
    pub async fn fetch(
        source: &ModelSource,
        variant: Variant,
        progress: bool,
    ) -> Result<ModelFiles> {
        match source {
            ModelSource::Dir(path) => ModelFiles::from_dir(path, variant),
            ModelSource::Hub { repo, revision } => {
                let (root, hub) =
                    fetch_from_hub(repo, revision, CONFIG_FILES, OPTIONAL_FILES, progress).await?;
                fetch_tokenizer(&hub, repo).await?;
                for (folder, stem) in WEIGHT_FILES {
                    fetch_weights(&hub, repo, &format!("{folder}/"), stem, variant).await?;
                }
                ModelFiles::from_dir(&root, variant)
            }
        }
    }
}

/// The first of `stem`'s weight files (in `variant`'s order of preference)
/// that the repository has, under `prefix` ("" or "folder/").
async fn fetch_weights(
    hub: &ApiRepo,
    repo: &str,
    prefix: &str,
    stem: &str,
    variant: Variant,
) -> Result<()> {
    let mut last_error = None;
    for name in weight_names(stem, variant) {
        let file = format!("{prefix}{name}");
        match hub.get(&file).await {
            Ok(_) => return Ok(()),
            Err(error) => last_error = Some(download_error(repo, &file, error)),
        }
    }
    Err(last_error.unwrap_or_else(|| EngineError::Download(format!("{repo}: no {stem} weights"))))
}

/// The files of a one-model diffusers repository or folder (as
/// `madebyollin/taesd`): `config.json` and `diffusion_pytorch_model.safetensors`.
#[derive(Debug, Clone)]
pub struct SingleModelFiles {
    pub root: PathBuf,
    pub config: PathBuf,
    pub weights: PathBuf,
}

const SINGLE_MODEL_CONFIG: &str = "config.json";
const SINGLE_MODEL_WEIGHTS: &str = "diffusion_pytorch_model";

impl SingleModelFiles {
    /// Resolves the files of a local directory, checking that they are there.
    pub fn from_dir(root: &Path, variant: Variant) -> Result<SingleModelFiles> {
        let config = root.join(SINGLE_MODEL_CONFIG);
        let candidates = weight_names(SINGLE_MODEL_WEIGHTS, variant);
        let weights = candidates
            .iter()
            .map(|name| root.join(name))
            .find(|path| path.is_file());
        let mut missing = Vec::new();
        if !config.is_file() {
            missing.push(SINGLE_MODEL_CONFIG.to_owned());
        }
        if weights.is_none() {
            missing.push(candidates.join(" or "));
        }
        match weights {
            Some(weights) if missing.is_empty() => Ok(SingleModelFiles {
                root: root.to_path_buf(),
                config,
                weights,
            }),
            _ => Err(EngineError::MissingFile(format!(
                "{} is not a diffusers model folder: no {}",
                root.display(),
                missing.join(", ")
            ))),
        }
    }

    /// Local files for `source`, downloading what the hub cache lacks.
    pub async fn fetch(
        source: &ModelSource,
        variant: Variant,
        progress: bool,
    ) -> Result<SingleModelFiles> {
        match source {
            ModelSource::Dir(path) => SingleModelFiles::from_dir(path, variant),
            ModelSource::Hub { repo, revision } => {
                let (root, hub) =
                    fetch_from_hub(repo, revision, &[SINGLE_MODEL_CONFIG], &[], progress).await?;
                fetch_weights(&hub, repo, "", SINGLE_MODEL_WEIGHTS, variant).await?;
                SingleModelFiles::from_dir(&root, variant)
            }
        }
    }
}

/// The first tokenizer layout the repository has in full.
async fn fetch_tokenizer(hub: &ApiRepo, repo: &str) -> Result<()> {
    let mut first_error = None;
    'layouts: for layout in TOKENIZER_LAYOUTS {
        for file in *layout {
            if let Err(error) = hub.get(file).await {
                first_error.get_or_insert_with(|| download_error(repo, file, error));
                continue 'layouts;
            }
        }
        return Ok(());
    }
    Err(first_error.unwrap_or_else(|| EngineError::Download(format!("{repo}: no tokenizer"))))
}

fn weight_names(stem: &str, variant: Variant) -> Vec<String> {
    match variant {
        Variant::Full => vec![format!("{stem}.safetensors")],
        Variant::PreferFp16 => vec![
            format!("{stem}.fp16.safetensors"),
            format!("{stem}.safetensors"),
        ],
    }
}

fn download_error(repo: &str, file: &str, error: ApiError) -> EngineError {
    let endpoint =
        std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "the Hugging Face Hub".to_owned());
    EngineError::Download(format!(
        "cannot fetch {file} of {repo} from {endpoint} ({error}); if this machine is offline, \
         run `wordup-engine models fetch` where it is online and copy HF_HOME over, or pass a \
         local model directory"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_family_gets_the_clip_of_its_text_encoder() {
        for (width, clip) in [
            (768, "openai/clip-vit-large-patch14"),
            (1024, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
        ] {
            assert_eq!(clip_for(width), clip, "{width}");
        }
    }
}
