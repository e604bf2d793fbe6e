#!/usr/bin/env bash
# Quick CUDA check on the GPU machine (device tool): the kernels and DiT parity tests on CUDA,
# then the 480p DiT forward one at a time and chained (`--chain 4`, as a sampler issues them),
# with its stage profile. Carry .devcarry/{dit-forward,kernels,dit_parity}.xz (stripped CUDA
# builds) and .whl/ (diffusers 0.42.1, for the random checkpoint).
set -uo pipefail
source benches/device_unpack.sh
for t in kernels dit_parity; do
  SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures timeout 200 $B/$t --test-threads=1 --nocapture 2>&1 \
    | grep -E 'test result|panicked|FAILED|cuda.*(f16|glu|temporal|rounded|F16|BF16)' | tail -25
done
python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/ck --device cuda 2>&1 | grep -v -i warn
timeout 150 $B/dit-forward --model /tmp/ck --backend cuda --dtype bf16 --latent 2x21x60x104 --latent 1x10x60x104 \
  --iters 3 --chain 4 --mask-pad 250 --profile 2>&1 | tee $OUT/forward_chain.md
