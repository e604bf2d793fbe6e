#!/usr/bin/env python3
"""Reference fixtures for weight quantisation (core/src/quant, `sana-video quantize`).

    python3 -m pip install -r tools/requirements-fixtures.txt
    python3 tools/make_quant_fixtures.py --out tests/fixtures/quant

Writes:
  codecs.safetensors
    fp8_in [N] f32 -> fp8_codes [N] u8: PyTorch's float32 -> float8_e4m3fn cast (bits).
    nvfp4_w [32, 64] f32 -> nvfp4_packed [32, 32] u8, nvfp4_blocks [32, 4] u8 (e4m3 bits),
    nvfp4_global [1] f32: NVIDIA's two-level recipe with the block scales cast by PyTorch and
    the values rounded to e2m1 by torchao's `_f32_to_floatx_unpacked` (value 2i in the low
    nibble). All arithmetic in float32, in the order core/src/quant does it.
  comfy_fp8/transformer/   the p122_b2_mask DiT fixture saved as a ComfyUI float8_e4m3fn
    checkpoint: linear and 1x1-conv weights float8_e4m3fn with a scalar `weight_scale`,
    `_quantization_metadata` in the header for even layers, a `comfy_quant` record tensor
    for odd ones (both forms exist in the wild). First/last layers and embedders stay f32.
  comfy_fp8/outputs.safetensors   diffusers' float64 forward of the dequantised weights on
    ../dit/p122_b2_mask/inputs.safetensors.
  comfy_nvfp4/transformer/, comfy_nvfp4/outputs.safetensors   the same as ComfyUI NVFP4,
    quantised by comfy-kitchen's own (eager) `quantize_nvfp4` (high nibble first, block
    scales in cuBLAS's blocked layout, `weight_scale_2` = amax / (448 * 6)), 1x1-conv weights
    stored 2-D as ComfyUI does; outputs from the weights comfy-kitchen's `dequantize_nvfp4`
    gives (float32). Records and header entries alternate as for comfy_fp8.

Pinned: torch 2.11.0, diffusers 0.42.1, torchao 0.18.0, comfy-kitchen 0.2.40.
`--parts` picks what to write (default: all).
"""
import argparse
import json
import os

import torch
from diffusers import SanaVideoTransformer3DModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torchao.prototype.custom_fp_utils import _f32_to_floatx_unpacked

E4M3_MAX, E2M1_MAX, BLOCK = 448.0, 6.0, 16


def fp8_bits(x):
    return x.to(torch.float8_e4m3fn).view(torch.uint8)


def nvfp4(w):
    rows, cols = w.shape
    amax = w.abs().max()
    g = amax / torch.tensor(E4M3_MAX * E2M1_MAX, dtype=torch.float32) if amax > 0 else torch.tensor(1.0)
    blocks = w.reshape(-1, BLOCK)
    bmax = blocks.abs().amax(dim=1)
    bcode = fp8_bits(bmax / (torch.tensor(E2M1_MAX) * g))
    scale = bcode.view(torch.float8_e4m3fn).float() * g
    q = torch.where(scale[:, None] > 0, blocks / scale[:, None], torch.zeros_like(blocks))
    codes = _f32_to_floatx_unpacked(q.contiguous(), 2, 1).reshape(rows, cols)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).to(torch.uint8)
    return packed, bcode.reshape(rows, cols // BLOCK), g.reshape(1)


def codecs(out):
    gen = torch.Generator().manual_seed(3)
    parts = [
        torch.randn(2048, generator=gen) * 40,
        torch.randn(1024, generator=gen) * 0.01,  # subnormals and the smallest normals
        torch.rand(512, generator=gen) * 448,
        # exact ties between neighbouring codes, both signs
        torch.tensor([1.0625, 1.1875, 0.0029296875, 0.0048828125, 240.0, 272.0, 432.0, 0.0, -0.0, 448.0, -448.0]),
    ]
    x = torch.cat(parts).float().clamp(-E4M3_MAX, E4M3_MAX)
    w = (torch.randn(32, 64, generator=gen) * torch.linspace(0.01, 3, 64)).float()
    w[3] = 0  # an all-zero row (block scale 0)
    packed, blocks, g = nvfp4(w)
    save_file({"fp8_in": x, "fp8_codes": fp8_bits(x), "nvfp4_w": w, "nvfp4_packed": packed,
               "nvfp4_blocks": blocks, "nvfp4_global": g}, os.path.join(out, "codecs.safetensors"))


def keep_precise(name):
    return any(p in name for p in ["patch_embedding", "proj_out", "time_embed", "caption_projection", "scale_shift_table"])


def save_comfy_case(out, name, dit_case, stored, deq, layers):
    """Writes `name/transformer/` (the DiT's config, `stored` with `layers` in the header's
    `_quantization_metadata`) and `name/outputs.safetensors`: diffusers' float64 forward of
    the weights `deq` on the DiT case's inputs."""
    src = os.path.join(dit_case, "transformer")
    dst = os.path.join(out, name, "transformer")
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        config = f.read()
    with open(os.path.join(dst, "config.json"), "w") as f:
        f.write(config)
    header = {"format_version": "1.0", "layers": {k: v for k, v in layers.items() if v is not None}}
    save_file(stored, os.path.join(dst, "diffusion_pytorch_model.safetensors"),
              metadata={"_quantization_metadata": json.dumps(header)})
    model = SanaVideoTransformer3DModel.from_pretrained(src, torch_dtype=torch.float64).eval()
    model.load_state_dict(deq)
    inputs = load_file(os.path.join(dit_case, "inputs.safetensors"))
    mask = inputs.get("encoder_attention_mask")
    with torch.no_grad():
        sample = model(hidden_states=inputs["hidden_states"].double(),
                       encoder_hidden_states=inputs["encoder_hidden_states"].double(),
                       timestep=inputs["timestep"].double(),
                       encoder_attention_mask=None if mask is None else mask.double(),
                       return_dict=False)[0]
    save_file({"sample": sample.float().contiguous()}, os.path.join(out, name, "outputs.safetensors"))


def comfy_fp8(out, dit_case):
    src = os.path.join(dit_case, "transformer")
    tensors = load_file(os.path.join(src, "diffusion_pytorch_model.safetensors"))
    stored, deq, layers = {}, {}, {}
    for i, (name, t) in enumerate(sorted(tensors.items())):
        t = t.float()
        matrix = name.endswith(".weight") and (t.dim() == 2 or (t.dim() == 4 and t.shape[2:] == (1, 1))) and t.shape[1] >= 16
        if not matrix or keep_precise(name):
            stored[name] = t
            deq[name] = t.double()
            continue
        layer = name[: -len(".weight")]
        scale = (t.abs().max() / E4M3_MAX).reshape(())
        q = (t / scale).to(torch.float8_e4m3fn)
        stored[name] = q
        stored[layer + ".weight_scale"] = scale
        deq[name] = q.double() * scale.double()
        if len(layers) % 2 == 0:
            layers[layer] = {"format": "float8_e4m3fn"}
        else:
            stored[layer + ".comfy_quant"] = torch.tensor(list(json.dumps({"format": "float8_e4m3fn"}).encode()), dtype=torch.uint8)
            layers[layer + "#record"] = None
    save_comfy_case(out, "comfy_fp8", dit_case, stored, deq, layers)
    print(f"comfy_fp8: {sum(1 for v in stored.values() if v.dtype == torch.float8_e4m3fn)} fp8 tensors")


def comfy_nvfp4(out, dit_case):
    from comfy_kitchen.backends.eager.quantization import dequantize_nvfp4, quantize_nvfp4
    src = os.path.join(dit_case, "transformer")
    tensors = load_file(os.path.join(src, "diffusion_pytorch_model.safetensors"))
    stored, deq, layers = {}, {}, {}
    for name, t in sorted(tensors.items()):
        t = t.float()
        matrix = name.endswith(".weight") and (t.dim() == 2 or (t.dim() == 4 and t.shape[2:] == (1, 1)))
        if not matrix or keep_precise(name) or t.shape[0] % 16 or t.shape[1] % 16:
            stored[name] = t
            deq[name] = t.double()
            continue
        layer = name[: -len(".weight")]
        w2 = t.reshape(t.shape[0], -1)
        scale = (w2.abs().amax() / (E4M3_MAX * E2M1_MAX)).float()
        q, blocked = quantize_nvfp4(w2, scale)
        stored[name] = q
        stored[layer + ".weight_scale"] = blocked
        stored[layer + ".weight_scale_2"] = scale.reshape(())
        deq[name] = dequantize_nvfp4(q, scale, blocked, torch.float32).reshape(t.shape).double()
        if len(layers) % 2 == 0:
            layers[layer] = {"format": "nvfp4"}
        else:
            stored[layer + ".comfy_quant"] = torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()), dtype=torch.uint8)
            layers[layer + "#record"] = None
    save_comfy_case(out, "comfy_nvfp4", dit_case, stored, deq, layers)
    print(f"comfy_nvfp4: {len(layers)} nvfp4 tensors")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/quant")
    ap.add_argument("--dit-case", default="tests/fixtures/dit/p122_b2_mask")
    ap.add_argument("--parts", default="codecs,comfy_fp8,comfy_nvfp4")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    parts = a.parts.split(",")
    torch.manual_seed(0)
    if "codecs" in parts:
        codecs(a.out)
    if "comfy_fp8" in parts:
        comfy_fp8(a.out, a.dit_case)
    if "comfy_nvfp4" in parts:
        comfy_nvfp4(a.out, a.dit_case)
