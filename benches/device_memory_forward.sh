#!/usr/bin/env bash
# Device memory outside the pool during the DiT forward (issue 9): dit-forward at 480p CFG
# batch, bf16, without cuBLASLt, FP8 W8A8 and W8A16, each printing the pool against the driver.
source benches/device_unpack.sh >/dev/null 2>&1
TOK=tests/fixtures/downloads/gemma-2-tokenizer
[ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
P=/tmp/sana480p
[ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i -E "warn|Writing" | tail -1
run() { echo "== $*"; env "$@" timeout 120 $B/dit-forward --model $P/transformer --backend cuda --dtype bf16 --latent 2x21x60x104 --warmup 1 --iters 1 --mask-pad 250 2>&1 | grep -E "^\| 2x|memory after|error" ; }
run X=1
run SANA_CUBLAS=off
echo "== fp8"; timeout 150 $B/dit-forward --model $P/transformer --backend cuda --dtype bf16 --latent 2x21x60x104 --warmup 1 --iters 1 --mask-pad 250 --quantize fp8 2>&1 | grep -E "^\| 2x|memory after|error"
echo "== fp8 W8A16"; SANA_FP8_ACTIVATIONS=0 timeout 150 $B/dit-forward --model $P/transformer --backend cuda --dtype bf16 --latent 2x21x60x104 --warmup 1 --iters 1 --mask-pad 250 --quantize fp8 2>&1 | grep -E "^\| 2x|memory after|error"
