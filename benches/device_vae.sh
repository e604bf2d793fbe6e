#!/usr/bin/env bash
# Run on the GPU machine (the device tool) from the repository root, after
# carrying .devcarry/ (sana-video, vae-decode, vae_parity CUDA builds, xz) and .whl/.
set -uo pipefail
source benches/device_unpack.sh

echo "== VAE parity on CUDA (fixtures, f32, tolerance 1e-5)"
SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures $B/vae_parity --test-threads=1 --nocapture 2>&1 \
  | grep -E 'rel L2|test result|panicked|FAILED' | tee $OUT/vae_parity_cuda.log

echo "== full-size random Wan2.1 VAE: diffusers reference and timings"
python3 tools/fullsize_wan_vae.py --out /tmp/wanvae 2>&1 | grep -v -i warn | tee $OUT/vae_reference.md
$B/sana-video debug vae-decode --backend cuda --model /tmp/wanvae/vae --inputs /tmp/wanvae/inputs.safetensors \
  --output /tmp/wanvae/ours.safetensors 2>&1 | tee $OUT/vae_ours_cli.txt
python3 tools/compare.py /tmp/wanvae/ours.safetensors /tmp/wanvae/reference.safetensors sample | tee $OUT/vae_fullsize_parity.txt
timeout 240 $B/vae-decode --model /tmp/wanvae/vae --backend cuda --latent 1x2x60x104 --latent 1x6x60x104 \
  --latent 1x11x60x104 --latent 1x21x60x104 2>&1 | tee $OUT/vae_bench_ours.md
