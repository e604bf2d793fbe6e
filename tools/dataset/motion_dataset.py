#!/usr/bin/env python3
"""Synthetic captioned motion clips for the built-in model (issue 6), deterministic from a seed.

Each clip shows one to three objects (circle, square, triangle, diamond, ring, star; small,
medium or large; one of ten named colours) on a plain or gradient background (named
colours too), each object moving left, right, up, down, diagonally, bouncing, circling,
growing or shrinking, slowly or quickly. Frames are drawn with 4x supersampling (anti-
aliased edges). Captions come from varied templates and name every object's size, colour,
shape, motion and speed and the background, e.g. "a small red circle moves slowly to the
left on a dark blue background".

A fixed set of (colour, shape, motion) triples is held out of training: `--split eval`
draws only clips whose first object uses a held-out triple, `--split train` never does, so
evaluation prompts ask for combinations the model never saw.

    python3 tools/dataset/motion_dataset.py --out /tmp/motion --clips 20000 --frames 17 --size 128 --seed 0
    python3 tools/dataset/motion_dataset.py --prompts 64 --split eval --seed 1   # print eval prompts

Writes OUT/clips-NNNNN.npz (uint8 videos [n, T, H, W, 3]) and OUT/captions.jsonl (one JSON
object per clip: caption, objects, background) for training.
"""
import argparse
import json
import math
import os

import numpy as np

VOCAB = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocabulary.json")))
COLOURS = {k: tuple(v) for k, v in VOCAB["colours"].items()}
BACKGROUNDS = {k: tuple(v) for k, v in VOCAB["backgrounds"].items()}
SHAPES = VOCAB["shapes"]
SIZES = VOCAB["sizes"]  # radius as a fraction of the frame
SPEEDS = VOCAB["speeds"]
MOTION_TEXT = VOCAB["motions"]
MOTIONS = list(MOTION_TEXT)
HELD_OUT = [tuple(t) for t in VOCAB["held_out"]]  # (colour, shape, motion) never shown first in training
ORDINAL = {1: "", 2: "two objects: ", 3: "three objects: "}


def background_spec(rng):
    names = list(BACKGROUNDS)
    a = names[rng.integers(len(names))]
    if rng.random() < 0.6:
        return {"kind": "plain", "colours": [a]}
    b = names[rng.integers(len(names))]
    while b == a:
        b = names[rng.integers(len(names))]
    return {"kind": rng.choice(["vertical", "horizontal"]).item(), "colours": [a, b]}


def object_spec(rng, forced=None, avoid=None):
    while True:
        colour, shape, motion = forced or (rng.choice(list(COLOURS)).item(), rng.choice(SHAPES).item(),
                                           rng.choice(MOTIONS).item())
        if avoid is None or (colour, shape, motion) not in avoid:
            break
    return {"colour": colour, "shape": shape, "motion": motion, "size": rng.choice(list(SIZES)).item(),
            "speed": rng.choice(list(SPEEDS)).item(), "start": [float(v) for v in rng.uniform(0.3, 0.7, 2)],
            "phase": float(rng.uniform(0, 2 * math.pi))}


def clip_spec(rng, split):
    n = int(rng.choice([1, 1, 1, 2, 2, 3]))
    held = set(HELD_OUT)
    first = object_spec(rng, forced=HELD_OUT[rng.integers(len(HELD_OUT))]) if split == "eval" else object_spec(rng, avoid=held)
    objs = [first] + [object_spec(rng, avoid=held) for _ in range(n - 1)]
    bg = background_spec(rng)
    # Objects must stand out from the background.
    for o in objs:
        while min(np.abs(np.subtract(COLOURS[o["colour"]], BACKGROUNDS[c])).sum() for c in bg["colours"]) < 120:
            bg = background_spec(rng)
    return {"objects": objs, "background": bg}


def describe(spec, rng):
    parts = []
    for o in spec["objects"]:
        verb = rng.choice(MOTION_TEXT[o["motion"]]).item().format(speed=o["speed"])
        parts.append(f"a {o['size']} {o['colour']} {o['shape']} {verb}")
    bg = spec["background"]
    where = (f"on a {bg['colours'][0]} background" if bg["kind"] == "plain" else
             f"on a {bg['kind']} gradient from {bg['colours'][0]} to {bg['colours'][1]}")
    body = ", and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + ", and " + parts[-1]
    templates = ["{n}{body} {where}", "{n}{body}, {where}", "{where_cap}, {n}{body}"]
    t = rng.choice(templates).item()
    return t.format(n=ORDINAL[len(parts)], body=body, where=where, where_cap=where[0].upper() + where[1:])


# A long clip moves at a short clip's per-frame rate (its 17 frames span u = 0..1).
LONG_SPAN = 16


def trajectory(o, t, frames, long=False):
    """Centre (x, y) in [0, 1] and radius scale at frame t. A short clip spreads each motion
    over its frames; a long clip (`long`) keeps the 17-frame clip's per-frame rate for as long
    as it lasts, so it starts exactly like the short clip: periodic motions repeat, growing
    and shrinking stop at their limits, and straight motions leave the frame and come back
    in on the opposite side (the caption stays true for the whole clip)."""
    s = SPEEDS[o["speed"]]
    u = t / LONG_SPAN if long else t / max(frames - 1, 1)
    x, y = o["start"]
    d = 0.35 * s * u
    dirs = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "up-left": (-0.7, -0.7),
            "up-right": (0.7, -0.7), "down-left": (-0.7, 0.7), "down-right": (0.7, 0.7)}
    scale = 1.0
    m = o["motion"]
    if m in dirs:
        x, y = x + dirs[m][0] * d - dirs[m][0] * 0.175 * s, y + dirs[m][1] * d - dirs[m][1] * 0.175 * s
    elif m == "bounce":
        y = y + 0.2 * abs(math.sin(math.pi * 1.5 * s * u + o["phase"])) - 0.1
    elif m == "circle":
        a = o["phase"] + 2 * math.pi * 0.8 * s * u
        x, y = x + 0.18 * math.cos(a), y + 0.18 * math.sin(a)
    elif m == "grow":
        scale = min(0.6 + 0.8 * s * u, 2.0) if long else 0.6 + 0.8 * s * u
    elif m == "shrink":
        scale = 1.4 - 0.8 * s * u
    scale = max(scale, 0.3)
    if long and m in dirs:
        # Wrap once the shape (within 1.2 radii of its centre) is wholly outside.
        e = 1.2 * SIZES[o["size"]] * scale
        x, y = (x + e) % (1 + 2 * e) - e, (y + e) % (1 + 2 * e) - e
    return x, y, scale


def shape_mask(shape, xx, yy, cx, cy, r):
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * r
    if shape == "triangle":
        return (dy <= 0.75 * r) & (dy >= -r + 2 * np.abs(dx) * 0.9)
    if shape == "star":
        a = np.arctan2(dy, dx)
        rr = np.sqrt(dx * dx + dy * dy)
        return rr <= r * (0.55 + 0.45 * np.abs(np.cos(2.5 * a)))
    raise ValueError(shape)


def background_image(spec, size, ss=4):
    """The clip's background at ss x ss supersampling and at output size (uint8)."""
    n = size * ss
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) / n
    bg = spec["background"]
    if bg["kind"] == "plain":
        base = np.broadcast_to(np.array(BACKGROUNDS[bg["colours"][0]], np.float32), (n, n, 3))
    else:
        a, b = (np.array(BACKGROUNDS[c], np.float32) for c in bg["colours"])
        w = (ys if bg["kind"] == "vertical" else xs)[..., None]
        base = a * (1 - w) + b * w
    return base, base.reshape(size, ss, size, ss, 3).mean(axis=(1, 3)).round().astype(np.uint8)


def render(spec, frames, size, ss=4, long=False):
    n = size * ss
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) / n
    base, small = background_image(spec, size, ss)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        out[t] = small
        # Every shape lies within 1.2 radii of its centre: draw only inside the union of the
        # objects' boxes (whole output pixels), which is where the frame differs from `small`.
        placed = []
        for o in spec["objects"]:
            cx, cy, sc = trajectory(o, t, frames, long)
            placed.append((o, cx, cy, SIZES[o["size"]] * sc))
        x0 = max(0, min(int(math.floor((cx - 1.2 * r) * size)) for _, cx, _, r in placed))
        x1 = min(size, max(int(math.ceil((cx + 1.2 * r) * size)) + 1 for _, cx, _, r in placed))
        y0 = max(0, min(int(math.floor((cy - 1.2 * r) * size)) for _, _, cy, r in placed))
        y1 = min(size, max(int(math.ceil((cy + 1.2 * r) * size)) + 1 for _, _, cy, r in placed))
        if x1 <= x0 or y1 <= y0:
            continue
        win = (slice(y0 * ss, y1 * ss), slice(x0 * ss, x1 * ss))
        img = base[win].copy()
        for o, cx, cy, r in placed:
            m = shape_mask(o["shape"], xs[win], ys[win], cx, cy, r)
            img[m] = COLOURS[o["colour"]]
        h, w = y1 - y0, x1 - x0
        out[t, y0:y1, x0:x1] = img.reshape(h, ss, w, ss, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=["train", "eval"], default="train")
    ap.add_argument("--shard", type=int, default=500)
    ap.add_argument("--long", action="store_true",
                    help="motion at the 17-frame clip's per-frame rate however many frames (see trajectory)")
    ap.add_argument("--prompts", type=int, help="print this many captions (no rendering) and exit")
    ap.add_argument("--safetensors", action="store_true",
                    help="write one OUT/clips.safetensors (`videos` uint8 [n, T, H, W, 3]) instead of npz shards")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    if a.prompts:
        for _ in range(a.prompts):
            spec = clip_spec(rng, a.split)
            print(json.dumps({"caption": describe(spec, rng), **spec}))
        return
    os.makedirs(a.out, exist_ok=True)
    if a.safetensors:
        from safetensors.numpy import save_file
        specs = [clip_spec(rng, a.split) for _ in range(a.clips)]
        with open(os.path.join(a.out, "captions.jsonl"), "w") as cap:
            for spec in specs:
                cap.write(json.dumps({"caption": describe(spec, rng), **spec}) + "\n")
        save_file({"videos": np.stack([render(s, a.frames, a.size, long=a.long) for s in specs])}, os.path.join(a.out, "clips.safetensors"))
        return
    with open(os.path.join(a.out, "captions.jsonl"), "w") as cap:
        for s0 in range(0, a.clips, a.shard):
            vids, bgs = [], []
            for _ in range(min(a.shard, a.clips - s0)):
                spec = clip_spec(rng, a.split)
                cap.write(json.dumps({"caption": describe(spec, rng), **spec}) + "\n")
                vids.append(render(spec, a.frames, a.size, long=a.long))
                bgs.append(background_image(spec, a.size)[1])
            # The backgrounds let the VAE's loss find the object pixels (train_vae.py --object-weight).
            np.savez(os.path.join(a.out, f"clips-{s0 // a.shard:05d}.npz"), videos=np.stack(vids),
                     backgrounds=np.stack(bgs))
            print(f"{s0 + len(vids)}/{a.clips}", flush=True)


if __name__ == "__main__":
    main()
