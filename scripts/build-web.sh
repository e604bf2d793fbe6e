#!/usr/bin/env bash
# Builds the browser demo into web/dist/ (any static server can serve it):
#   web/dist/index.html, main.js, worker.js, mux.js, style.css   the page (web/www/)
#   web/dist/pkg/                                                the engine: wasm + wasm-bindgen JS
#   web/dist/models/builtin/                                     the built-in model + manifest.json
# Needs the wasm32 toolchain (scripts/build-wasm.sh) and wasm-bindgen-cli of the version in
# Cargo.lock (scripts/install-wasm-bindgen.sh installs it into a cache outside the clone).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-wasm.sh
bindgen=$(bash scripts/install-wasm-bindgen.sh)
out=web/dist
rm -rf "$out"
mkdir -p "$out/pkg" "$out/models"
"$bindgen" --target web --no-typescript --remove-name-section --remove-producers-section \
    --out-dir "$out/pkg" "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/sana_video_web.wasm"
cp web/www/*.html web/www/*.js web/www/*.css "$out/"
cp -r builtin-model "$out/models/builtin"
# The manifest lists each file with its size, and a version (hash of the contents) that
# keys the browser's cache, so a changed model is fetched again.
(
    cd "$out/models/builtin"
    files=$(find . -type f ! -name manifest.json ! -name README.md | sed 's|^\./||' | sort)
    version=$(for f in $files; do sha256sum "$f"; done | sha256sum | cut -c1-16)
    {
        printf '{"version": "%s", "files": [' "$version"
        sep=""
        for f in $files; do
            printf '%s{"path": "%s", "size": %d}' "$sep" "$f" "$(stat -c %s "$f")"
            sep=", "
        done
        printf ']}\n'
    } > manifest.json
)
du -sh "$out" "$out/pkg/sana_video_web_bg.wasm" | sed 's/^/build-web: /'
