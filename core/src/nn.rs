//! Small building blocks shared by the models: linear layers with pre-transposed weights,
//! activations. (The DiT's norms are fused kernels: `kernels::norm`.)

use burn::tensor::{activation, DType, Device, FloatDType, Int, Tensor, TensorData};

use crate::io::safetensors::Weights;
use crate::Result;

/// `y = x·Wᵀ + b`, the weight stored transposed (`[in, out]`) once at load.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: LinearWeight,
    pub bias: Option<Tensor<1>>,
}

#[derive(Clone, Debug)]
enum LinearWeight {
    /// `[in, out]` in the compute dtype.
    Dense(Tensor<2>),
    /// An FP8 (e4m3) weight kept as its codes on the device, one byte a weight: four codes
    /// per i32 along `out` (`[in, out/4]`, code `o` in bits `8·(o mod 4)`), f32 scales
    /// `[1, out]` (per output channel, or one repeated). Dequantised just before each
    /// product (W8A16), so the resident weights take a quarter of f32's memory and half of
    /// bf16's, and the values multiplied are exactly those a dequantise-at-load gives.
    Fp8 { packed: Tensor<2, Int>, scale: Tensor<2>, lut: Tensor<1>, dtype: DType },
    /// An FP8 weight for W8A8 products ([`set_fp8_activations`]): the `[out, in]` codes
    /// row-major, four per i32 along `in` (`[out, in/4]`, code `i` in bits `8·(i mod 4)`, so
    /// the buffer is the byte matrix FP8 tensor cores read), f32 scales `[out]`.
    Fp8Rows { codes: Tensor<2, Int>, scale: Tensor<1>, lut: Tensor<1>, dtype: DType },
    /// An NVFP4 weight kept as its codes, half a byte a weight: eight e2m1 codes per i32
    /// along `out` (`[in, out/8]`, code `o` in bits `4·(o mod 8)`), the e4m3 code of each
    /// 16-value block along `in` four per i32 (`[in/16, out/4]`), the global scale `[1]`, and
    /// the two decode tables. Dequantised just before each product (W4A16) to exactly the
    /// values a dequantise-at-load gives.
    /// `w4a4`: the activations are NVFP4-quantised before the product (emulated W4A4 on
    /// devices without FP4 tensor cores: the activation values of [`LinearWeight::Nvfp4Rows`]
    /// times this W4A16 weight, whose global scale is folded in before its rounding to the
    /// compute dtype, where FP4 tensor cores apply it to the f32 sums).
    Nvfp4 { codes: Tensor<2, Int>, blocks: Tensor<2, Int>, global: Tensor<1>, e2m1: Tensor<1>, e4m3: Tensor<1>, dtype: DType, w4a4: bool },
    /// An NVFP4 weight for W4A4 products on FP4 tensor cores ([`set_nvfp4_activations`]):
    /// `[out, in]` codes row-major and the block scales in cuBLASLt's layout
    /// (`kernels::nvfp4::Weight`).
    Nvfp4Rows { weight: crate::kernels::nvfp4::Weight, dtype: DType },
}

/// Whether FP8 weights stay FP8 on the device (the default) or are dequantised at load
/// (`SANA_FP8_RESIDENT=0`, for comparisons). Read once.
pub fn fp8_resident() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| env_on("SANA_FP8_RESIDENT"))
}

/// The same for NVFP4 weights (`SANA_NVFP4_RESIDENT=0`).
fn nvfp4_resident() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| env_on("SANA_NVFP4_RESIDENT"))
}

/// W8A8 for FP8-resident weights ([`set_fp8_activations`]): 0 off, 1 on, 2 where the device
/// has FP8 tensor cores (the default).
static FP8_ACTIVATIONS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(2);

/// Whether FP8 weights loaded from now on run W8A8: their products quantise the activations
/// to FP8 too (per token, `kernels::act_quant`) and multiply codes with f32 accumulation
/// (`kernels::fp8_gemm`): on FP8 tensor cores where the device has them (cuBLASLt on Hopper
/// and newer), emulated with the same numerics elsewhere. Layers whose input width is not a
/// multiple of 4 stay W8A16. Process-wide, read at load (the weight layout differs). The
/// default (before any call) is W8A8 exactly where the device has FP8 tensor cores, W8A16
/// elsewhere: the emulation is slower than W8A16 and no more accurate.
pub fn set_fp8_activations(on: bool) {
    FP8_ACTIVATIONS.store(on as u8, std::sync::atomic::Ordering::SeqCst);
}

/// Whether FP8 weights loaded now on `device` run W8A8 (see [`set_fp8_activations`]). Under
/// the default this probes the device's FP8 tensor cores once (CUDA only).
pub fn fp8_activations(device: &Device) -> bool {
    match FP8_ACTIVATIONS.load(std::sync::atomic::Ordering::SeqCst) {
        0 => false,
        1 => true,
        _ => fp8_tensor_cores(device),
    }
}

/// Sets [`set_fp8_activations`] from `SANA_FP8_ACTIVATIONS`: `on` (or `1`, `emulate`)
/// everywhere (FP8 tensor cores where the device has them, the emulation elsewhere), `off`
/// (or `0`) nowhere, `auto` (and unset) where the device has FP8 tensor cores, decided when
/// FP8 weights are loaded (so runs without them never probe). An unknown value is an error
/// naming the variable.
pub fn configure_fp8_activations() -> Result<()> {
    let mode = match std::env::var("SANA_FP8_ACTIVATIONS").as_deref() {
        Err(_) | Ok("") | Ok("auto") => 2,
        Ok("on") | Ok("1") | Ok("emulate") => 1,
        Ok("off") | Ok("0") => 0,
        Ok(other) => return Err(crate::Error::Input(format!("SANA_FP8_ACTIVATIONS={other}: expected auto, on or off"))),
    };
    FP8_ACTIVATIONS.store(mode, std::sync::atomic::Ordering::SeqCst);
    // The same for NVFP4 weights (W4A4), from `SANA_NVFP4_ACTIVATIONS`.
    let mode = match std::env::var("SANA_NVFP4_ACTIVATIONS").as_deref() {
        Err(_) | Ok("") | Ok("auto") => 2,
        Ok("on") | Ok("1") | Ok("emulate") => 1,
        Ok("off") | Ok("0") => 0,
        Ok(other) => return Err(crate::Error::Input(format!("SANA_NVFP4_ACTIVATIONS={other}: expected auto, on or off"))),
    };
    NVFP4_ACTIVATIONS.store(mode, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// W4A4 for NVFP4-resident weights ([`set_nvfp4_activations`]): 0 off, 1 on, 2 where the
/// device has FP4 tensor cores (the default).
static NVFP4_ACTIVATIONS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(2);

/// Whether NVFP4 weights loaded from now on run W4A4: their products quantise the
/// activations to NVFP4 too (`kernels::nvfp4`), on FP4 tensor cores where the device has
/// them (cuBLASLt on sm_100 / sm_120), emulated with the same activation values elsewhere.
/// Layers whose input width is not a multiple of 64 stay W4A16. Read at load. The default is
/// W4A4 exactly where the device has FP4 tensor cores.
pub fn set_nvfp4_activations(on: bool) {
    NVFP4_ACTIVATIONS.store(on as u8, std::sync::atomic::Ordering::SeqCst);
}

/// Whether NVFP4 weights loaded now on `device` run W4A4 (see [`set_nvfp4_activations`]).
pub fn nvfp4_activations(device: &Device) -> bool {
    match NVFP4_ACTIVATIONS.load(std::sync::atomic::Ordering::SeqCst) {
        0 => false,
        1 => true,
        _ => crate::kernels::nvfp4::tensor_cores(device),
    }
}

/// Linear layers loaded so far in this process with quantised weights kept on the device:
/// FP8 for W8A8, FP8 for W8A16, NVFP4 W4A16, NVFP4 W4A4 on FP4 tensor cores, NVFP4 W4A4
/// emulated.
static QUANTISED_LOADED: [std::sync::atomic::AtomicUsize; 5] = [const { std::sync::atomic::AtomicUsize::new(0) }; 5];

/// How the quantised layers loaded so far run, for a run's summary: `None` when there were
/// none, else e.g. "200 FP8 layers W8A8, 182 FP8 layers W8A16".
pub fn quantised_layers_summary() -> Option<String> {
    let names = ["FP8 W8A8", "FP8 W8A16", "NVFP4 W4A16", "NVFP4 W4A4 (FP4 tensor cores)", "NVFP4 W4A4 (emulated)"];
    let parts: Vec<String> = QUANTISED_LOADED
        .iter()
        .zip(names)
        .map(|(n, name)| (n.load(std::sync::atomic::Ordering::Relaxed), name))
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Whether `device` runs W8A8 products on FP8 tensor cores (see [`set_fp8_activations`]).
pub fn fp8_tensor_cores(device: &Device) -> bool {
    crate::kernels::fp8_gemm::tensor_cores(device)
}

fn env_on(var: &str) -> bool {
    !matches!(std::env::var(var).as_deref(), Ok("0") | Ok("off") | Ok("false"))
}

impl Linear {
    /// Loads `{prefix}.weight` (`[out, in]`, or a 1x1 conv `[out, in, 1, 1]`) and, if asked, `{prefix}.bias`.
    /// An FP8 weight whose `out` is a multiple of 4, or an NVFP4 one whose `out` is a multiple
    /// of 8, stays quantised on the device; other quantised weights are dequantised here.
    /// FP8 weights are stored for W8A8 where [`fp8_activations`] says so.
    pub fn load(w: &Weights, prefix: &str, bias: bool, device: &Device, dtype: DType) -> Result<Linear> {
        Self::load_with(w, prefix, bias, device, dtype, true)
    }

    /// [`Linear::load`] for layers whose FP8 weights always run W8A16, whatever
    /// [`set_fp8_activations`] says (the text encoder: it runs once per prompt, so W8A8 would
    /// save nothing, and per-token FP8 activations would meet Gemma-2's outlier channels).
    pub fn load_w8a16(w: &Weights, prefix: &str, bias: bool, device: &Device, dtype: DType) -> Result<Linear> {
        Self::load_with(w, prefix, bias, device, dtype, false)
    }

    fn load_with(w: &Weights, prefix: &str, bias: bool, device: &Device, dtype: DType, allow_w8a8: bool) -> Result<Linear> {
        use crate::quant::Format;
        let name = format!("{prefix}.weight");
        let resident = match w.quant_info(&name)? {
            Some(q) => {
                let (out, inp) = q.rows_cols();
                let fits = |per: usize| !q.shape.is_empty() && out > 0 && out % per == 0;
                match q.format {
                    Format::Fp8 if fp8_resident() && fits(4) => {
                        let (codes, scales) = w.fp8_codes(&name, &q)?;
                        let w8a8 = allow_w8a8 && inp % 4 == 0 && fp8_activations(device);
                        Some(if w8a8 { fp8_rows_weight(&codes, &scales, out, inp, device, dtype) } else { fp8_weight(&codes, &scales, out, inp, device, dtype) })
                    }
                    Format::Nvfp4 if nvfp4_resident() && fits(8) => {
                        let (codes, blocks, global) = w.nvfp4_codes(&name, &q)?;
                        let w4a4 = allow_w8a8 && inp % crate::kernels::nvfp4::GROUP == 0 && nvfp4_activations(device);
                        if w4a4 && out % 32 == 0 && crate::kernels::nvfp4::tensor_cores(device) {
                            let weight = crate::kernels::nvfp4::Weight::new(&codes, &blocks, global, out, inp, device);
                            Some(LinearWeight::Nvfp4Rows { weight, dtype })
                        } else {
                            Some(nvfp4_weight(&codes, &blocks, global, out, inp, device, dtype, w4a4))
                        }
                    }
                    _ => None,
                }
            }
            None => None,
        };
        let weight = match resident {
            Some(quantised) => quantised,
            // Quantised files the device does not hold as codes are dequantised on the host.
            None if w.quant_info(&name)?.is_some() => {
                let (values, shape) = w.read_f32(&name)?;
                let (out, inp) = (shape[0], shape[1..].iter().product::<usize>());
                LinearWeight::Dense(crate::io::safetensors::tensor_from_f32(transpose_host(&values, out, inp), vec![inp, out], device, dtype))
            }
            None => LinearWeight::Dense(w.load_transposed(&name, device, dtype)?),
        };
        let bias = if bias { Some(w.load::<1>(&format!("{prefix}.bias"), device, dtype)?) } else { None };
        Ok(Linear::counted(weight, bias))
    }

    /// A conv `[out, in, kt, 1]` over `kt` neighbouring frames (the DiT's temporal conv) as one
    /// linear layer of `kt·out` outputs, no bias: output `k·out + o` is tap `k` of channel `o`,
    /// so one GEMM computes every tap's product. An FP8 weight (`quantize --format fp8`) stays
    /// FP8 on the device and runs W8A8 or W8A16 as [`Linear::load`]'s do (its per-channel scale
    /// shared by the channel's taps), unless `SANA_FP8_CONV_TEMP=0` (dequantised here, for
    /// comparisons); anything else is read as values.
    pub fn load_taps(w: &Weights, name: &str, device: &Device, dtype: DType) -> Result<Linear> {
        use crate::quant::Format;
        let keep_fp8 = env_on("SANA_FP8_CONV_TEMP");
        if let Some(q) = w.quant_info(name)?.filter(|q| q.format == Format::Fp8 && fp8_resident() && keep_fp8) {
            if let [co, ci, kt, 1] = q.shape[..] {
                let out = kt * co;
                if out % 4 == 0 {
                    let (codes, scales) = w.fp8_codes(name, &q)?;
                    // [out, in, kt] -> [kt·out, in]: row k·out + o is tap k of channel o.
                    let mut rows = vec![0u8; out * ci];
                    for_taps(co, ci, kt, |from, o, i, k| rows[(k * co + o) * ci + i] = codes[from]);
                    let scales: Vec<f32> = (0..out).map(|n| if scales.len() == 1 { scales[0] } else { scales[n % co] }).collect();
                    let weight = if ci % 4 == 0 && fp8_activations(device) {
                        fp8_rows_weight(&rows, &scales, out, ci, device, dtype)
                    } else {
                        fp8_weight(&rows, &scales, out, ci, device, dtype)
                    };
                    return Ok(Linear::counted(weight, None));
                }
            }
        }
        let (values, shape) = w.read_f32(name)?;
        let [co, ci, kt, 1] = shape[..] else {
            return Err(crate::Error::tensor(w.location(), name, format!("has shape {shape:?}; expected [out, in, taps, 1]")));
        };
        // [out, in, kt, 1] -> [in, kt·out]: row i holds tap 0's, 1's, ... outputs in turn.
        let mut taps = vec![0f32; ci * kt * co];
        for_taps(co, ci, kt, |from, o, i, k| taps[i * kt * co + k * co + o] = values[from]);
        let dense = crate::io::safetensors::tensor_from_f32::<2>(taps, vec![ci, kt * co], device, dtype);
        Ok(Linear { weight: LinearWeight::Dense(dense), bias: None })
    }

    /// A loaded layer, counted for [`quantised_layers_summary`].
    fn counted(weight: LinearWeight, bias: Option<Tensor<1>>) -> Linear {
        let kind = match &weight {
            LinearWeight::Fp8Rows { .. } => Some(0),
            LinearWeight::Fp8 { .. } => Some(1),
            LinearWeight::Nvfp4 { w4a4: false, .. } => Some(2),
            LinearWeight::Nvfp4Rows { .. } => Some(3),
            LinearWeight::Nvfp4 { w4a4: true, .. } => Some(4),
            LinearWeight::Dense(_) => None,
        };
        if let Some(k) = kind {
            QUANTISED_LOADED[k].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Linear { weight, bias }
    }

    /// Bytes the weight occupies on the device (codes and scales for FP8).
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(t) => t.shape().num_elements() * t.dtype().size(),
            LinearWeight::Fp8 { packed, scale, .. } => (packed.shape().num_elements() + scale.shape().num_elements()) * 4,
            LinearWeight::Fp8Rows { codes, scale, .. } => (codes.shape().num_elements() + scale.shape().num_elements()) * 4,
            LinearWeight::Nvfp4 { codes, blocks, .. } => (codes.shape().num_elements() + blocks.shape().num_elements() + 1) * 4,
            LinearWeight::Nvfp4Rows { weight, .. } => weight.bytes(),
        }
    }

    /// Whether the weight is held as FP8 codes.
    pub fn is_fp8_resident(&self) -> bool {
        matches!(self.weight, LinearWeight::Fp8 { .. } | LinearWeight::Fp8Rows { .. })
    }

    /// Whether the weight is held as NVFP4 codes.
    pub fn is_nvfp4_resident(&self) -> bool {
        matches!(self.weight, LinearWeight::Nvfp4 { .. } | LinearWeight::Nvfp4Rows { .. })
    }

    /// The `[in, out]` weight in the compute dtype (dequantised now if held as FP8 or NVFP4:
    /// by one kernel on GPUs; on the CPU by a host loop over the codes read back, which made
    /// a full-size forward 2.3x faster there than the kernel's tensor-op reference, same bits).
    pub fn weight_t(&self) -> Tensor<2> {
        if let Some(w) = self.host_dequantised() {
            return w;
        }
        match &self.weight {
            LinearWeight::Dense(t) => t.clone(),
            // One fused kernel on CubeCL devices, tensor ops elsewhere (kernels::dequant).
            LinearWeight::Fp8 { packed, scale, lut, dtype } => {
                crate::kernels::dequant::dequant_fp8(packed.clone(), scale.clone(), lut.clone(), *dtype, crate::kernels::Impl::Auto)
            }
            // Only for callers outside `forward` (which multiplies these W8A8): the codes'
            // values scaled per row, transposed.
            LinearWeight::Fp8Rows { codes, scale, lut, dtype } => {
                let [out, groups] = codes.dims();
                let ones = Tensor::<2>::ones([1, 4 * groups], (&codes.device(), DType::F32));
                let w = crate::kernels::dequant::dequant_fp8(codes.clone(), ones, lut.clone(), DType::F32, crate::kernels::Impl::Auto);
                to_dtype((w * scale.clone().reshape([out, 1])).transpose(), *dtype)
            }
            LinearWeight::Nvfp4Rows { weight, dtype } => to_dtype(crate::kernels::nvfp4::reference::dequant_weight(weight).transpose(), *dtype),
            LinearWeight::Nvfp4 { codes, blocks, global, e2m1, e4m3, dtype, .. } => crate::kernels::dequant::dequant_nvfp4(
                codes.clone(),
                blocks.clone(),
                global.clone(),
                e2m1.clone(),
                e4m3.clone(),
                *dtype,
                crate::kernels::Impl::Auto,
            ),
        }
    }

    /// On devices without our kernels (the CPU backend), a resident weight dequantised on the
    /// host with the host codecs' arithmetic (`quant::dequantize_*`, so the values a
    /// dequantise-at-load gives), read from the packed device layout; `None` for dense
    /// weights and on GPUs. The codes are copied back from the CPU backend at each call (one
    /// byte a weight for FP8; keeping host-side codes on that backend would save the copy).
    fn host_dequantised(&self) -> Option<Tensor<2>> {
        let (device, dtype) = match &self.weight {
            LinearWeight::Dense(_) | LinearWeight::Fp8Rows { .. } | LinearWeight::Nvfp4Rows { .. } => return None,
            LinearWeight::Fp8 { packed, dtype, .. } => (packed.device(), *dtype),
            LinearWeight::Nvfp4 { codes, dtype, .. } => (codes.device(), *dtype),
        };
        if crate::kernels::is_cube_device(&device) {
            return None;
        }
        let ints = |t: &Tensor<2, Int>| -> Option<Vec<i32>> { t.clone().into_data().try_to_vec::<i32>().ok() };
        let floats = |t: Tensor<1>| -> Option<Vec<f32>> { t.into_data().try_to_vec::<f32>().ok() };
        let (values, inp, out) = match &self.weight {
            LinearWeight::Dense(_) | LinearWeight::Fp8Rows { .. } | LinearWeight::Nvfp4Rows { .. } => return None,
            LinearWeight::Fp8 { packed, scale, .. } => {
                let [inp, groups] = packed.dims();
                let out = 4 * groups;
                let words = ints(packed)?;
                let scale = floats(scale.clone().reshape([out]))?;
                let lut: Vec<f32> = (0..=255u8).map(crate::quant::e4m3_to_f32).collect();
                let v = par_rows(inp, out, |i, row| {
                    for (o, y) in row.iter_mut().enumerate() {
                        let code = (words[i * groups + o / 4] as u32 >> (8 * (o % 4))) & 0xFF;
                        *y = lut[code as usize] * scale[o];
                    }
                });
                (v, inp, out)
            }
            LinearWeight::Nvfp4 { codes, blocks, global, .. } => {
                let [inp, groups] = codes.dims();
                let out = 8 * groups;
                let bgroups = blocks.dims()[1];
                let (words, bwords) = (ints(codes)?, ints(blocks)?);
                let g = floats(global.clone())?.first().copied()?;
                let e2m1: Vec<f32> = (0..16u8).map(crate::quant::e2m1_to_f32).collect();
                let e4m3: Vec<f32> = (0..=255u8).map(crate::quant::e4m3_to_f32).collect();
                let block = crate::quant::NVFP4_BLOCK;
                let v = par_rows(inp, out, |i, row| {
                    for (o, y) in row.iter_mut().enumerate() {
                        let code = (words[i * groups + o / 8] as u32 >> (4 * (o % 8))) & 0xF;
                        let bcode = (bwords[(i / block) * bgroups + o / 4] as u32 >> (8 * (o % 4))) & 0xFF;
                        // The host codec's order: value · block scale, then · global.
                        *y = e2m1[code as usize] * e4m3[bcode as usize] * g;
                    }
                });
                (v, inp, out)
            }
        };
        Some(crate::io::safetensors::tensor_from_f32(values, vec![inp, out], &device, dtype))
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let [y] = Self::forward_shared([self], x);
        y
    }

    /// The products of several layers with one input (`to_q`, `to_k`, `to_v`): as
    /// [`Linear::forward`] each, except that the W8A8 layers among them quantise the shared
    /// input once.
    pub fn forward_shared<const D: usize, const N: usize>(layers: [&Linear; N], x: Tensor<D>) -> [Tensor<D>; N] {
        use crate::kernels::{act_quant, fp8_gemm, nvfp4, Impl};
        let dims = x.dims();
        let inp = dims[D - 1];
        let rows = x.shape().num_elements() / inp.max(1);
        let mut quantised = None;
        let mut fake_nvfp4 = None;
        layers.map(|l| {
            let y = match &l.weight {
                LinearWeight::Fp8Rows { codes: w, scale: ws, lut, dtype } => {
                    let (codes, scale) = quantised.get_or_insert_with(|| act_quant::quantize_fp8_rows(x.clone().reshape([rows, inp]), Impl::Auto)).clone();
                    fp8_gemm::product(codes, scale, w.clone(), ws.clone(), l.bias.clone(), lut.clone(), *dtype, Impl::Auto)
                }
                LinearWeight::Nvfp4Rows { weight, dtype } => nvfp4::linear(x.clone().reshape([rows, inp]), weight, l.bias.as_ref(), *dtype, Impl::Auto),
                LinearWeight::Nvfp4 { w4a4: true, .. } => {
                    let xq = fake_nvfp4.get_or_insert_with(|| nvfp4::fake_quantize_rows(x.clone().reshape([rows, inp]), Impl::Auto)).clone();
                    crate::kernels::matmul::linear(xq, l.weight_t(), l.bias.clone(), Impl::Auto)
                }
                _ => crate::kernels::matmul::linear(x.clone().reshape([rows, inp]), l.weight_t(), l.bias.clone(), Impl::Auto),
            };
            let mut out_dims = dims;
            out_dims[D - 1] = y.dims()[1];
            y.reshape(out_dims)
        })
    }
}

/// Visits a conv weight `[out, in, kt]` (row-major) as `(flat index, o, i, k)`.
fn for_taps(out: usize, inp: usize, kt: usize, mut visit: impl FnMut(usize, usize, usize, usize)) {
    for o in 0..out {
        for i in 0..inp {
            for k in 0..kt {
                visit((o * inp + i) * kt + k, o, i, k);
            }
        }
    }
}

/// A `[rows, cols]` f32 matrix filled row by row by `fill(row index, row)`, the rows split
/// over the host's cores.
fn par_rows(rows: usize, cols: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut v = vec![0f32; rows * cols];
    if cols > 0 {
        crate::par::par_fill(&mut v, cols, cols, |start, part| {
            for (r, row) in part.chunks_mut(cols).enumerate() {
                fill(start / cols + r, row);
            }
        });
    }
    v
}

/// Packs the `bits`-wide codes `code(o, i)` of an `[out, inp]` matrix, transposed, into
/// i32s along `out`: `[inp, out·bits/32]`, code `o` in bits `bits·(o mod 32/bits)` of word
/// `(i, o / (32/bits))` (the device layout of [`LinearWeight::Fp8`] and `::Nvfp4`).
pub fn pack_transposed(out: usize, inp: usize, bits: usize, code: impl Fn(usize, usize) -> u8) -> Vec<i32> {
    let per = 32 / bits;
    let groups = out / per;
    let mut packed = vec![0u32; inp * groups];
    for o in 0..out {
        let shift = bits * (o % per);
        for i in 0..inp {
            packed[i * groups + o / per] |= (code(o, i) as u32) << shift;
        }
    }
    packed.into_iter().map(|v| v as i32).collect()
}

/// `[out, inp]` row-major e4m3 codes as [`LinearWeight::Fp8`].
fn fp8_weight(codes: &[u8], scales: &[f32], out: usize, inp: usize, device: &Device, dtype: DType) -> LinearWeight {
    let packed = pack_transposed(out, inp, 8, |o, i| codes[o * inp + i]);
    let packed = Tensor::<2, Int>::from_data(TensorData::new(packed, [inp, out / 4]), (device, DType::I32));
    let scale: Vec<f32> = if scales.len() == 1 { vec![scales[0]; out] } else { scales.to_vec() };
    let scale = Tensor::<2>::from_data(TensorData::new(scale, [1, out]), (device, DType::F32));
    LinearWeight::Fp8 { packed, scale, lut: f32_table((0..=255u8).map(crate::quant::e4m3_to_f32).collect(), device), dtype }
}

/// `[out, inp]` row-major e4m3 codes as [`LinearWeight::Fp8Rows`].
fn fp8_rows_weight(codes: &[u8], scales: &[f32], out: usize, inp: usize, device: &Device, dtype: DType) -> LinearWeight {
    let packed = crate::kernels::fp8_gemm::pack_rows(codes, out, inp);
    let codes = Tensor::<2, Int>::from_data(TensorData::new(packed, [out, inp / 4]), (device, DType::I32));
    let scale: Vec<f32> = if scales.len() == 1 { vec![scales[0]; out] } else { scales.to_vec() };
    let scale = Tensor::<1>::from_data(TensorData::new(scale, [out]), (device, DType::F32));
    LinearWeight::Fp8Rows { codes, scale, lut: f32_table((0..=255u8).map(crate::quant::e4m3_to_f32).collect(), device), dtype }
}

/// An `[out, inp]` NVFP4 tensor (codes two per byte, even index low; block codes
/// `[out, inp/16]`) as [`LinearWeight::Nvfp4`].
#[allow(clippy::too_many_arguments)]
fn nvfp4_weight(codes: &[u8], blocks: &[u8], global: f32, out: usize, inp: usize, device: &Device, dtype: DType, w4a4: bool) -> LinearWeight {
    let nb = inp / crate::quant::NVFP4_BLOCK;
    let nibble = |o: usize, i: usize| {
        let idx = o * inp + i;
        if idx % 2 == 0 { codes[idx / 2] & 0x0F } else { codes[idx / 2] >> 4 }
    };
    let int = |v: Vec<i32>, shape: [usize; 2]| Tensor::<2, Int>::from_data(TensorData::new(v, shape), (device, DType::I32));
    LinearWeight::Nvfp4 {
        codes: int(pack_transposed(out, inp, 4, nibble), [inp, out / 8]),
        blocks: int(pack_transposed(out, nb, 8, |o, b| blocks[o * nb + b]), [nb, out / 4]),
        global: f32_table(vec![global], device),
        e2m1: f32_table((0..16u8).map(crate::quant::e2m1_to_f32).collect(), device),
        e4m3: f32_table((0..=255u8).map(crate::quant::e4m3_to_f32).collect(), device),
        dtype,
        w4a4,
    }
}

/// A 1-D f32 tensor (decode tables, the NVFP4 global scale).
fn f32_table(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::<1>::from_data(TensorData::new(v, [n]), (device, DType::F32))
}

/// Matrix product that stays IEEE f32 for f32 operands on every backend (no TF32 on tensor
/// cores; `kernels::matmul`), and uses burn's fastest routine for f16/bf16.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    crate::kernels::matmul::matmul(a, b, crate::kernels::Impl::Auto)
}

/// Transposes a row-major `[rows, cols]` matrix on the host (once, at load), so every
/// backend's matmul sees a contiguous `[in, out]` weight instead of a strided view.
pub fn transpose_host(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// The tensor in f32 (no-op when it already is).
pub fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F32 { x } else { x.cast(FloatDType::F32) }
}

/// The tensor in `dtype` (no-op when it already is).
pub fn to_dtype<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype { x } else { x.cast(FloatDType::from(dtype)) }
}

/// GELU with the tanh approximation (PyTorch `approximate="tanh"`).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let c = (2.0f64 / std::f64::consts::PI).sqrt();
    let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * c;
    x.clone() * (inner.tanh() + 1.0) * 0.5
}

pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::silu(x)
}
