#!/usr/bin/env bash
# The fused linear-attention apply (2026-11-29, sixth session of issue 9) on the GPU machine,
# against the four-pass path it replaces, in one call. Stages (FUSED_STAGES, default
# "tests ab"):
#   tests:   the test binaries FUSED_TESTS (default `kernels dit_parity`) with
#            SANA_TEST_BACKENDS=cuda, then =vulkan (FUSED_TEST_BACKENDS)
#   ab:      dit-forward, random full-size 480p DiT, 65,520 tokens (FUSED_LATENTS), "new"
#            (the defaults) and "old" (FUSED_OLD, default SANA_LA_KV=gemm: the linear
#            attention's older KV sum; the sixth session compared SANA_LA_APPLY=gemm) alternated (FUSED_AB, default
#            "cuda:bf16 cuda:fp8 vulkan:f16"; FUSED_VARIANTS, default "new old new old";
#            "prev" runs .devcarry/dit-forward-prev.xz, an earlier build, when carried; a
#            variant VAR=value[,VAR=value] runs the defaults with those variables set)
#   profile: timeline profile of the CUDA CFG-batch forward (FUSED_PROFILE, default
#            "new old"; bf16, "fp8" and "fp8-old" the FP8 copy)
#   ncu:     Nsight Compute on the GLU conv's two kernels and the fused apply (one launch
#            each, CUDA bf16, 65,520 tokens), where the machine has `ncu` (FUSED_NCU_KERNELS,
#            FUSED_NCU_GLU: other kernels, a SANA_GLU setting)
#   parity:  one full-size forward against the float64 diffusers reference: CUDA f32 and
#            bf16, Vulkan f16 (FUSED_PARITY: backend:dtype[:VAR=value,...], dtype fp8 the
#            FP8 copy)
#   lattn:   the linear attention's stages (timeline, CUDA) for each FUSED_LATTN variant
#            (SANA_LA_APPLY_TILE settings, several joined by '+'; FUSED_LATTN_DTYPES bf16 fp8)
#   glu:     the GLU stage (timeline, CUDA bf16, 65,520 tokens) for each SANA_GLU setting in
#            FUSED_GLU (units,strip,vector,silu,regs; regs 1: f32 registers, 2: taps from L1)
#   h264:    H.264 encoding of 81 synthetic 480p frames with and without OpenH264's SIMD
#            (benches/h264-encode, built by its build.sh; carried as .devcarry/h264-encode-*)
#   vae:     `vae-decode` of one LongSANA chunk (10 latent frames), bf16, timed and as a
#            timeline profile
#   mem:     the FP8 clip (MEM_STEPS steps, default 20) with the pool pre-sized as on an
#            8 GiB card, SANA_MEMORY_TRACE=1 and nvidia-smi's peak
#   cache:   the FP8 clip below twice, CubeCL's kernel cache emptied before the first
#   e2e:     the random full-size 480p pipeline (tools/fullsize_pipeline.py) quantised to
#            FP8, `sana-video generate` 81 frames, 50 steps, CFG 6, bf16 VAE; then LongSANA
#            10 s (bf16), both on CUDA
# Carry .devcarry/ (xz of sana-video, dit-forward, vae-decode and the test binaries named in
# FUSED_TESTS, built with `--features cuda,vulkan`; several in one .tar.xz fit the carry
# limit), .gl/ (the Vulkan loader and glvnd debs)
# and .whl/ (diffusers). The first calls of that session (logs in
# benches/results/2026-11-29-s6-h200/) also compared a shared-memory tiled GLU conv, since
# removed (commits 218b4be..1fe97ed).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
source benches/device_unpack.sh
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
STAGES=${FUSED_STAGES:-tests ab}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } | tee $OUT/gpu.txt
OLD=${FUSED_OLD:-SANA_LA_KV=gemm}
if [[ $STAGES == *tests* ]]; then
  for be in ${FUSED_TEST_BACKENDS:-cuda vulkan}; do
    for t in ${FUSED_TESTS:-kernels dit_parity}; do
      [ -x $B/$t ] || continue
      echo "== $t on $be"
      SANA_TEST_BACKENDS=$be SANA_FIXTURES=tests/fixtures timeout 300 $B/$t --test-threads=1 --nocapture 2>&1 \
        | grep -E 'rel|test |test result|panicked|error'
    done
  done | tee $OUT/tests.log
fi
CK=/tmp/ck480/transformer
if [[ $STAGES == *ab* || $STAGES == *profile* || $STAGES == *parity* || $STAGES == *ncu* || $STAGES == *glu* || $STAGES == *lattn* ]]; then
  [ -d $CK ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out $CK --device cuda 2>&1 | grep -v -i warn
fi
forward() { # backend dtype-or-fp8 env... extra args
  local be=$1 dt=$2; shift 2
  local model=$CK dtype=$dt
  if [ "$dt" = fp8 ]; then
    dtype=bf16; model=/tmp/ck480-fp8
    [ -d $model ] || timeout 200 $B/dit-forward --model $CK --backend cuda --dtype bf16 --quantize fp8 --quantized-dir $model --latent 1x2x8x8 --iters 1 > /dev/null 2>&1
  fi
  local bin=$B/dit-forward
  [ "${PREV:-0}" = 1 ] && bin=$B/dit-forward-prev
  env "$@" timeout 200 $bin --model $model --backend $be --dtype $dtype --mask-pad 250 --warmup 1 --iters 3 $(for l in ${FUSED_LATENTS:-2x21x60x104}; do echo --latent $l; done) ${EXTRA:-} 2>&1
}
if [[ $STAGES == *ab* ]]; then
  for bd in ${FUSED_AB:-cuda:bf16 cuda:fp8 vulkan:f16}; do
    set -- ${bd/:/ }
    for v in ${FUSED_VARIANTS:-new old new old}; do
      echo "== $1 $2 $v"
      case $v in
        new) forward $1 $2 X=1 ;;
        old) forward $1 $2 $OLD ;;
        prev) PREV=1 forward $1 $2 X=1 ;;
        *=*) forward $1 $2 ${v//,/ } ;;
      esac | grep -E "^\| [0-9]|error|Error"
    done
  done | tee $OUT/ab.md
fi
if [[ $STAGES == *profile* ]]; then
  for v in ${FUSED_PROFILE:-new old}; do
    echo "== cuda $v (new, old: bf16 weights; fp8*: the FP8 copy)"
    case $v in
      new) EXTRA=--profile forward cuda bf16 SANA_PROFILE_MODE=timeline ;;
      old) EXTRA=--profile forward cuda bf16 SANA_PROFILE_MODE=timeline $OLD ;;
      prev) PREV=1 EXTRA=--profile forward cuda bf16 SANA_PROFILE_MODE=timeline ;;
      fp8) EXTRA=--profile forward cuda fp8 SANA_PROFILE_MODE=timeline ;;
      fp8-old) EXTRA=--profile forward cuda fp8 SANA_PROFILE_MODE=timeline $OLD ;;
    esac \
      | grep -E "Timeline|tokens|^\||error" | head -70
  done | tee $OUT/profile.md
fi
if [[ $STAGES == *ncu* ]]; then
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  if [ -z "$NCU" ]; then echo "no ncu on this machine" | tee $OUT/ncu.txt; else
    for k in ${FUSED_NCU_KERNELS:-silu_inplace_kernel glu_depthwise_kernel apply_fused_kernel}; do
      echo "== $k (SANA_GLU=${FUSED_NCU_GLU:-default})"
      SANA_GLU=${FUSED_NCU_GLU:-128,8,4,0,0} timeout 200 $NCU --kernel-name regex:$k --launch-count 1 --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
        $B/dit-forward --model $CK --backend cuda --dtype bf16 --mask-pad 250 --warmup 0 --iters 1 --latent 2x21x60x104 2>&1 | grep -v "^| " | grep -v "^==PROF==" | tail -150
    done | tee $OUT/ncu.txt
  fi
fi
if [[ $STAGES == *parity* ]]; then
  python3 tools/fullsize_parity.py --model $CK --out /tmp/fp --latent 2x16x5x30x52 2>&1 | grep -v -i warn | tail -3
  # FUSED_PARITY: backend:dtype[:VAR=value,...]; dtype fp8 runs the FP8 copy (W8A8) in bf16.
  for bd in ${FUSED_PARITY:-cuda:f32 cuda:bf16 vulkan:f16}; do
    IFS=: read -r be dt envs <<< "$bd"
    model=$CK dtype=$dt
    if [ "$dt" = fp8 ]; then
      model=/tmp/ck480-fp8 dtype=bf16
      [ -d $model ] || timeout 200 $B/dit-forward --model $CK --backend cuda --dtype bf16 --quantize fp8 --quantized-dir $model --latent 1x2x8x8 --iters 1 > /dev/null 2>&1
    fi
    tag=$(echo "${be}_${dt}_${envs}" | tr -c 'A-Za-z0-9_\n' _)
    env X=1 ${envs//,/ } timeout 300 $B/sana-video debug transformer --backend $be --dtype $dtype --model $model --inputs /tmp/fp/inputs.safetensors --output /tmp/fp/ours_$tag.safetensors 2>&1 | tail -1
    python3 tools/compare.py /tmp/fp/ours_$tag.safetensors /tmp/fp/outputs.safetensors 2>&1 | sed "s/^/$be $dt $envs: /"
  done | tee $OUT/parity.txt
fi
if [[ $STAGES == *glu* ]]; then
  for g in ${FUSED_GLU:-128,8,4,0,0 128,8,4,0,1 128,8,4,0,2 256,8,4,0,2 128,8,8,0,2 128,16,4,0,2}; do
    echo "== SANA_GLU=$g"
    EXTRA=--profile forward cuda bf16 SANA_GLU=$g SANA_PROFILE_MODE=timeline | grep -E "^\| [0-9]|ff\.glu|error"
  done | tee $OUT/glu.md
fi
if [[ $STAGES == *lattn* ]]; then
  # The linear attention's stages (timeline, CUDA, FUSED_LATTN_DTYPES default bf16) for each
  # variant in FUSED_LATTN: VAR=value, several joined by '+'.
  for dt in ${FUSED_LATTN_DTYPES:-bf16}; do
    for g in ${FUSED_LATTN:-X=1 SANA_LA_APPLY_TILE=4,4 SANA_LA_APPLY_TILE=16,2 SANA_LA_APPLY_TILE=12,2}; do
      echo "== $dt $g"
      EXTRA=--profile forward cuda $dt ${g//+/ } SANA_PROFILE_MODE=timeline | grep -E "^\| [0-9]|la\.|error"
    done
  done | tee $OUT/lattn.md
fi
if [[ $STAGES == *h264* ]]; then
  { nproc; lscpu | grep -E "Model name"; for v in c asm c asm; do [ -x $B/h264-encode-$v ] && echo "$v: $($B/h264-encode-$v 81)"; done; } | tee $OUT/h264.txt
fi
TOK=tests/fixtures/downloads/gemma-2-tokenizer; P=/tmp/sana480p; PL=/tmp/sana480p-long
pipeline() { # the random full-size 480p pipeline and its FP8 copy
  [ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
  [ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i -E "warn|Writing" | tail -3
  [ -d $P-fp8 ] || $B/sana-video quantize --format fp8 --model $P --output $P-fp8 2>&1 | tail -1
}
clip() { # the FP8 480p clip, 50 steps, bf16 VAE
  timeout 300 $B/sana-video generate --model $P-fp8 --backend cuda --dtype bf16 --vae-dtype bf16 --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
    --frames 81 --height 480 --width 832 --steps 50 --cfg-scale 6 --seed 42 -o /tmp/ours_fp8.mp4 2>&1 | awk '!/^ *\[/ || / (1|2|10|25|50)\/50 / || / 81\/81 /' | tail -30
}
if [[ $STAGES == *cache* ]]; then
  # CubeCL's on-disk kernel cache: the same clip twice, from an empty cache, then warm.
  pipeline
  rm -rf target/environment ~/.cache/cubecl
  for run in cold warm; do echo "== $run cache"; clip; done | tee $OUT/cache.txt
  du -sh target/environment ~/.cache/cubecl 2>/dev/null | tee -a $OUT/cache.txt
fi
if [[ $STAGES == *vae* ]]; then
  # The Wan VAE's streamed decode of one LongSANA chunk (10 latent frames, one per push), bf16,
  # timed, then as a timeline (no syncs) of its stages.
  pipeline
  for mode in time timeline; do
    echo "== vae-decode bf16 ($mode)"
    if [ $mode = time ]; then EXTRA=; else EXTRA=--profile; fi
    SANA_PROFILE_MODE=timeline timeout 200 $B/vae-decode --model $P/vae --backend cuda --dtype bf16 --chunk 1 --latent 1x10x60x104 --iters 2 $EXTRA 2>&1 | grep -v "^pool"
  done | tee $OUT/vae.md
fi
if [[ $STAGES == *mem* ]]; then
  # The FP8 clip as an 8 GiB card runs it (the pool's pages pre-sized), with the pool's and
  # the driver's memory per stage and nvidia-smi's peak.
  pipeline
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.2; done ) > /tmp/smi.txt 2>/dev/null &
  SMI=$!
  SANA_POOL_PRESIZE=on SANA_MEMORY_TRACE=1 timeout 300 $B/sana-video generate --model $P-fp8 --backend cuda --dtype bf16 --vae-dtype bf16 \
    --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." --frames 81 --height 480 --width 832 \
    --steps ${MEM_STEPS:-20} --cfg-scale 6 --seed 42 -o /tmp/mem.mp4 2>&1 | grep -v -E "^\s*\[" | tee $OUT/mem.txt
  kill $SMI
  echo "nvidia-smi peak: $(sort -n /tmp/smi.txt | tail -1) MiB (sampled every 0.2 s)" | tee -a $OUT/mem.txt
fi
if [[ $STAGES == *e2e* ]]; then
  pipeline
  clip | tee $OUT/e2e.txt
  source benches/causal_copy.sh
  timeout 200 $B/sana-video generate --model $PL --backend cuda --dtype bf16 --vae-dtype bf16 --seconds 10 \
    --prompt "A red kite drifts over a green hill under a slowly moving sky." --seed 1 -o /tmp/long.mp4 2>&1 | grep -v -E "^\s*\[" | tail -30 | tee $OUT/long.txt
fi
