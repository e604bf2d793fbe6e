# Sourced by benches/device_*.sh on the GPU machine: unpacks the carried .devcarry/*.xz
# binaries (one per file, or several in a .tar.xz) into $B and installs the carried diffusers
# wheel.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} CUDA_PATH=/usr/local/cuda
B=/tmp/sana-bin; mkdir -p $B
for f in .devcarry/*.xz; do
  case $f in
    # Several binaries in one archive (solid compression shares their common code).
    *.tar.xz) python3 -c "import tarfile,sys; tarfile.open(sys.argv[1], 'r:xz').extractall(sys.argv[2])" "$f" $B ;;
    *) python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$f" "$B/$(basename "$f" .xz)" ;;
  esac
done
chmod +x $B/*
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# cuDNN for the VAE convs (kernels/src/conv): PyTorch's pip copy, found by its soname; cudarc
# loads `libcudnn.so`, so a link by that name goes first on the library path.
CUDNN_SO=$(python3 -c "import glob,sys; print(next((f for p in sys.path for f in glob.glob(p + '/nvidia/**/libcudnn.so.*', recursive=True)), ''))" 2>/dev/null)
if [ -n "$CUDNN_SO" ]; then
  mkdir -p /tmp/cudnnlib && ln -sf "$CUDNN_SO" /tmp/cudnnlib/libcudnn.so
  export LD_LIBRARY_PATH=/tmp/cudnnlib:$(dirname "$CUDNN_SO"):$LD_LIBRARY_PATH
  echo "cuDNN: $CUDNN_SO"
fi
# NVRTC for cuDNN's runtime-compiled engines (graph API), as PyTorch has it loaded.
NVRTC_SO=$(python3 -c "import glob,sys; print(next((f for p in sys.path for f in glob.glob(p + '/nvidia/**/libnvrtc.so.*', recursive=True)), ''))" 2>/dev/null)
[ -n "$NVRTC_SO" ] && export LD_LIBRARY_PATH=$(dirname "$NVRTC_SO"):$LD_LIBRARY_PATH && echo "NVRTC: $NVRTC_SO"
