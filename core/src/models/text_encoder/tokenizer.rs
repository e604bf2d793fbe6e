//! The pipeline's `tokenizer/` folder through the `tokenizers` crate, with
//! `GemmaTokenizerFast` semantics as transformers 5.24 applies them: BOS prepended and no
//! EOS (from `tokenizer_config.json`'s `add_bos_token` / `add_eos_token` when present,
//! else the post-processor in `tokenizer.json`), truncation from the right to
//! `max_length`, right padding with the pad token.

use serde_json::Value;
use tokenizers::Tokenizer;

use super::gemma2::TokenBatch;
use crate::io::{diffusers, join, FileSource};
use crate::{Error, Result};

pub struct GemmaTokenizer {
    inner: Tokenizer,
    /// Where it was loaded from, for messages.
    pub path: String,
    /// `Some((bos, eos))` flags from tokenizer_config.json; `None`: use the post-processor.
    special: Option<(Option<u32>, Option<u32>)>,
    pub pad_id: u32,
}

/// One tokenised batch and, per row, how many tokens truncation dropped.
pub struct Tokenized {
    pub batch: TokenBatch,
    pub dropped: Vec<usize>,
}

impl GemmaTokenizer {
    /// Loads `tokenizer.json` (+ `tokenizer_config.json` when present) from a `tokenizer/`
    /// folder or a pipeline folder holding one.
    pub fn load(source: &dyn FileSource, dir: &str) -> Result<GemmaTokenizer> {
        let dir = diffusers::component_dir_marked(source, dir, "tokenizer", "tokenizer.json").map_err(|e| {
            let sp = join(dir, "tokenizer/tokenizer.model");
            if source.exists(&sp) || source.exists(&join(dir, "tokenizer.model")) {
                Error::file(
                    dir,
                    "the tokenizer must be in the `tokenizers` JSON format (tokenizer.json); a SentencePiece tokenizer.model alone is not supported",
                )
            } else {
                e
            }
        })?;
        let json_path = join(&dir, "tokenizer.json");
        let json = source.read(&json_path)?;
        let cfg_path = join(&dir, "tokenizer_config.json");
        let cfg = if source.exists(&cfg_path) { Some(source.read_string(&cfg_path)?) } else { None };
        Self::from_bytes(&json, &json_path, cfg.as_deref(), &cfg_path)
    }

    pub fn from_bytes(json: &[u8], json_path: &str, config: Option<&str>, config_path: &str) -> Result<GemmaTokenizer> {
        let inner = Tokenizer::from_bytes(json).map_err(|e| Error::file(json_path, format!("not a valid tokenizer.json: {e}")))?;
        let cfg: Value = match config {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| Error::file(config_path, format!("invalid JSON: {e}")))?
            }
            None => Value::Null,
        };
        let token_of = |key: &str, default: &str| -> String {
            match cfg.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).unwrap_or(default).to_string(),
                _ => default.to_string(),
            }
        };
        let id_of = |key: &str, default: &str| -> Result<u32> {
            let tok = token_of(key, default);
            inner.token_to_id(&tok).ok_or_else(|| {
                Error::file(json_path, format!("the {key} `{tok}` (from {config_path} or Gemma's default) is not in the vocabulary"))
            })
        };
        let pad_id = id_of("pad_token", "<pad>")?;
        let flag = |key: &str| cfg.get(key).and_then(Value::as_bool);
        let special = match (flag("add_bos_token"), flag("add_eos_token")) {
            (None, None) => None,
            (bos, eos) => Some((
                if bos.unwrap_or(true) { Some(id_of("bos_token", "<bos>")?) } else { None },
                if eos.unwrap_or(false) { Some(id_of("eos_token", "<eos>")?) } else { None },
            )),
        };
        Ok(GemmaTokenizer { inner, path: json_path.to_string(), special, pad_id })
    }

    /// Vocabulary size including added tokens (the highest id + 1 it can produce).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Refuses pairing with an encoder whose embedding table (`vocab_size` rows, described
    /// by `encoder` in the message) cannot hold every id this tokenizer produces.
    pub fn check_fits(&self, vocab_size: usize, encoder: &str) -> Result<()> {
        let t = self.vocab_size();
        if t > vocab_size {
            return Err(Error::Input(format!(
                "{}: the tokenizer has {t} tokens but {encoder} embeds only {vocab_size} (vocab_size): they do not belong together",
                self.path
            )));
        }
        Ok(())
    }

    /// Token ids of `text` with the special tokens (BOS), no truncation or padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let with_post = self.special.is_none();
        let enc = self
            .inner
            .encode(text, with_post)
            .map_err(|e| Error::Input(format!("{}: cannot tokenise the text: {e}", self.path)))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some((bos, eos)) = self.special {
            if let Some(b) = bos {
                ids.insert(0, b);
            }
            if let Some(e) = eos {
                ids.push(e);
            }
        }
        Ok(ids)
    }

    /// Number of special tokens `encode` adds around the text.
    fn added_count(&self) -> usize {
        match self.special {
            Some((bos, eos)) => bos.is_some() as usize + eos.is_some() as usize,
            None => self.inner.get_post_processor().map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, false)),
        }
    }

    /// `tokenizer(texts, padding="max_length", max_length, truncation=True)`: the text is
    /// cut from the right so that it fits with its special tokens, then right-padded.
    pub fn encode_padded(&self, texts: &[String], max_length: usize) -> Result<Tokenized> {
        let added = self.added_count();
        if max_length <= added {
            return Err(Error::Input(format!("max_length {max_length} leaves no room for text")));
        }
        let mut input_ids = Vec::with_capacity(texts.len() * max_length);
        let mut attention_mask = Vec::with_capacity(texts.len() * max_length);
        let mut dropped = Vec::with_capacity(texts.len());
        for text in texts {
            let enc = self
                .inner
                .encode(text.as_str(), false)
                .map_err(|e| Error::Input(format!("{}: cannot tokenise the text: {e}", self.path)))?;
            let mut body = enc.get_ids().to_vec();
            let room = max_length - added;
            dropped.push(body.len().saturating_sub(room));
            body.truncate(room);
            let ids = match self.special {
                Some((bos, eos)) => {
                    let mut v: Vec<u32> = bos.into_iter().collect();
                    v.extend(body);
                    v.extend(eos);
                    v
                }
                None => {
                    let body_enc = tokenizers::Encoding::new(
                        body.clone(),
                        vec![0; body.len()],
                        vec![String::new(); body.len()],
                        vec![None; body.len()],
                        vec![(0, 0); body.len()],
                        vec![0; body.len()],
                        vec![1; body.len()],
                        vec![],
                        Default::default(),
                    );
                    self.inner
                        .post_process(body_enc, None, true)
                        .map_err(|e| Error::Input(format!("{}: post-processing failed: {e}", self.path)))?
                        .get_ids()
                        .to_vec()
                }
            };
            let n = ids.len().min(max_length);
            input_ids.extend_from_slice(&ids[..n]);
            attention_mask.extend(std::iter::repeat_n(1u8, n));
            input_ids.extend(std::iter::repeat_n(self.pad_id, max_length - n));
            attention_mask.extend(std::iter::repeat_n(0u8, max_length - n));
        }
        Ok(Tokenized { batch: TokenBatch { batch: texts.len(), len: max_length, input_ids, attention_mask }, dropped })
    }
}
