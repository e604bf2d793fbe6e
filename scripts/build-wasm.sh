#!/usr/bin/env bash
# Builds the web crate (and so the core library) for wasm32-unknown-unknown with Debian's
# rustc-web toolchain, which ships the wasm32 std source (TOOLCHAIN.md §1):
#   apt-get install -y rustc-web cargo-web rust-web-src lld-22
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in /usr/bin/rustc /usr/bin/cargo wasm-ld-22; do
    command -v "$tool" >/dev/null || { echo "build-wasm: $tool not found (apt-get install rustc-web cargo-web rust-web-src lld-22)" >&2; exit 1; }
done
RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
  /usr/bin/cargo build --release --locked -p sana-video-web \
    --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
ls -l "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/sana_video_web.wasm"
