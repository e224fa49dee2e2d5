use std::path::PathBuf;

/// Everything the engine library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
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
    #[error("model files missing: {0}")]
    MissingFile(String),
    #[error("unsupported model: {0}")]
    UnsupportedModel(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("download failed: {0}")]
    Download(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("cancelled")]
    Cancelled,
    #[error("image: {0}")]
    Image(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<wordup_tokenizer::TokenizerError> for EngineError {
    fn from(e: wordup_tokenizer::TokenizerError) -> EngineError {
        use wordup_tokenizer::TokenizerError;
        match e {
            TokenizerError::Io { path, source } => EngineError::Io { path, source },
            TokenizerError::Json { path, source } => EngineError::Json { path, source },
            // A prompt too long is the request's fault: no retry helps.
            too_long @ TokenizerError::TooLong { .. } => {
                EngineError::InvalidRequest(too_long.to_string())
            }
            TokenizerError::Invalid(text) => EngineError::Tokenizer(text),
        }
    }
}
