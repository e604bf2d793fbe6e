#!/usr/bin/env bash
# Builds h264-encode twice into target/: `h264-encode-asm` (needs nasm) and
# `h264-encode-c` (OPENH264_NO_ASM=1, what a machine without nasm gets).
set -euo pipefail
cd "$(dirname "$0")"
command -v nasm >/dev/null || { echo "nasm not found (apt-get install nasm)" >&2; exit 1; }
cargo build --release -q --target-dir target/asm
OPENH264_NO_ASM=1 cargo build --release -q --target-dir target/c
cp target/asm/release/h264-encode target/h264-encode-asm
cp target/c/release/h264-encode target/h264-encode-c
