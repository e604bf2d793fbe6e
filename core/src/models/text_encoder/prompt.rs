//! SANA's prompt handling (MODEL-SPEC §6.2; diffusers 0.42.1
//! `SanaVideoPipeline.encode_prompt` / `_get_gemma_prompt_embeds`):
//!
//! 1. the user prompt gets the motion-score suffix `" motion score: {n}."`;
//! 2. prompt and negative prompt are lower-cased and stripped (diffusers; the official
//!    script only strips: switchable);
//! 3. the prompt is prefixed with the complex human instruction (CHI) and tokenised to
//!    `n_chi + max_sequence_length - 2` tokens (`n_chi` counts the CHI alone with its BOS);
//! 4. the encoder runs over the whole padded sequence, then only BOS and the last
//!    `max_sequence_length - 1` positions are kept (hidden states and mask alike);
//! 5. the negative prompt is tokenised to `max_sequence_length` without the CHI.
//!
//! The "- 2" replicates the reference arithmetic exactly, including its off-by-one when
//! the CHI's trailing "▁" does not merge into the prompt's first word.

use burn::tensor::Tensor;

use super::gemma2::{Gemma2Model, TokenBatch};
use super::tokenizer::GemmaTokenizer;
use crate::{Error, Result};

/// diffusers' default instruction (video wording).
pub const CHI_VIDEO: [&str; 8] = [
    "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for video generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, motion, and temporal relationships to create vivid and dynamic scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat slowly settling into a curled position, peacefully falling asleep on a warm sunny windowsill, with gentle sunlight filtering through surrounding pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps gradually lighting up, a diverse crowd of people in colorful clothing walking past, and a double-decker bus smoothly passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
];

/// The official configs' instruction (`text_encoder.chi_prompt`, image wording).
pub const CHI_IMAGE: [&str; 8] = [
    "Given a user prompt, generate an \"Enhanced prompt\" that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
];

/// The official inference script's negative prompt (diffusers' default is "").
pub const DEFAULT_NEGATIVE_PROMPT: &str = "A chaotic sequence with misshapen, deformed limbs in heavy motion blur, sudden disappearance, jump cuts, jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, temporal artifacts, jitter, and ghosting effects, creating a disorienting visual experience.";

/// Which complex human instruction precedes the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// diffusers' video wording (default).
    Video,
    /// The official configs' image wording.
    Image,
    /// No instruction: the prompt is tokenised like the negative prompt.
    None,
}

impl Instruction {
    pub fn parse(s: &str) -> Result<Instruction> {
        match s {
            "video" => Ok(Instruction::Video),
            "image" => Ok(Instruction::Image),
            "none" => Ok(Instruction::None),
            other => Err(Error::Input(format!("--instruction `{other}`: expected video, image or none"))),
        }
    }

    /// The instruction text: its lines joined with "\n" (the prompt follows directly).
    pub fn text(self) -> Option<String> {
        match self {
            Instruction::Video => Some(CHI_VIDEO.join("\n")),
            Instruction::Image => Some(CHI_IMAGE.join("\n")),
            Instruction::None => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PromptOptions {
    pub instruction: Instruction,
    /// Lower-case (and strip) as diffusers does; `false` strips only (official script).
    pub lowercase: bool,
    /// Appends `" motion score: {n}."` to the user prompt (not to the negative prompt).
    pub motion_score: Option<u32>,
    /// Positions kept per prompt (300 in every released checkpoint).
    pub max_sequence_length: usize,
}

impl Default for PromptOptions {
    fn default() -> Self {
        PromptOptions { instruction: Instruction::Video, lowercase: true, motion_score: None, max_sequence_length: 300 }
    }
}

/// Python's `str.strip()`: Unicode White_Space plus the ASCII separators 0x1C–0x1F.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// diffusers' `_text_preprocessing(clean_caption=False)`: `text.lower().strip()`.
pub fn preprocess(text: &str, lowercase: bool) -> String {
    if lowercase {
        py_strip(&text.to_lowercase()).to_string()
    } else {
        py_strip(text).to_string()
    }
}

/// Token ids of one side (prompt or negative) and the positions to keep.
pub struct PromptTokens {
    pub tokens: TokenBatch,
    /// Positions of the encoder output kept, in order.
    pub keep: Vec<usize>,
    /// Per row: tokens dropped by truncation.
    pub dropped: Vec<usize>,
    /// Token count of the instruction alone (with BOS), 0 without one.
    pub n_chi: usize,
}

/// Tokenises user prompts with the instruction and motion score (steps 1–4 above).
pub fn tokenize_prompts(tok: &GemmaTokenizer, prompts: &[String], opts: &PromptOptions) -> Result<PromptTokens> {
    let m = opts.max_sequence_length;
    if m < 2 {
        return Err(Error::Input(format!("max_sequence_length {m} must be at least 2")));
    }
    let texts: Vec<String> = prompts
        .iter()
        .map(|p| {
            let p = match opts.motion_score {
                Some(n) => format!("{p} motion score: {n}."),
                None => p.clone(),
            };
            preprocess(&p, opts.lowercase)
        })
        .collect();
    match opts.instruction.text() {
        None => tokenize_plain(tok, &texts, m),
        Some(chi) => {
            let n_chi = tok.encode(&chi)?.len();
            let len = n_chi + m - 2;
            let full: Vec<String> = texts.iter().map(|t| format!("{chi}{t}")).collect();
            let t = tok.encode_padded(&full, len)?;
            // select_index = [0] + range(-(m - 1), 0)
            let keep = std::iter::once(0).chain(len - (m - 1)..len).collect();
            Ok(PromptTokens { tokens: t.batch, keep, dropped: t.dropped, n_chi })
        }
    }
}

/// Tokenises negative prompts: preprocessing, no instruction, `max_sequence_length` tokens.
pub fn tokenize_negative(tok: &GemmaTokenizer, negatives: &[String], opts: &PromptOptions) -> Result<PromptTokens> {
    let texts: Vec<String> = negatives.iter().map(|p| preprocess(p, opts.lowercase)).collect();
    tokenize_plain(tok, &texts, opts.max_sequence_length)
}

fn tokenize_plain(tok: &GemmaTokenizer, texts: &[String], m: usize) -> Result<PromptTokens> {
    let t = tok.encode_padded(texts, m)?;
    Ok(PromptTokens { tokens: t.batch, keep: (0..m).collect(), dropped: t.dropped, n_chi: 0 })
}

/// Embeddings `[B, max_sequence_length, hidden]` (model dtype) and mask `[B·max_sequence_length]`.
pub struct Embedded {
    pub embeds: Tensor<3>,
    pub mask: Vec<u8>,
}

/// What `SanaVideoPipeline.encode_prompt` returns, plus warnings for the user.
pub struct EncodedPrompts {
    pub prompt: Embedded,
    pub negative: Option<Embedded>,
    pub warnings: Vec<String>,
}

/// Runs the encoder on tokenised text and keeps the selected positions.
pub fn embed(model: &Gemma2Model, t: &PromptTokens) -> Result<Embedded> {
    let hidden = model.forward(&t.tokens)?;
    let l = t.tokens.len;
    let contiguous_tail = t.keep.len() > 1 && t.keep[1..].windows(2).all(|w| w[1] == w[0] + 1);
    let embeds = if t.keep.len() == l {
        hidden
    } else if t.keep[0] == 0 && contiguous_tail {
        let start = t.keep[1];
        let n = t.keep.len() - 1;
        Tensor::cat(vec![hidden.clone().narrow(1, 0, 1), hidden.narrow(1, start, n)], 1)
    } else {
        return Err(Error::Input("internal: unsupported position selection".into()));
    };
    let mut mask = Vec::with_capacity(t.tokens.batch * t.keep.len());
    for b in 0..t.tokens.batch {
        mask.extend(t.keep.iter().map(|&p| t.tokens.attention_mask[b * l + p]));
    }
    Ok(Embedded { embeds, mask })
}

/// The whole of `encode_prompt`: prompts (and negative prompts for classifier-free
/// guidance, one per prompt, or none) to embeddings and masks.
pub fn encode_prompt(
    model: &Gemma2Model,
    tok: &GemmaTokenizer,
    prompts: &[String],
    negatives: Option<&[String]>,
    opts: &PromptOptions,
) -> Result<EncodedPrompts> {
    tok.check_fits(model.config.vocab_size, "the text encoder")?;
    if let Some(n) = negatives {
        if n.len() != prompts.len() {
            return Err(Error::Input(format!("{} negative prompts for {} prompts", n.len(), prompts.len())));
        }
    }
    let mut warnings = Vec::new();
    let pt = tokenize_prompts(tok, prompts, opts)?;
    for (i, &d) in pt.dropped.iter().enumerate() {
        if d > 0 {
            warnings.push(format!(
                "prompt {} is too long: {d} tokens past the budget of {} were dropped from its end",
                i + 1,
                opts.max_sequence_length - 1
            ));
        }
    }
    let nt = match negatives {
        Some(n) => {
            let nt = tokenize_negative(tok, n, opts)?;
            for (i, &d) in nt.dropped.iter().enumerate() {
                if d > 0 {
                    warnings.push(format!(
                        "negative prompt {} is too long: {d} tokens past the budget of {} were dropped from its end",
                        i + 1,
                        opts.max_sequence_length - 1
                    ));
                }
            }
            Some(nt)
        }
        None => None,
    };
    let prompt = embed(model, &pt)?;
    let negative = match &nt {
        Some(nt) => Some(embed(model, nt)?),
        None => None,
    };
    Ok(EncodedPrompts { prompt, negative, warnings })
}
