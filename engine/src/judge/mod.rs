pub mod clip;
pub mod reading;
pub mod safety;

/// CLIP with the vocabulary's features: what the worker scores images,
/// reads prompts and describes images with.
pub struct ClipJudge {
    pub clip: clip::Clip,
    pub lexicon: reading::Lexicon,
}
