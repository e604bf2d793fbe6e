//! The text encoder: Gemma-2 (`text_encoder/`, transformers `Gemma2Model`), its tokenizer
//! (`tokenizer/tokenizer.json`) and SANA's prompt handling (MODEL-SPEC §6).
//!
//! ```text
//! sana-video debug text-encoder --model tests/fixtures/text_encoder/gqa_sliding_pad/text_encoder \
//!     --inputs tests/fixtures/text_encoder/gqa_sliding_pad/inputs.safetensors --output /tmp/te.safetensors
//! sana-video debug encode-prompt --model tests/fixtures/prompt/pipeline --prompt "a red ball" --output /tmp/p.safetensors
//! ```

pub mod config;
pub mod gemma2;
pub mod prompt;
pub mod tokenizer;

use burn::tensor::{DType, Device};

pub use config::{Gemma2Config, LayerType};
pub use gemma2::{Gemma2Model, TokenBatch};
pub use prompt::{encode_prompt, EncodedPrompts, Instruction, PromptOptions, DEFAULT_NEGATIVE_PROMPT};
pub use tokenizer::GemmaTokenizer;

use crate::io::FileSource;
use crate::Result;

/// Tokenizer and encoder of a pipeline folder, loaded together for prompt encoding and
/// released together (`unload`) before the DiT needs the memory.
pub struct TextEncoder {
    pub tokenizer: GemmaTokenizer,
    pub model: Gemma2Model,
}

impl TextEncoder {
    /// Loads `tokenizer/` and `text_encoder/` of a pipeline folder; refuses a tokenizer
    /// whose ids the encoder cannot embed.
    pub fn load(source: &dyn FileSource, pipeline_dir: &str, device: &Device, dtype: DType) -> Result<(TextEncoder, gemma2::LoadReport)> {
        let tokenizer = GemmaTokenizer::load(source, pipeline_dir)?;
        // Cheap config check first, so a mismatched pair fails before the weights load.
        let te_dir = crate::io::diffusers::component_dir(source, pipeline_dir, "text_encoder")?;
        let cfg = Gemma2Model::read_config(source, &te_dir)?;
        let cfg_path = crate::io::join(&te_dir, "config.json");
        tokenizer.check_fits(cfg.vocab_size, &format!("{cfg_path} says the text encoder"))?;
        let (model, report) = Gemma2Model::load(source, &te_dir, device, dtype)?;
        Ok((TextEncoder { tokenizer, model }, report))
    }

    pub fn encode(&self, prompts: &[String], negatives: Option<&[String]>, opts: &PromptOptions) -> Result<EncodedPrompts> {
        encode_prompt(&self.model, &self.tokenizer, prompts, negatives, opts)
    }

    /// Releases the encoder's device memory.
    pub fn unload(self) {
        self.model.unload();
    }
}
