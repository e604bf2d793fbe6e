# Sourced by benches/device_{longsana,e2e}.sh: $PL becomes a copy of the pipeline folder $P
# (symlinks to the same weights) whose transformer is declared block-causal
# (SanaVideoCausalTransformer3DModel, LongSANA).
rm -rf $PL; mkdir -p $PL/transformer
for d in $P/*; do [ "$(basename $d)" = transformer ] || ln -s $d $PL/; done
rm -f $PL/model_index.json
for f in $P/transformer/*; do ln -s $f $PL/transformer/; done
rm $PL/transformer/config.json
python3 - $P $PL <<'PY'
import json, sys
src, dst = sys.argv[1:]
c = json.load(open(f"{src}/transformer/config.json")); c["_class_name"] = "SanaVideoCausalTransformer3DModel"
json.dump(c, open(f"{dst}/transformer/config.json", "w"), indent=2)
m = json.load(open(f"{src}/model_index.json")); m["transformer"] = ["diffusers", "SanaVideoCausalTransformer3DModel"]
json.dump(m, open(f"{dst}/model_index.json", "w"), indent=2)
PY
