#!/usr/bin/env bash
# Run on the GPU machine (the device tool) from the repository root, carrying .devcarry/
# (stripped, xz-compressed CUDA builds of sana-video, vae-decode, vae_parity, vae_conv)
# and .whl/ (diffusers 0.42.1 wheel). Stages: VAE_STAGES="parity wan apis ltx" (default all but apis).
set -uo pipefail
source benches/device_unpack.sh
STAGES=${VAE_STAGES:-parity wan ltx}

if [[ $STAGES == *parity* ]]; then
echo "== VAE parity on CUDA (fixtures, f32, tolerance 1e-5)"
for t in vae_parity vae_conv kernels; do
  [ -x $B/$t ] && SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures $B/$t --test-threads=1 --nocapture 2>&1 \
    | grep -E 'rel L2|test result|panicked|FAILED' | tee -a $OUT/vae_parity_cuda.log
done
fi

if [[ $STAGES == *wan* ]]; then
echo "== full-size random Wan2.1 VAE: diffusers reference and timings"
python3 tools/fullsize_wan_vae.py --out /tmp/wanvae --latent 1x2x60x104 --latent 1x21x60x104 --time-tf32 off --time-tf32 on 2>&1 | grep -v -i warn | tee $OUT/vae_reference.md
# SANA_VAE_TF32: 0 exact f32 products, 1 TF32 (the CUDA default, as PyTorch's cuDNN convs)
for tf in ${VAE_TF32S:-0 1}; do
  echo "SANA_VAE_TF32=$tf" | tee -a $OUT/vae_fullsize_parity.txt
  SANA_VAE_TF32=$tf $B/sana-video debug vae-decode --backend cuda --model /tmp/wanvae/vae --inputs /tmp/wanvae/inputs.safetensors \
    --output /tmp/wanvae/ours.safetensors 2>&1 | tee -a $OUT/vae_ours_cli.txt
  python3 tools/compare.py /tmp/wanvae/ours.safetensors /tmp/wanvae/reference.safetensors sample | tee -a $OUT/vae_fullsize_parity.txt
  SANA_VAE_TF32=$tf timeout 150 $B/vae-decode --model /tmp/wanvae/vae --backend cuda --chunk 1 --latent 1x2x60x104 --latent 1x21x60x104 \
    2>&1 | tee -a $OUT/vae_bench_ours.md
done
timeout 150 $B/vae-decode --model /tmp/wanvae/vae --backend cuda --dtype bf16 --chunk 1 --latent 1x2x60x104 --latent 1x21x60x104 \
  2>&1 | tee -a $OUT/vae_bench_ours.md
fi

if [[ $STAGES == *apis* ]]; then
echo "== cuDNN graph API against the legacy API (TF32), engines chosen, memory at the profile marks"
[ -d /tmp/wanvae/vae ] || python3 tools/fullsize_wan_vae.py --out /tmp/wanvae --latent 1x2x60x104 2>&1 | grep -v -i warn
SANA_CUDNN_VERBOSE=1 timeout 100 $B/vae-decode --model /tmp/wanvae/vae --backend cuda --chunk 1 --latent 1x2x60x104 2>&1 \
  | grep -E "graph API|declines|^\|" | sort | uniq -c | sort -rn | tee $OUT/vae_cudnn_engines.txt
SANA_CUDNN_API=legacy timeout 150 $B/vae-decode --model /tmp/wanvae/vae --backend cuda --chunk 1 --latent 1x2x60x104 --latent 1x21x60x104 \
  2>&1 | tee -a $OUT/vae_bench_legacy.md
for dt in f32 bf16; do
  SANA_PROFILE_MEMORY=1 timeout 150 $B/vae-decode --model /tmp/wanvae/vae --backend cuda --dtype $dt --chunk 1 --latent 1x21x60x104 --profile \
    2>&1 | tee -a $OUT/vae_profile_memory.md
done
fi

if [[ $STAGES == *ltx* ]]; then
echo "== full-size random LTX-2 VAE (720p config): diffusers reference and timings"
python3 tools/fullsize_ltx2_vae.py --out /tmp/ltxvae 2>&1 | grep -v -i warn | tee $OUT/ltx_reference.md
$B/sana-video debug vae-decode --backend cuda --model /tmp/ltxvae/vae --inputs /tmp/ltxvae/inputs.safetensors \
  --output /tmp/ltxvae/ours.safetensors 2>&1 | tee $OUT/ltx_ours_cli.txt
python3 tools/compare.py /tmp/ltxvae/ours.safetensors /tmp/ltxvae/reference.safetensors sample | tee $OUT/ltx_fullsize_parity.txt
for dt in f32 bf16; do
  timeout 150 $B/vae-decode --model /tmp/ltxvae/vae --backend cuda --dtype $dt --latent 1x2x22x40 --latent 1x3x22x40 \
    2>&1 | tee -a $OUT/ltx_bench_ours.md
done
fi
