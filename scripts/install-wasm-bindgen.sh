#!/usr/bin/env bash
# Prints the path of a wasm-bindgen CLI whose version equals the wasm-bindgen crate in
# Cargo.lock, installing it first (about 8 minutes cold) into a cache outside the clone:
# $SANA_TOOLS_DIR, default ~/.cache/sana-video-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$version" ] || { echo "install-wasm-bindgen: no wasm-bindgen in Cargo.lock" >&2; exit 1; }
for candidate in "${WASM_BINDGEN:-}" "$(command -v wasm-bindgen || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
        echo "$candidate"; exit 0
    fi
done
root="${SANA_TOOLS_DIR:-$HOME/.cache/sana-video-tools}/wasm-bindgen-$version"
if ! [ -x "$root/bin/wasm-bindgen" ]; then
    echo "install-wasm-bindgen: installing wasm-bindgen-cli $version into $root" >&2
    # Not --locked: its lock pins a crate version the registry mirror may not serve.
    cargo install wasm-bindgen-cli --version "$version" --root "$root" >&2
fi
echo "$root/bin/wasm-bindgen"
