#!/usr/bin/env bash
# Run on the GPU machine (the device tool), from the repository root, with .devcarry/
# (xz-compressed CUDA builds of sana-video, dit-forward and the dit_parity / kernels test
# binaries) and .whl/ (the diffusers 0.42.1 wheel) carried. Writes logs to $OUT.
set -uo pipefail
source benches/device_unpack.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/gpu.txt
date -u | tee -a $OUT/gpu.txt

echo "== parity on CUDA (fixtures, f32, tolerance 1e-5)"
SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures $B/dit_parity --test-threads=1 --nocapture 2>&1 | grep -E 'rel L2|test result|panicked|FAILED' | tee $OUT/parity_cuda.log
SANA_TEST_BACKENDS=cuda $B/kernels --test-threads=1 --nocapture 2>&1 | grep -E 'rel|test result|panicked|FAILED' | tee $OUT/kernels_cuda.log

echo "== full-size 480p random checkpoint"
python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/ck480/transformer --device cuda 2>&1 | grep -v -i warn
$B/sana-video inspect /tmp/ck480/transformer | tee $OUT/inspect480.txt
python3 tools/fullsize_parity.py --model /tmp/ck480/transformer --out /tmp/fp 2>&1 | grep -v -i warn
$B/sana-video debug transformer --backend cuda --model /tmp/ck480/transformer --inputs /tmp/fp/inputs.safetensors --output /tmp/fp/ours.safetensors
python3 tools/compare.py /tmp/fp/ours.safetensors /tmp/fp/outputs.safetensors | tee $OUT/fullsize_parity.txt

echo "== benchmarks, CUDA"
$B/dit-forward --model /tmp/ck480/transformer --backend cuda --dtype bf16 --latent 1x5x16x16 --latent 1x21x30x52 --latent 1x21x60x104 --latent 2x21x60x104 2>&1 | tee $OUT/bench_cuda_bf16.md
$B/dit-forward --model /tmp/ck480/transformer --backend cuda --dtype f32 --latent 1x5x16x16 --latent 1x21x30x52 2>&1 | tee $OUT/bench_cuda_f32.md
echo "== reference (diffusers), same card"
python3 tools/bench_reference.py --model /tmp/ck480/transformer --dtype bfloat16 --latent 1x16x5x16x16 --latent 1x16x21x30x52 --latent 1x16x21x60x104 --latent 2x16x21x60x104 2>&1 | grep -v -i warn | tee $OUT/bench_ref_bf16.md
python3 tools/bench_reference.py --model /tmp/ck480/transformer --dtype float32 --latent 1x16x5x16x16 --latent 1x16x21x30x52 2>&1 | grep -v -i warn | tee $OUT/bench_ref_f32.md
