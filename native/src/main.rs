//! `sana-video`: the command line of the SANA-Video engine.

mod args;
mod builtin;
mod debug;
mod evaluate;
mod generate;
mod quantize;
mod fmp4;
mod video;

use std::process::ExitCode;

const HELP: &str = "\
sana-video: SANA-Video inference engine (Linear DiT, text-to-video)

USAGE:
    sana-video generate --prompt TEXT -o OUT.mp4 [--model DIR] [options below]
    sana-video evaluate --prompts FILE [--model DIR] [--seeds 1,2,3] [--steps N] [--cfg-scale S]
                        [--frames N] [--sampler S] [--backend B] [--dtype D] [--report FILE]
    sana-video inspect DIR|builtin|builtin-long
    sana-video quantize --format fp8|nvfp4 --model DIR|builtin|builtin-long --output NEW_DIR
    sana-video debug transformer --model DIR --inputs IN.safetensors --output OUT.safetensors
                                 [--backend cpu|wgpu|vulkan|cuda] [--dtype f32|f16|bf16] [--reference-kernels]
    sana-video debug text-encoder --model DIR --inputs IN.safetensors --output OUT.safetensors
                                  [--backend ...] [--dtype ...]
    sana-video debug encode-prompt --model DIR --prompt TEXT --output OUT.safetensors
                                   [--negative-prompt TEXT | --no-negative] [--motion-score N]
                                   [--instruction video|image|none] [--no-lowercase]
                                   [--backend ...] [--dtype ...]
    sana-video debug vae-decode|vae-encode --model DIR --inputs IN.safetensors --output OUT.safetensors
                                   [--backend ...] [--dtype ...]

COMMANDS:
    generate             Text-to-video (image-to-video with --image). DIR: `builtin` (the
                         default: the small model compiled into this program, trained on
                         synthetic clips of coloured shapes in motion, 17 frames of 128x128;
                         see builtin-model/README.md), `builtin-long` (its block-causal
                         variant, used without --model when more than 17 frames or a
                         LongSANA flag are asked for), a diffusers SanaVideoPipeline folder,
                         or a repo id such as Efficient-Large-Model/SANA-Video_2B_480p_diffusers
                         found in the HF cache.
                         -o, --output PATH      .mp4 (H.264), .gif, .safetensors (`frames` f32
                                                [T,H,W,3] in [0,1] and `latents`), or a folder
                                                of PNG frames; written atomically
                         --prompt TEXT          --negative-prompt TEXT (default: the official
                                                negative prompt; \"\" for diffusers' default
                                                and for the built-in model)
                         --image FILE           first frame (PNG/JPEG/WebP), resized to the
                                                generation size
                         --frames N (81; builtin 17) | --seconds S      --fps N (16)
                         --height H --width W   (480x832 for 480p, 704x1280 for 720p models,
                                                else the model's sample_size x VAE factor)
                         --resolution-binning on|off|auto (on: generate at the nearest trained
                                                aspect bin, resize and crop back; auto: on
                                                for the released 480p/720p models)
                         --steps N (50; builtin 20)  --cfg-scale S (6; builtin 5)  --seed N (42)
                         --sampler dpm++|euler|unipc (default: the model's scheduler)
                         --motion-score N       --instruction video|image|none  --no-lowercase
                         --init-noise FILE      safetensors with `latents` [1,C,F,h,w]
                         --dtype f32|f16|bf16 (bf16 on cuda, else f32)  --vae-dtype (f32)
                         --vae-tiling [--vae-tile-size PX --vae-tile-overlap PX]
                         --keep-resident        keep all stages loaded (default: release each)
                         --max-memory GB        memory to plan against (default: detected
                                                free memory on cpu and cuda)
                         --quiet
                         LongSANA (a block-causal transformer, SanaVideoCausalTransformer3DModel):
                         chunk by chunk with a constant-size state, 4 LongLive steps per chunk,
                         no CFG, motion score 10 by default for the released 480p model
                         .mp4 is written as fragmented MP4, a fragment per decoded latent
                         frame, so the file (.NAME.partial-PID until the end) plays while
                         it grows
                         --chunk-frames N       latent frames per chunk (10 = 40 frames;
                                                builtin-long 2)
                         --cached-blocks K      attend to the last K chunks (-1: all, the
                                                default; builtin-long 1)
                         --prompt-schedule FILE `SECONDS PROMPT` lines, the first at 0
                         --save-state FILE      the state after the last chunk (atomic)
                         --resume FILE          continue that video (--frames a multiple of 4,
                                                or --seconds S for 16·S more frames)
    evaluate             Generates a clip for every prompt (one per line of FILE, in the
                         motion dataset's words: tools/dataset) and seed, finds the named
                         objects by colour, tracks them and checks their motion; prints a line
                         per clip and a JSON summary (colour accuracy, motion accuracy,
                         frame-to-frame consistency). Defaults: seeds 1,2,3, and the
                         model's size, frames, steps, guidance and negative prompt, as
                         generate.
                         A block-causal model (builtin-long) makes each video with LongLive
                         (--chunk-frames, --cached-blocks as generate) and every 17-frame
                         window, one per second, is scored; the summary adds per-window
                         colour and motion accuracy.
    inspect              Components, config summary, parameter count, stored dtypes and memory
                         of a diffusers folder (pipeline or component, or a Hugging Face cache
                         entry models--ORG--NAME, or a repo id ORG/NAME found in the HF cache).
    quantize             Writes a copy of a model folder whose DiT and text-encoder linear and
                         1x1-conv weights are FP8 (e4m3, one scale per output channel) or NVFP4
                         (e2m1, an e4m3 scale per 16 values, one f32 scale per tensor). The
                         first and last DiT layers, the embedders and embedding tables stay as
                         they were; the VAE and tokenizer are copied. `--model` and
                         `generate` read the result (and ComfyUI float8_e4m3fn and nvfp4
                         files); FP8 and NVFP4 linear weights stay packed on the device
                         (dequantised before each product). NEW_DIR must not exist; it appears only
                         when complete.
    debug transformer    Runs the DiT (SanaVideoTransformer3DModel) once. DIR is a diffusers
                         transformer/ folder (or a pipeline folder). IN holds f32 tensors named
                         like diffusers' forward arguments: hidden_states [B,C,F,H,W],
                         encoder_hidden_states [B,L,caption_channels], timestep [B] or [B,N],
                         optional encoder_attention_mask [B,L] (1 keep, 0 pad).
                         OUT receives `sample` (f32), written atomically.
    debug text-encoder   Runs the Gemma-2 text encoder (transformers Gemma2Model) once. DIR is a
                         text_encoder/ folder (or a pipeline folder). IN holds input_ids and
                         optional attention_mask (int64 [B,L], right padding). OUT receives
                         `last_hidden_state` (f32, after the final norm).
    debug encode-prompt  SanaVideoPipeline.encode_prompt: DIR is a pipeline folder (tokenizer/,
                         text_encoder/). OUT receives prompt_embeds [1,300,hidden] (f32),
                         prompt_attention_mask (int64) and their negative_* counterparts.
                         --prompt TEXT  --negative-prompt TEXT (default: the official negative
                         prompt; --no-negative for none)  --motion-score N (appends
                         `motion score: N.`)  --instruction video|image|none (the complex
                         human instruction: diffusers' video wording by default, the official
                         configs' image wording, or none)  --no-lowercase (strip only, as the
                         official script; diffusers lower-cases).
    debug vae-decode     vae.decode: DIR is a vae/ folder (AutoencoderKLWan or
                         AutoencoderKLLTX2Video, from its config). IN holds `latents`
                         [B,C,T,h,w] as vae.decode takes them (de-normalised). OUT receives
                         `sample` (f32): Wan [B,3,1+4(T-1),8h,8w] clamped to [-1,1]; LTX-2
                         [B,3,1+8(T-1),32h,32w] with the released config.
    debug vae-encode     vae.encode(x).latent_dist.mean: IN holds `sample` [B,3,F,H,W] in
                         [-1,1] (Wan: F = 1+4k, H, W multiples of 8; LTX-2: 1+8k, 32).
                         OUT receives `latent_mean` (f32).
                         --vae-tiling [--vae-tile-size PX] [--vae-tile-overlap PX]: decode
                         in overlapping spatial tiles (default 256 / 64 px), blended.

OPTIONS:
    --backend B          cpu (burn-flex), wgpu (any Vulkan/Metal/DX12 GPU; Mesa lavapipe without
                         one), vulkan (wgpu with SPIR-V kernels and cooperative-matrix GEMMs on a
                         Vulkan GPU; builds with --features vulkan, where wgpu compiles SPIR-V
                         too and both refuse software adapters) or cuda (builds with
                         --features cuda). Default: the best that opens.
    --dtype D            compute dtype: f32 (default), f16 or bf16.
    --reference-kernels  use the plain tensor-op references instead of the CubeCL kernels.
    -h, --help           this text.

ENVIRONMENT (CUDA builds):
    SANA_CUBLAS=all|f32|off        which GEMMs go through cuBLASLt (default all)
    SANA_FP8_ACTIVATIONS=auto|on|off  W8A8 for FP8 weights: FP8 tensor cores where the GPU has
                                   them, emulated elsewhere with on (auto: where it has them)
    SANA_FP8_FAST_ACCUM=0          FP8 tensor-core GEMMs in cuBLASLt's precise accumulation
                                   (default: fast, about 8% faster at the same output error)
    SANA_FP8_CONV_TEMP=0           dequantise an FP8 file's temporal conv at load (default: it
                                   stays FP8 and runs W8A8 like the other layers)
    SANA_BIAS_EPILOGUE=0           add linear biases after the GEMM instead of in cuBLASLt's
                                   epilogue (default: epilogue, one rounding)
    SANA_NVFP4_ACTIVATIONS=auto|on|off  W4A4 for NVFP4 weights: FP4 tensor cores (sm_100,
                                   sm_120), emulated elsewhere with on (auto: where it has them)
    SANA_CUDNN=off                 VAE convs without cuDNN (in-place tap GEMMs); cuDNN is
                                   used where libcudnn.so is on the library path
    SANA_CUDNN_API=legacy          cuDNN's legacy conv API instead of its graph API
    SANA_VAE_TF32=0                exact f32 VAE convs (default: TF32, as PyTorch's convs)
    SANA_PROFILE_STEP=N            print step N's per-stage profile (SANA_PROFILE_MODE=timeline;
                                   SANA_PROFILE_MEMORY=1 adds the pool's peak at the marks)
    SANA_MEMORY_TRACE=1            print the pool's and the driver's device memory per stage
    SANA_POOL_PRESIZE=auto|on|off  generate: size the pool's pages for the DiT's largest tensor before
                                   the first step: less device memory, ~5% slower denoise
                                   (auto: on where free memory is under 1.7x the plan)
    SANA_KERNEL_CACHE=0            do not keep compiled kernels on disk (default: kept in
                                   ~/.cache/cubecl, or target/environment inside a Cargo
                                   project, so later runs skip compiling them)

ENVIRONMENT (our kernels on every GPU backend: cuda, vulkan, wgpu):
    SANA_GLU=units,strip,vector,silu,regs  launch settings of the fused GLU conv (default
                                   128,8,4,0,1; regs 0: taps and window in the model dtype,
                                   1: in f32, 2: taps read from L1 at each use)
    SANA_LA_APPLY=fused|gemm       linear attention's apply side: one fused kernel (default,
                                   head dims that are multiples of 4) or four passes
    SANA_LA_APPLY_TILE=t,groups    the fused apply's tile: t tokens a unit (4, 8, 12, 16),
                                   groups a cube (default 8,4 on CUDA, 4,4 elsewhere)
    SANA_LA_KV=fused|gemm          linear attention's KV sum: one kernel writes its GEMM's
                                   operands (default, head dims up to 408) or the older path
    SANA_CMMA_MULTIROW_MIN=N       vulkan: GEMMs with k·n >= N use the multi-row
                                   cooperative-matrix routine (default 4000000)
";

const RUNNERS: &str = "transformer, text-encoder, encode-prompt, vae-decode, vae-encode";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return if argv.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS };
    }
    // Every command that loads quantised weights honours SANA_FP8_ACTIVATIONS and
    // SANA_NVFP4_ACTIVATIONS (a bad value is refused before anything runs).
    if let Err(e) = sana_video_core::nn::configure_fp8_activations() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match argv[0].as_str() {
        "generate" => generate::run(&argv[1..]),
        "evaluate" => evaluate::run(&argv[1..]),
        "inspect" => debug::inspect(&argv[1..]),
        "quantize" => quantize::run(&argv[1..]),
        "debug" => match argv.get(1).map(String::as_str) {
            Some("transformer") => debug::transformer(&argv[2..]),
            Some("text-encoder") => debug::text_encoder(&argv[2..]),
            Some("encode-prompt") => debug::encode_prompt(&argv[2..]),
            Some("vae-decode") => debug::vae_decode(&argv[2..]),
            Some("vae-encode") => debug::vae_encode(&argv[2..]),
            Some(other) => Err(format!("unknown debug runner `{other}` (available: {RUNNERS})")),
            None => Err(format!("`debug` needs a runner name (available: {RUNNERS})")),
        },
        other => Err(format!("unknown command `{other}`; see `sana-video --help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
