//! Each fused op against its plain tensor-op reference and against a naive host
//! implementation, over random shapes, on every backend compiled.

use burn::tensor::{Tensor, TensorData};
use sana_video_core::device;
use sana_video_core::kernels::{channel_norm, dequant, glu_conv, linear_attention, norm, softmax, temporal, Impl};
use sana_video_core::models::dit::rope;
use sana_video_tests::{backends, random_vec, rel_l2};

/// o_n = Σ_m v_m ⟨R_m φk_m, R_n φq_n⟩ / (Σ_m ⟨φk_m, φq_n⟩ + eps), in f64, O(N²) (MODEL-SPEC §12).
fn naive(q: &[f32], k: &[f32], v: &[f32], cos: &[f32], sin: &[f32], [b, n, h, d]: [usize; 4], eps: f64) -> Vec<f32> {
    let idx = |bb: usize, nn: usize, hh: usize, c: usize| ((bb * n + nn) * h + hh) * d + c;
    let rot = |x: &[f32], bb, nn, hh| -> (Vec<f64>, Vec<f64>) {
        let phi: Vec<f64> = (0..d).map(|c| (x[idx(bb, nn, hh, c)] as f64).max(0.0)).collect();
        let mut r = vec![0.0; d];
        for p in 0..d / 2 {
            let (c0, s0) = (cos[nn * d / 2 + p] as f64, sin[nn * d / 2 + p] as f64);
            r[2 * p] = phi[2 * p] * c0 - phi[2 * p + 1] * s0;
            r[2 * p + 1] = phi[2 * p] * s0 + phi[2 * p + 1] * c0;
        }
        (phi, r)
    };
    let mut out = vec![0f32; b * n * h * d];
    for bb in 0..b {
        for hh in 0..h {
            let ks: Vec<_> = (0..n).map(|m| rot(k, bb, m, hh)).collect();
            for nn in 0..n {
                let (pq, rq) = rot(q, bb, nn, hh);
                let mut num = vec![0f64; d];
                let mut den = 0f64;
                for (m, (pk, rk)) in ks.iter().enumerate() {
                    let w: f64 = rk.iter().zip(&rq).map(|(a, b)| a * b).sum();
                    den += pk.iter().zip(&pq).map(|(a, b)| a * b).sum::<f64>();
                    for a in 0..d {
                        num[a] += v[idx(bb, m, hh, a)] as f64 * w;
                    }
                }
                for a in 0..d {
                    out[idx(bb, nn, hh, a)] = (num[a] / (den + eps)) as f32;
                }
            }
        }
    }
    out
}

fn tensor4(v: &[f32], s: [usize; 4], device: &burn::tensor::Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), s), device)
}

fn rope_for(grid: [usize; 3], d: usize, device: &burn::tensor::Device) -> (Vec<f32>, Vec<f32>, Tensor<2>, Tensor<2>) {
    let (c, s) = rope::tables(d, grid, 3);
    let (ct, st) = rope::table_tensors(d, grid, 3, device);
    (c, s, ct, st)
}

const SHAPES: &[([usize; 3], usize, usize, usize)] = &[
    // (grid F,H,W), batch, heads, head dim
    ([1, 1, 7], 1, 1, 6),
    ([3, 3, 5], 2, 3, 16),
    ([2, 5, 3], 1, 2, 112),
    ([4, 2, 6], 2, 4, 12),
    ([3, 1, 5], 3, 5, 10),
    // More channels than the KV operand kernel's 256 units.
    ([2, 1, 3], 1, 2, 260),
];

#[test]
fn linear_attention_matches_naive_and_reference() {
    for (kind, device) in backends() {
        for (i, &(grid, b, h, d)) in SHAPES.iter().enumerate() {
            let n = grid.iter().product::<usize>();
            let shape = [b, n, h, d];
            let len = b * n * h * d;
            let (q, k, v) = (random_vec(len, 10 + i as u64), random_vec(len, 20 + i as u64), random_vec(len, 30 + i as u64));
            let (c, s, ct, st) = rope_for(grid, d, &device);
            let expected = naive(&q, &k, &v, &c, &s, shape, 1e-15);
            for which in [Impl::Auto, Impl::Reference] {
                let out = linear_attention::attention(
                    tensor4(&q, shape, &device),
                    tensor4(&k, shape, &device),
                    tensor4(&v, shape, &device),
                    ct.clone(),
                    st.clone(),
                    1e-15,
                    burn::tensor::DType::F32,
                    which,
                );
                let got = out.into_data().try_to_vec::<f32>().unwrap();
                let (rel, max_abs) = rel_l2(&got, &expected);
                println!("{} {which:?} shape {shape:?}: rel {rel:.2e} max abs {max_abs:.2e}", device::name(kind));
                assert!(rel < 1e-5, "{} {which:?} shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
            }
            // Both apply paths on CubeCL devices: the fused kernel (the default where the head
            // dim is a multiple of 4) and the four-pass one (`SANA_LA_APPLY=gemm`).
            if sana_video_core::kernels::is_cube_device(&device) {
                use burn::tensor::DType;
                use linear_attention::cube::{apply_with, fused_apply_supported};
                // The test must know which path runs: the fused one exactly where d % 4 == 0.
                assert_eq!(fused_apply_supported(d, DType::F32, DType::F32), d % 4 == 0, "head dim {d}");
                // Both sum paths: the fused operand kernel (every head dim here fits its tiles)
                // and the older one (`SANA_LA_KV=gemm`).
                assert!(linear_attention::cube::kv_tile_tokens(d).is_some(), "head dim {d}");
                let sums_by = |fused: bool| {
                    linear_attention::cube::kv_sums_with(tensor4(&k, shape, &device), tensor4(&v, shape, &device), ct.clone(), st.clone(), fused)
                };
                let sums = sums_by(true);
                // q as a strided view: each head's d values inside a row of d + 6.
                let wide: Vec<f32> = (0..len / d).flat_map(|r| q[r * d..(r + 1) * d].iter().copied().chain([1.0e3; 6])).collect();
                let q_view = Tensor::<4>::from_data(TensorData::new(wide, [b, n, h, d + 6]), &device).narrow(3, 0, d);
                for (fused, strided) in [(true, false), (false, false), (true, true)] {
                    let qt = if strided { q_view.clone() } else { tensor4(&q, shape, &device) };
                    let out = apply_with(qt, &sums, ct.clone(), st.clone(), 1e-15, DType::F32, fused);
                    let (rel, max_abs) = rel_l2(&out.into_data().try_to_vec::<f32>().unwrap(), &expected);
                    println!("{} apply fused={fused} strided q={strided} shape {shape:?}: rel {rel:.3e} max abs {max_abs:.3e}", device::name(kind));
                    assert!(rel < 1e-5, "{} apply fused={fused} strided q={strided} shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
                }
                // Every tile of the fused apply that fits this device (the defaults: [8, 4] on
                // CUDA, [4, 4] within WebGPU's limits), partial token tiles included.
                let limits = linear_attention::cube::apply_limits_on(&device).expect("a CubeCL device");
                for tile in [[4, 1], [4, 4], [8, 1], [8, 4], [16, 2], [12, 3]] {
                    if !linear_attention::cube::apply_tile_fits(d, tile, limits.0, limits.1) {
                        continue;
                    }
                    let out = linear_attention::cube::apply_tiled(tensor4(&q, shape, &device), &sums, ct.clone(), st.clone(), 1e-15, DType::F32, Some(tile));
                    let (rel, _) = rel_l2(&out.into_data().try_to_vec::<f32>().unwrap(), &expected);
                    println!("{} apply tile {tile:?} shape {shape:?}: rel {rel:.3e}", device::name(kind));
                    assert!(rel < 1e-5, "{} apply tile {tile:?} shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
                }
                let older = sums_by(false);
                let out = apply_with(tensor4(&q, shape, &device), &older, ct.clone(), st.clone(), 1e-15, DType::F32, true);
                let (rel, _) = rel_l2(&out.into_data().try_to_vec::<f32>().unwrap(), &expected);
                assert!(rel < 1e-5, "{} older kv path shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
                // The two paths' sums agree to f32 rounding (only the order of additions differs).
                let host = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&host(sums.kv.clone()), &host(older.kv.clone()));
                assert!(rel < 1e-6, "{} kv paths differ, shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
            }
            // Half-precision q, k, v read as they are, f32 inside, the output rounded once to
            // f16: against the f64 host version of the same rounded inputs.
            if sana_video_core::kernels::is_cube_device(&device) {
                use burn::tensor::FloatDType;
                let half = |x: &[f32]| tensor4(x, shape, &device).cast(FloatDType::F16);
                let back = |t: Tensor<4>| t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let (qh, kh, vh) = (half(&q), half(&k), half(&v));
                let expected = naive(&back(qh.clone()), &back(kh.clone()), &back(vh.clone()), &c, &s, shape, 1e-15);
                for which in [Impl::Auto, Impl::Reference] {
                    let out = linear_attention::attention(qh.clone(), kh.clone(), vh.clone(), ct.clone(), st.clone(), 1e-15, burn::tensor::DType::F16, which);
                    assert_eq!(out.dtype(), burn::tensor::DType::F16);
                    let (rel, _) = rel_l2(&back(out), &expected);
                    println!("{} {which:?} f16 shape {shape:?}: rel {rel:.2e}", device::name(kind));
                    // One f16 rounding of the output: ~3e-4 relative; on CUDA the sums' GEMMs
                    // also round their rotated operands to TF32 (2^-11; measured 2.1e-4 to
                    // 3.5e-4 in all on an H200, against 2.0e-4 to 2.4e-4 exact), on wgpu the
                    // `KV` sum rounds them to f16 (the same 2^-11; 2.1e-4 to 2.7e-4 on
                    // lavapipe and on an H200's Vulkan driver).
                    assert!(rel < 1e-3, "{} {which:?} f16 shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
                }
            }
        }
    }
}

/// Enough tokens for the `KV` sum to split over them (3 partial sums, 2 padding tokens:
/// `token_splits`), with f16 inputs, whose `KV` GEMM on wgpu devices takes f16 operands and
/// the padding's zeros in the operands' dtype: within the f16 bound of the test above.
#[test]
fn linear_attention_split_sums_with_padding() {
    use burn::tensor::FloatDType;
    let (grid, b, h, d) = ([5, 1, 617], 1, 2, 16);
    let n = grid.iter().product::<usize>();
    let shape = [b, n, h, d];
    let len = b * n * h * d;
    for (kind, device) in backends() {
        let (q, k, v) = (random_vec(len, 71), random_vec(len, 72), random_vec(len, 73));
        let (c, s, ct, st) = rope_for(grid, d, &device);
        let half = |x: &[f32]| tensor4(x, shape, &device).cast(FloatDType::F16);
        let back = |t: Tensor<4>| t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
        let (qh, kh, vh) = (half(&q), half(&k), half(&v));
        let expected = naive(&back(qh.clone()), &back(kh.clone()), &back(vh.clone()), &c, &s, shape, 1e-15);
        let out = linear_attention::attention(qh.clone(), kh.clone(), vh.clone(), ct.clone(), st.clone(), 1e-15, burn::tensor::DType::F16, Impl::Auto);
        let (rel, _) = rel_l2(&back(out), &expected);
        println!("{} f16 {n} tokens: rel {rel:.2e}", device::name(kind));
        assert!(rel < 1e-3, "{} f16 {n} tokens: rel L2 {rel:.3e}", device::name(kind));
        // Both `KV` sum paths on CubeCL devices (the fused operand kernel writes the padding's
        // zeros itself).
        if sana_video_core::kernels::is_cube_device(&device) {
            for fused in [true, false] {
                let sums = linear_attention::cube::kv_sums_with(kh.clone(), vh.clone(), ct.clone(), st.clone(), fused);
                let out = linear_attention::cube::apply(qh.clone(), &sums, ct.clone(), st.clone(), 1e-15, burn::tensor::DType::F16);
                let (rel, _) = rel_l2(&back(out), &expected);
                assert!(rel < 1e-3, "{} f16 {n} tokens, fused kv {fused}: rel L2 {rel:.3e}", device::name(kind));
            }
        }
    }
}

/// Sums over two segments added together equal the sums over the whole sequence: the
/// property the LongSANA state relies on.
#[test]
fn segment_sums_add_up() {
    for (kind, device) in backends() {
        let (grid, b, h, d) = ([4, 3, 4], 2, 2, 16);
        let n = grid.iter().product::<usize>();
        let shape = [b, n, h, d];
        let len = b * n * h * d;
        let (k, v) = (random_vec(len, 41), random_vec(len, 42));
        let (_, _, ct, st) = rope_for(grid, d, &device);
        let (kt, vt) = (tensor4(&k, shape, &device), tensor4(&v, shape, &device));
        let whole = linear_attention::kv_sums(kt.clone(), vt.clone(), ct.clone(), st.clone(), Impl::Auto);
        let cut = 17;
        let first = linear_attention::kv_sums(
            kt.clone().narrow(1, 0, cut),
            vt.clone().narrow(1, 0, cut),
            ct.clone().narrow(0, 0, cut),
            st.clone().narrow(0, 0, cut),
            Impl::Auto,
        );
        let second = linear_attention::kv_sums(
            kt.narrow(1, cut, n - cut),
            vt.narrow(1, cut, n - cut),
            ct.narrow(0, cut, n - cut),
            st.narrow(0, cut, n - cut),
            Impl::Auto,
        );
        let both = first.add(second);
        let (r1, _) = rel_l2(&both.kv.into_data().try_to_vec::<f32>().unwrap(), &whole.kv.into_data().try_to_vec::<f32>().unwrap());
        let (r2, _) = rel_l2(&both.ksum.into_data().try_to_vec::<f32>().unwrap(), &whole.ksum.into_data().try_to_vec::<f32>().unwrap());
        println!("{}: kv rel {r1:.2e}, ksum rel {r2:.2e}", device::name(kind));
        assert!(r1 < 1e-6 && r2 < 1e-6, "{}: segment sums differ ({r1:.2e}, {r2:.2e})", device::name(kind));
    }
}

/// Reductions at realistic sizes (lavapipe's built-in full `sum()` was wrong from ~1M
/// elements with burn 0.22.1, TOOLCHAIN.md §3): norm statistics over 2240 channels on
/// 600 tokens, and the attention sums over 10,000 tokens at head dim 112, both kernel and
/// reference, against host f64.
#[test]
fn reductions_at_realistic_sizes() {
    for (kind, device) in backends() {
        let (rows, cols) = (600, 2240);
        let x = random_vec(rows * cols, 7);
        let t: Tensor<2> = Tensor::from_data(TensorData::new(x.clone(), [rows, cols]), &device);
        let got = t.clone().square().mean_dim(1).into_data().try_to_vec::<f32>().unwrap();
        let expected: Vec<f32> =
            (0..rows).map(|r| (x[r * cols..(r + 1) * cols].iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64) as f32).collect();
        let (rel, _) = rel_l2(&got, &expected);
        println!("{}: mean_dim over [600, 2240]: rel {rel:.2e}", device::name(kind));
        assert!(rel < 1e-6, "{}: mean_dim rel {rel:.3e}", device::name(kind));

        // 10,000 tokens run as 8 token splits on CubeCL devices (cube.rs, token_splits), 9,797
        // (97 x 101) as 9 padded ones; the plain reference sums them in one product.
        for (n, grid) in [(10_000usize, [100, 10, 10]), (9_797, [97, 101, 1])] {
            let d = 112;
            let k = random_vec(n * d, 8);
            let v = random_vec(n * d, 9);
            let (_, _, ct, st) = rope_for(grid, d, &device);
            let mut ksum = vec![0f64; d];
            for m in 0..n {
                for c in 0..d {
                    ksum[c] += (k[m * d + c] as f64).max(0.0);
                }
            }
            let ksum: Vec<f32> = ksum.into_iter().map(|s| s as f32).collect();
            let mut kvs = Vec::new();
            for which in [Impl::Auto, Impl::Reference] {
                let s = linear_attention::kv_sums(tensor4(&k, [1, n, 1, d], &device), tensor4(&v, [1, n, 1, d], &device), ct.clone(), st.clone(), which);
                let got = s.ksum.into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&got, &ksum);
                println!("{} {which:?}: ksum over {n} tokens: rel {rel:.2e}", device::name(kind));
                assert!(rel < 1e-5, "{} {which:?}: ksum over {n} tokens rel {rel:.3e}", device::name(kind));
                kvs.push(s.kv.into_data().try_to_vec::<f32>().unwrap());
            }
            let (rel, _) = rel_l2(&kvs[0], &kvs[1]);
            println!("{}: kv sums over {n} tokens, kernel path against reference: rel {rel:.2e}", device::name(kind));
            assert!(rel < 1e-5, "{}: kv over {n} tokens rel {rel:.3e}", device::name(kind));
        }
    }
}

/// RoPE tables: position (f, i, j) = (1, 0, 0) rotates only the time pairs, pair 0 by 1 rad.
#[test]
fn rope_table_layout() {
    let d = 112;
    let (c, s) = rope::tables(d, [2, 1, 1], 0);
    let row = &c[d / 2..];
    let srow = &s[d / 2..];
    assert!((row[0] - 1f32.cos()).abs() < 1e-7 && (srow[0] - 1f32.sin()).abs() < 1e-7);
    assert!(row[20..].iter().all(|&v| v == 1.0), "height/width pairs must be unrotated at i = j = 0");
    assert_eq!(rope::axis_dims(112), [40, 36, 36]);
    // The tables are assembled from per-axis rows: bit-identical to evaluating every token's
    // angles directly (MODEL-SPEC §3.3: angle = position x theta^(-2j/dim) in f64, then f32).
    for (d, grid, offset) in [(112, [3, 4, 5], 7), (64, [2, 3, 2], 0), (112, [1, 2, 3], 1000)] {
        let [td, hd, wd] = rope::axis_dims(d);
        let mut want = (Vec::new(), Vec::new());
        for f in 0..grid[0] {
            for i in 0..grid[1] {
                for j in 0..grid[2] {
                    for (pos, dim) in [((f + offset) as f64, td), (i as f64, hd), (j as f64, wd)] {
                        for k in 0..dim / 2 {
                            let a = pos * (1.0 / 10000f64.powf((2 * k) as f64 / dim as f64));
                            want.0.push(a.cos() as f32);
                            want.1.push(a.sin() as f32);
                        }
                    }
                }
            }
        }
        assert_eq!(rope::tables(d, grid, offset), want, "head dim {d}, grid {grid:?}, offset {offset}");
    }
}

/// The f32 matmul (cubek unit routine on CubeCL devices, burn's matmul elsewhere) against
/// burn's plain matmul and host f64, 2-D and batched 4-D.
#[test]
fn matmul_f32_is_exact() {
    use sana_video_core::kernels::matmul::matmul;
    for (kind, device) in backends() {
        for (i, &(batch, m, k, n)) in [(1usize, 7usize, 13usize, 5usize), (6, 33, 40, 17), (1, 130, 96, 64)].iter().enumerate() {
            let a = random_vec(batch * m * k, 60 + i as u64);
            let b = random_vec(batch * k * n, 70 + i as u64);
            let mut expected = vec![0f32; batch * m * n];
            for bb in 0..batch {
                for r in 0..m {
                    for c in 0..n {
                        let s: f64 = (0..k).map(|j| a[(bb * m + r) * k + j] as f64 * b[(bb * k + j) * n + c] as f64).sum();
                        expected[(bb * m + r) * n + c] = s as f32;
                    }
                }
            }
            let ta: Tensor<4> = Tensor::from_data(TensorData::new(a, [batch, 1, m, k]), &device);
            let tb: Tensor<4> = Tensor::from_data(TensorData::new(b, [batch, 1, k, n]), &device);
            for which in [Impl::Auto, Impl::Reference] {
                let got = matmul(ta.clone(), tb.clone(), which).into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&got, &expected);
                println!("{} {which:?} [{batch}, {m}, {k}] x [{k}, {n}]: rel {rel:.2e}", device::name(kind));
                // Impl::Reference is burn's own matmul: TF32 on tensor-core devices, so only
                // the exact path is held to f32 accuracy there.
                let tol = if which == Impl::Auto || kind != device::BackendKind::Cuda { 1e-6 } else { 1e-2 };
                assert!(rel < tol, "{} {which:?}: rel {rel:.3e}", device::name(kind));
            }
        }
    }
}

fn silu64(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// The GLU Mix-FFN's middle, in f64 on the host: SiLU, depth-wise 3x3 with zero padding,
/// then `a · SiLU(g)` of the two channel halves.
fn naive_glu_depthwise(h: &[f32], taps: &[f32], bias: &[f32], [m, hh, ww, c2]: [usize; 4]) -> Vec<f32> {
    let c = c2 / 2;
    let mut out = vec![0f32; m * hh * ww * c];
    for mi in 0..m {
        for y in 0..hh {
            for x in 0..ww {
                let conv = |ch: usize| -> f64 {
                    let mut acc = bias[ch] as f64;
                    for dy in 0..3 {
                        for dx in 0..3 {
                            let (yy, xx) = (y as isize + dy as isize - 1, x as isize + dx as isize - 1);
                            if yy < 0 || xx < 0 || yy >= hh as isize || xx >= ww as isize {
                                continue;
                            }
                            let v = h[((mi * hh + yy as usize) * ww + xx as usize) * c2 + ch] as f64;
                            acc += taps[(dy * 3 + dx) * c2 + ch] as f64 * silu64(v);
                        }
                    }
                    acc
                };
                for ch in 0..c {
                    out[((mi * hh + y) * ww + x) * c + ch] = (conv(ch) * silu64(conv(ch + c))) as f32;
                }
            }
        }
    }
    out
}

/// The fused SiLU + depth-wise 3x3 + GLU gate (`glu_conv`), kernel and reference, against
/// the host version; odd sizes and single-pixel images exercise the padding, odd and even
/// half widths the kernel's vector widths (1, 2, 4 channels), widths that are not a multiple
/// of its 8-position strips, and 600 rows of 883 its 2-D grid (66,600 strips, over 65,535). On CubeCL devices also in f16 (the kernel reads f16 and
/// computes in f32), under several launch settings.
#[test]
fn glu_depthwise_matches_naive_and_reference() {
    for (kind, device) in backends() {
        for (i, &shape) in [[2usize, 5, 7, 6], [1, 1, 1, 4], [3, 4, 1, 10], [2, 9, 13, 64], [2, 3, 5, 48], [1, 600, 883, 2]].iter().enumerate() {
            let [m, hh, ww, c2] = shape;
            let h = random_vec(m * hh * ww * c2, 80 + i as u64).iter().map(|v| 2.0 * v).collect::<Vec<f32>>();
            let taps = random_vec(9 * c2, 90 + i as u64);
            let bias = random_vec(c2, 100 + i as u64);
            let expected = naive_glu_depthwise(&h, &taps, &bias, shape);
            let inputs = || {
                (
                    Tensor::<4>::from_data(TensorData::new(h.clone(), shape), &device),
                    Tensor::<2>::from_data(TensorData::new(taps.clone(), [9, c2]), &device),
                    Tensor::<1>::from_data(TensorData::new(bias.clone(), [c2]), &device),
                )
            };
            for which in [Impl::Auto, Impl::Reference] {
                let (ht, tt, bt) = inputs();
                let out = glu_conv::glu_depthwise3x3(ht, tt, bt, which);
                assert_eq!(out.dims(), [m, hh, ww, c2 / 2]);
                let got = out.into_data().try_to_vec::<f32>().unwrap();
                let (rel, max_abs) = rel_l2(&got, &expected);
                println!("{} {which:?} f32 shape {shape:?}: rel {rel:.2e} max abs {max_abs:.2e}", device::name(kind));
                assert!(rel < 1e-5, "{} {which:?} shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
            }
            // Other launch settings (`SANA_GLU`: units, strip, vector, SiLU as the conv reads,
            // registers: storage dtype, f32, taps from L1).
            if sana_video_core::kernels::is_cube_device(&device) {
                for launch in [[32usize, 1, 1, 1, 0], [128, 8, 8, 1, 0], [256, 16, 2, 0, 1], [64, 3, 4, 1, 1], [128, 8, 4, 0, 2], [64, 5, 8, 1, 2]] {
                    let (ht, tt, bt) = inputs();
                    let out = sana_video_core::kernels::glu_conv::cube::glu_depthwise3x3_with(ht, tt, bt, launch);
                    let (rel, _) = rel_l2(&out.into_data().try_to_vec::<f32>().unwrap(), &expected);
                    assert!(rel < 1e-5, "{} launch {launch:?} shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
                }
            }
            // With another handle on the input the kernel must not apply its SiLU in place.
            let (ht, tt, bt) = inputs();
            let kept = ht.clone();
            let out = glu_conv::glu_depthwise3x3(ht, tt, bt, Impl::Auto).into_data().try_to_vec::<f32>().unwrap();
            assert!(rel_l2(&out, &expected).0 < 1e-5, "{}: shared input, wrong result", device::name(kind));
            assert_eq!(kept.into_data().try_to_vec::<f32>().unwrap(), h, "{}: shared input was modified", device::name(kind));
            if sana_video_core::kernels::is_cube_device(&device) {
                use burn::tensor::FloatDType;
                let (ht, tt, bt) = inputs();
                let half = |t: Tensor<4>| t.cast(FloatDType::F16);
                let out = glu_conv::glu_depthwise3x3(half(ht), tt.cast(FloatDType::F16), bt.cast(FloatDType::F16), Impl::Auto);
                let got = out.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&got, &expected);
                println!("{} Auto f16 shape {shape:?}: rel {rel:.2e}", device::name(kind));
                // f16 inputs (11-bit mantissa) and output: a few 1e-3 relative.
                assert!(rel < 5e-3, "{} f16 shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
                let (ht, tt, bt) = inputs();
                let launch = [128, 8, 4, 0, 1];
                let out = sana_video_core::kernels::glu_conv::cube::glu_depthwise3x3_with(half(ht), tt.cast(FloatDType::F16), bt.cast(FloatDType::F16), launch);
                let (rel, _) = rel_l2(&out.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap(), &expected);
                assert!(rel < 5e-3, "{} f16, f32 registers, shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
            }
        }
    }
}

/// Half-precision operands with an f32 result (cross-attention logits in f16/bf16 models):
/// against host f64 on the same rounded operands, kernel and reference, f16 and bf16.
#[test]
fn matmul_half_to_f32_accumulates_in_f32() {
    use burn::tensor::FloatDType;
    use sana_video_core::kernels::matmul::{matmul_rounded, matmul_to_f32};
    for (kind, device) in backends() {
        for dtype in [FloatDType::F16, FloatDType::BF16] {
            // WGSL has no bf16.
            if dtype == FloatDType::BF16 && !kind.has_bf16() {
                continue;
            }
            let (batch, m, k, n) = (3usize, 37usize, 300usize, 29usize);
            let round = |t: Tensor<3>| t.cast(dtype);
            let a = round(Tensor::<3>::from_data(TensorData::new(random_vec(batch * m * k, 111), [batch, m, k]), &device));
            let b = round(Tensor::<3>::from_data(TensorData::new(random_vec(batch * k * n, 112), [batch, k, n]), &device));
            let av = a.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
            let bv = b.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
            let mut expected = vec![0f32; batch * m * n];
            for bb in 0..batch {
                for r in 0..m {
                    for c in 0..n {
                        let acc: f64 = (0..k).map(|i| av[(bb * m + r) * k + i] as f64 * bv[(bb * k + i) * n + c] as f64).sum();
                        expected[(bb * m + r) * n + c] = acc as f32;
                    }
                }
            }
            for which in [Impl::Auto, Impl::Reference] {
                let out = matmul_to_f32(a.clone(), b.clone(), which);
                assert_eq!(out.dtype(), burn::tensor::DType::F32, "{which:?}: result must be f32");
                let got = out.into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&got, &expected);
                println!("{} {which:?} {dtype:?} -> f32: rel {rel:.2e}", device::name(kind));
                assert!(rel < 1e-5, "{} {which:?} {dtype:?}: rel L2 {rel:.3e}", device::name(kind));
                // Rounded once to the operands' dtype (the cross-attention output): each
                // value is the f32 product within one rounding of that dtype.
                let out = matmul_rounded(a.clone(), b.clone(), which);
                assert_eq!(out.dtype(), burn::tensor::DType::from(dtype), "{which:?}: rounded result must keep the operands' dtype");
                let got = out.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let unit = if dtype == FloatDType::F16 { 2f32.powi(-11) } else { 2f32.powi(-8) };
                let worst = got.iter().zip(&expected).map(|(g, e)| (g - e).abs() / (e.abs() * unit + 1e-6)).fold(0f32, f32::max);
                println!("{} {which:?} {dtype:?} -> {dtype:?}: worst error {worst:.2} units of the last place", device::name(kind));
                assert!(worst <= 1.01, "{} {which:?} {dtype:?}: {worst:.3} units of rounding", device::name(kind));
            }
        }
    }
}

/// The cross-attention output product `[B, H, M, K] · [B, H, K, N]` with the heads merged by
/// the GEMM into `[B, M, H, N]`, the left operand a per-head view of token-major rows: each
/// value within one rounding of the host's f64 product.
#[test]
fn matmul_merge_heads_matches_host() {
    use burn::tensor::FloatDType;
    use sana_video_core::kernels::matmul::matmul_rounded_merge_heads;
    for (kind, device) in backends() {
        for dtype in [FloatDType::F16, FloatDType::BF16] {
            if dtype == FloatDType::BF16 && !kind.has_bf16() {
                continue;
            }
            let (bs, h, m, k, n) = (2usize, 3usize, 37usize, 30usize, 20usize);
            // a: [B, M, H, K] rows viewed as [B, H, M, K]; b: contiguous [B, H, K, N].
            let a = Tensor::<4>::from_data(TensorData::new(random_vec(bs * m * h * k, 121), [bs, m, h, k]), &device).cast(dtype);
            let b = Tensor::<4>::from_data(TensorData::new(random_vec(bs * h * k * n, 122), [bs, h, k, n]), &device).cast(dtype);
            let av = a.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
            let bv = b.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
            // expected[b, r, hh, c] = Σ_i a[b, r, hh, i] · b[b, hh, i, c]
            let mut expected = vec![0f32; bs * m * h * n];
            for bb in 0..bs {
                for r in 0..m {
                    for hh in 0..h {
                        for c in 0..n {
                            let acc: f64 = (0..k).map(|i| av[((bb * m + r) * h + hh) * k + i] as f64 * bv[((bb * h + hh) * k + i) * n + c] as f64).sum();
                            expected[((bb * m + r) * h + hh) * n + c] = acc as f32;
                        }
                    }
                }
            }
            let unit = if dtype == FloatDType::F16 { 2f32.powi(-11) } else { 2f32.powi(-8) };
            for which in [Impl::Auto, Impl::Reference] {
                let out = matmul_rounded_merge_heads(a.clone().swap_dims(1, 2), b.clone(), which);
                assert_eq!(out.dims(), [bs, m, h, n], "{which:?}: merged dims");
                let got = out.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let worst = got.iter().zip(&expected).map(|(g, e)| (g - e).abs() / (e.abs() * unit + 1e-6)).fold(0f32, f32::max);
                println!("{} {which:?} {dtype:?}: merged heads, worst error {worst:.2} units of the last place", device::name(kind));
                assert!(worst <= 1.01, "{} {which:?} {dtype:?}: {worst:.3} units of rounding", device::name(kind));
            }
        }
    }
}

/// A linear layer's product with its bias (`kernels::matmul::linear`): where the bias is added
/// in cuBLASLt's epilogue (CUDA) each value is the host's f64 `x·w + b` within one rounding;
/// elsewhere (and the reference) the product is rounded, then the bias added, so within one
/// rounding of each. CUDA must take the epilogue path.
#[test]
fn linear_bias_matches_host() {
    use burn::tensor::FloatDType;
    use sana_video_core::kernels::matmul::{linear, linear_bias_epilogue};
    for (kind, device) in backends() {
        for dtype in [FloatDType::F16, FloatDType::BF16] {
            if dtype == FloatDType::BF16 && !kind.has_bf16() {
                continue;
            }
            let (m, k, n) = (37usize, 96usize, 40usize);
            let x = Tensor::<2>::from_data(TensorData::new(random_vec(m * k, 131), [m, k]), &device).cast(dtype);
            let w = Tensor::<2>::from_data(TensorData::new(random_vec(k * n, 132), [k, n]), &device).cast(dtype);
            // Biases as large as the products, so that both roundings show.
            let b = Tensor::<1>::from_data(TensorData::new(random_vec(n, 133).iter().map(|v| 4.0 * v).collect::<Vec<f32>>(), [n]), &device).cast(dtype);
            let host = |t: Tensor<2>| t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
            let (xv, wv) = (host(x.clone()), host(w.clone()));
            let bv = b.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
            let mut product = vec![0f64; m * n];
            for r in 0..m {
                for c in 0..n {
                    product[r * n + c] = (0..k).map(|i| xv[r * k + i] as f64 * wv[i * n + c] as f64).sum();
                }
            }
            let expected: Vec<f64> = product.iter().enumerate().map(|(i, p)| p + bv[i % n] as f64).collect();
            let unit = if dtype == FloatDType::F16 { 2f64.powi(-11) } else { 2f64.powi(-8) };
            // Worst error in units of the last place of the result (`once`) or of the product
            // and the result together (two roundings).
            let worst = |got: &[f32], once: bool| {
                got.iter()
                    .zip(expected.iter().zip(&product))
                    .map(|(&g, (&e, &p))| (g as f64 - e).abs() / ((e.abs() + if once { 0.0 } else { p.abs() }) * unit + 1e-6))
                    .fold(0f64, f64::max)
            };
            let fused = linear_bias_epilogue(x.clone(), w.clone(), b.clone());
            assert_eq!(fused.is_some(), kind == device::BackendKind::Cuda, "{}: the bias epilogue runs exactly on CUDA", device::name(kind));
            if let Some(y) = fused {
                let e = worst(&host(y), true);
                println!("{} {dtype:?}: bias in the epilogue, worst error {e:.2} units of the last place", device::name(kind));
                assert!(e <= 1.01, "{} {dtype:?}: epilogue {e:.3} units of rounding", device::name(kind));
            }
            for which in [Impl::Auto, Impl::Reference] {
                let y = linear(x.clone(), w.clone(), Some(b.clone()), which);
                assert_eq!(y.dtype(), burn::tensor::DType::from(dtype), "{which:?}: the result keeps the operands' dtype");
                let once = kind == device::BackendKind::Cuda && which == Impl::Auto;
                let e = worst(&host(y), once);
                println!("{} {which:?} {dtype:?}: linear, worst error {e:.2} units ({})", device::name(kind), if once { "one rounding" } else { "two roundings" });
                assert!(e <= 1.01, "{} {which:?} {dtype:?}: {e:.3} units of rounding", device::name(kind));
            }
        }
    }
}

/// The storage dtypes the dequantisation kernels are checked in: f32 everywhere, f16 on
/// CubeCL devices, bf16 where the device has it (WGSL does not).
fn dequant_dtypes(kind: device::BackendKind, device: &burn::tensor::Device) -> &'static [burn::tensor::DType] {
    use burn::tensor::DType;
    match kind {
        _ if !sana_video_core::kernels::is_cube_device(device) => &[DType::F32],
        _ if !kind.has_bf16() => &[DType::F32, DType::F16],
        _ => &[DType::F32, DType::F16, DType::BF16],
    }
}

/// A dequantised weight from the kernel and from the reference: `shape`, `dtype`, bit for
/// bit equal, and in f32 equal to the host's values.
fn check_dequant(kind: device::BackendKind, dtype: burn::tensor::DType, shape: [usize; 2], w: Vec<Tensor<2>>, host: &[f32]) {
    let name = device::name(kind);
    let got: Vec<Vec<f32>> = w
        .into_iter()
        .map(|w| {
            assert_eq!((w.dims(), w.dtype()), (shape, dtype), "{name}");
            w.cast(burn::tensor::FloatDType::F32).into_data().try_to_vec::<f32>().unwrap()
        })
        .collect();
    assert_eq!(got[0], got[1], "{name} {dtype:?} {shape:?}: kernel and reference differ");
    let f32 = dtype == burn::tensor::DType::F32;
    if f32 {
        assert_eq!(got[0], host, "{name} {shape:?}: differs from the host dequantisation");
    }
    println!("{name} {dtype:?} {shape:?}: kernel = reference{}", if f32 { " = host" } else { "" });
}

/// FP8 dequantisation: the kernel against the tensor-op reference and a host loop, every
/// code (NaNs excepted: e4m3 0x7F and 0xFF) and every storage dtype; bit-identical, since
/// both scale in f32 before the one rounding to the storage dtype.
#[test]
fn fp8_dequant_matches_reference_and_host() {
    use burn::tensor::{DType, Int};
    let lut: Vec<f32> = (0..=255u8).map(sana_video_core::quant::e4m3_to_f32).collect();
    for (kind, device) in backends() {
        for (inp, out) in [(3usize, 4usize), (37, 64), (130, 260)] {
            let groups = out / 4;
            // Codes 0..=255 cycled with a stride, NaN codes replaced by zero.
            let codes: Vec<u8> = (0..inp * out).map(|i| ((i * 37 + 11) % 256) as u8).map(|c| if c & 0x7F == 0x7F { 0 } else { c }).collect();
            // codes[i * out + o] is weight (o, i): nn::Linear's packing of the [out, in] matrix.
            let packed = sana_video_core::nn::pack_transposed(out, inp, 8, |o, i| codes[i * out + o]);
            let scale = random_vec(out, 500 + inp as u64).iter().map(|v| 0.01 + v.abs()).collect::<Vec<f32>>();
            let want: Vec<f32> = (0..inp * out).map(|j| lut[codes[j] as usize] * scale[j % out]).collect();
            let dtypes = dequant_dtypes(kind, &device);
            for &dtype in dtypes {
                let mut results = Vec::new();
                for which in [Impl::Auto, Impl::Reference] {
                    let p = Tensor::<2, Int>::from_data(TensorData::new(packed.clone(), [inp, groups]), (&device, DType::I32));
                    let s = Tensor::<2>::from_data(TensorData::new(scale.clone(), [1, out]), (&device, DType::F32));
                    let l = Tensor::<1>::from_data(TensorData::new(lut.clone(), [256]), (&device, DType::F32));
                    let w = dequant::dequant_fp8(p, s, l, dtype, which);
                    results.push(w);
                }
                check_dequant(kind, dtype, [inp, out], results, &want);
            }
        }
    }
}

/// NVFP4 dequantisation: the kernel against the tensor-op reference and the host dequantiser
/// (`quant::dequantize_nvfp4`, transposed), every e2m1 code and block codes cycled, every
/// storage dtype the device has; bit-identical.
#[test]
fn nvfp4_dequant_matches_reference_and_host() {
    use burn::tensor::{DType, Int};
    use sana_video_core::quant;
    for (kind, device) in backends() {
        for (out, inp) in [(8usize, 16usize), (24, 48), (136, 272)] {
            let values: Vec<f32> = random_vec(out * inp, 700 + out as u64).iter().map(|v| v * (1.0 + (out % 7) as f32)).collect();
            let (codes, blocks, global) = quant::quantize_nvfp4(&values, out, inp);
            let host = quant::dequantize_nvfp4(&codes, &blocks, global, out, inp); // [out, inp]
            let want: Vec<f32> = (0..inp * out).map(|j| host[(j % out) * inp + j / out]).collect(); // [inp, out]
                                                                                                    // The device layouts (nn::Linear's): e2m1 codes [inp, out/8], block codes [inp/16, out/4].
            let nb = inp / 16;
            let nibble = |o: usize, i: usize| {
                if (o * inp + i) % 2 == 0 {
                    codes[(o * inp + i) / 2] & 15
                } else {
                    codes[(o * inp + i) / 2] >> 4
                }
            };
            let packed = sana_video_core::nn::pack_transposed(out, inp, 4, nibble);
            let bpacked = sana_video_core::nn::pack_transposed(out, nb, 8, |o, b| blocks[o * nb + b]);
            let dtypes = dequant_dtypes(kind, &device);
            for &dtype in dtypes {
                let mut results = Vec::new();
                for which in [Impl::Auto, Impl::Reference] {
                    let int = |v: &Vec<i32>, shape: [usize; 2]| Tensor::<2, Int>::from_data(TensorData::new(v.clone(), shape), (&device, DType::I32));
                    let table = |v: Vec<f32>| {
                        let n = v.len();
                        Tensor::<1>::from_data(TensorData::new(v, [n]), (&device, DType::F32))
                    };
                    let w = dequant::dequant_nvfp4(
                        int(&packed, [inp, out / 8]),
                        int(&bpacked, [nb, out / 4]),
                        table(vec![global]),
                        table((0..16u8).map(quant::e2m1_to_f32).collect()),
                        table((0..=255u8).map(quant::e4m3_to_f32).collect()),
                        dtype,
                        which,
                    );
                    results.push(w);
                }
                check_dequant(kind, dtype, [inp, out], results, &want);
            }
        }
    }
}

/// LayerNorm + modulation and RMSNorm, fused, against f64 on the host: rows shorter and longer
/// than a cube (8, 40, 300, 2240 values), one modulation row per sample and one per token, and
/// more rows than one dispatch dimension takes on WebGPU (70,000).
#[test]
fn norms_match_naive_and_reference() {
    use burn::tensor::FloatDType;
    let eps = 1e-6;
    for (kind, device) in backends() {
        for (i, &(b, n, d, per_token)) in
            [(2usize, 3usize, 40usize, false), (1, 5, 300, true), (2, 2, 2240, false), (1, 70_000, 8, true), (2, 3, 7, false), (1, 4, 30, true)]
                .iter()
                .enumerate()
        {
            let t = if per_token { n } else { 1 };
            // An offset, so the centring matters.
            let x: Vec<f32> = random_vec(b * n * d, 200 + i as u64).iter().map(|v| 3.0 * v + 0.7).collect();
            let scale = random_vec(b * t * d, 210 + i as u64);
            let shift = random_vec(b * t * d, 220 + i as u64);
            let weight = random_vec(d, 230 + i as u64);
            let (mut ln, mut rms) = (vec![0f32; b * n * d], vec![0f32; b * n * d]);
            for r in 0..b * n {
                let row = &x[r * d..(r + 1) * d];
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
                let srow = (r / n) * t + (r % n) % t;
                for c in 0..d {
                    let y = (row[c] as f64 - mean) / (var + eps).sqrt();
                    ln[r * d + c] = (y * (1.0 + scale[srow * d + c] as f64) + shift[srow * d + c] as f64) as f32;
                    rms[r * d + c] = (row[c] as f64 / (ms + eps).sqrt() * weight[c] as f64) as f32;
                }
            }
            let inputs = || {
                (
                    Tensor::<3>::from_data(TensorData::new(x.clone(), [b, n, d]), &device),
                    Tensor::<3>::from_data(TensorData::new(scale.clone(), [b, t, d]), &device),
                    Tensor::<3>::from_data(TensorData::new(shift.clone(), [b, t, d]), &device),
                    Tensor::<1>::from_data(TensorData::new(weight.clone(), [d]), &device),
                )
            };
            for which in [Impl::Auto, Impl::Reference] {
                let (xt, st, sh, w) = inputs();
                let got = norm::layer_norm_modulate(xt.clone(), st, sh, eps, which).into_data().try_to_vec::<f32>().unwrap();
                let (rel, max_abs) = rel_l2(&got, &ln);
                println!("{} {which:?} layer_norm_modulate [{b}, {n}, {d}] T={t}: rel {rel:.2e} max abs {max_abs:.2e}", device::name(kind));
                assert!(rel < 1e-5, "{} {which:?} layer_norm_modulate d={d}: rel L2 {rel:.3e}", device::name(kind));
                let got = norm::rms_norm(xt, &w, eps, which).into_data().try_to_vec::<f32>().unwrap();
                let (rel, max_abs) = rel_l2(&got, &rms);
                println!("{} {which:?} rms_norm [{b}, {n}, {d}]: rel {rel:.2e} max abs {max_abs:.2e}", device::name(kind));
                assert!(rel < 1e-5, "{} {which:?} rms_norm d={d}: rel L2 {rel:.3e}", device::name(kind));
            }
            // Rows spaced apart (as CUDA pitches them): a view of the first d columns of a
            // wider tensor whose other columns hold values that would spoil any statistic
            // (64 extra values: burn's `narrow` keeps a view; 3: it copies).
            for pad in [3usize, 64] {
                let wide: Vec<f32> = (0..b * n * (d + pad)).map(|j| if j % (d + pad) < d { x[j / (d + pad) * d + j % (d + pad)] } else { 1.0e6 }).collect();
                let xt = Tensor::<3>::from_data(TensorData::new(wide, [b, n, d + pad]), &device).narrow(2, 0, d);
                let (_, st, sh, w) = inputs();
                let got = norm::layer_norm_modulate(xt.clone(), st, sh, eps, Impl::Auto).into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&got, &ln);
                let got2 = norm::rms_norm(xt, &w, eps, Impl::Auto).into_data().try_to_vec::<f32>().unwrap();
                let (rel2, _) = rel_l2(&got2, &rms);
                println!("{} Auto rows {pad} values apart d={d}: layer_norm_modulate rel {rel:.2e}, rms_norm rel {rel2:.2e}", device::name(kind));
                assert!(rel < 1e-5 && rel2 < 1e-5, "{} spaced rows (pad {pad}) d={d}: rel L2 {rel:.3e} / {rel2:.3e}", device::name(kind));
            }
            if sana_video_core::kernels::is_cube_device(&device) {
                let (xt, st, sh, w) = inputs();
                let h = |t: Tensor<3>| t.cast(FloatDType::F16);
                let got =
                    norm::layer_norm_modulate(h(xt.clone()), h(st), h(sh), eps, Impl::Auto).cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&got, &ln);
                let got2 = norm::rms_norm(h(xt), &w.cast(FloatDType::F16), eps, Impl::Auto).cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let (rel2, _) = rel_l2(&got2, &rms);
                println!("{} Auto f16 d={d}: layer_norm_modulate rel {rel:.2e}, rms_norm rel {rel2:.2e}", device::name(kind));
                // f16 inputs and output (11-bit mantissa): a few 1e-4 relative.
                assert!(rel < 2e-3 && rel2 < 2e-3, "{} f16 d={d}: rel L2 {rel:.3e} / {rel2:.3e}", device::name(kind));
            }
        }
    }
}

/// The cross-attention softmax, fused (scale, key mask, softmax, cast), against f64 on the
/// host: with and without a mask; rows of 300, 200, 100, 50, 20, 7 and 1 keys (64, 32, 16, 8,
/// 4, 1 and 1 units a row: 4 to 256 rows a cube, the last cube part-filled). (The 2-D grid
/// past 65,535 cubes that the kernel shares, `rows::cube_grid`, is exercised by the GLU
/// conv's test.)
#[test]
fn attention_probs_match_naive_and_reference() {
    use burn::tensor::{DType, FloatDType};
    for (kind, device) in backends() {
        for (i, &(b, h, n, l, masked)) in [(2usize, 3usize, 37usize, 300usize, true), (1, 2, 5, 300, false), (1, 2, 40_000, 7, true), (2, 2, 333, 50, true), (1, 3, 37, 20, true), (2, 1, 41, 100, false), (1, 2, 29, 200, true), (1, 3, 21, 1, false)].iter().enumerate() {
            let logits: Vec<f32> = random_vec(b * h * n * l, 300 + i as u64).iter().map(|v| 8.0 * v).collect();
            // The pipeline's mask: 0 for kept keys, -10000 for padding (the last third).
            let bias: Vec<f32> = (0..b * l).map(|j| if masked && (j % l) >= 2 * l / 3 && j / l == b - 1 { -10_000.0 } else { 0.0 }).collect();
            let scale = 1.0 / 112f64.sqrt();
            let mut expected = vec![0f32; b * h * n * l];
            for r in 0..b * h * n {
                let bb = r / (h * n);
                let v: Vec<f64> = (0..l).map(|c| logits[r * l + c] as f64 * scale + if masked { bias[bb * l + c] as f64 } else { 0.0 }).collect();
                let m = v.iter().cloned().fold(f64::MIN, f64::max);
                let sum: f64 = v.iter().map(|x| (x - m).exp()).sum();
                for c in 0..l {
                    expected[r * l + c] = ((v[c] - m).exp() / sum) as f32;
                }
            }
            let inputs = || {
                (
                    Tensor::<4>::from_data(TensorData::new(logits.clone(), [b, h, n, l]), &device),
                    Tensor::<4>::from_data(TensorData::new(bias.clone(), [b, 1, 1, l]), &device),
                )
            };
            for which in [Impl::Auto, Impl::Reference] {
                let (x, bt) = inputs();
                let got = softmax::attention_probs(x, scale, masked.then_some(&bt), DType::F32, which).into_data().try_to_vec::<f32>().unwrap();
                let (rel, max_abs) = rel_l2(&got, &expected);
                println!("{} {which:?} attention_probs [{b}, {h}, {n}, {l}] masked {masked}: rel {rel:.2e} max abs {max_abs:.2e}", device::name(kind));
                assert!(rel < 1e-5, "{} {which:?} [{b}, {h}, {n}, {l}]: rel L2 {rel:.3e}", device::name(kind));
            }
            // Rows spaced apart (as CUDA pitches them), the gaps holding huge logits; 64 values,
            // so burn's `narrow` keeps a view (it copies when the trimmed bytes are unaligned).
            let pad = 64;
            let wide: Vec<f32> =
                (0..b * h * n * (l + pad)).map(|j| if j % (l + pad) < l { logits[j / (l + pad) * l + j % (l + pad)] } else { 1.0e4 }).collect();
            let x = Tensor::<4>::from_data(TensorData::new(wide, [b, h, n, l + pad]), &device).narrow(3, 0, l);
            let (_, bt) = inputs();
            let got = softmax::attention_probs(x, scale, masked.then_some(&bt), DType::F32, Impl::Auto).into_data().try_to_vec::<f32>().unwrap();
            let (rel, _) = rel_l2(&got, &expected);
            println!("{} Auto attention_probs, rows {pad} values apart: rel {rel:.2e}", device::name(kind));
            assert!(rel < 1e-5, "{} spaced rows [{b}, {h}, {n}, {l}]: rel L2 {rel:.3e}", device::name(kind));
            if sana_video_core::kernels::is_cube_device(&device) {
                let (x, bt) = inputs();
                let out = softmax::attention_probs(x, scale, masked.then_some(&bt), DType::F16, Impl::Auto);
                assert_eq!(out.dtype(), DType::F16);
                let got = out.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&got, &expected);
                println!("{} Auto f16 out [{b}, {h}, {n}, {l}]: rel {rel:.2e}", device::name(kind));
                // Rounding the probabilities to f16 (11-bit mantissa) only.
                assert!(rel < 1e-3, "{} f16 out: rel L2 {rel:.3e}", device::name(kind));
            }
        }
    }
}

/// The temporal conv's combine against the host: one frame and several, with LongSANA's left
/// frame and with zero padding.
#[test]
fn temporal_combine_matches_naive_and_reference() {
    use burn::tensor::FloatDType;
    for (kind, device) in backends() {
        for (i, &(b, f, t, d, with_left)) in
            [(2usize, 4usize, 5usize, 6usize, true), (1, 1, 3, 8, true), (2, 3, 7, 5, false), (1, 1, 2, 4, false), (2, 3, 4, 12, true)].iter().enumerate()
        {
            let sv = random_vec(b * f * t * d, 400 + i as u64);
            let pv = random_vec(b * f * t * 3 * d, 410 + i as u64);
            let lv = random_vec(b * t * d, 420 + i as u64);
            let mut expected = vec![0f32; b * f * t * d];
            for bb in 0..b {
                for fr in 0..f {
                    for tok in 0..t {
                        for c in 0..d {
                            let at = ((bb * f + fr) * t + tok) * d + c;
                            let p = |fr: usize, k: usize| pv[((bb * f + fr) * t + tok) * 3 * d + k * d + c] as f64;
                            let mut v = sv[at] as f64 + p(fr, 1);
                            if fr > 0 {
                                v += p(fr - 1, 0);
                            } else if with_left {
                                v += lv[(bb * t + tok) * d + c] as f64;
                            }
                            if fr + 1 < f {
                                v += p(fr + 1, 2);
                            }
                            expected[at] = v as f32;
                        }
                    }
                }
            }
            let inputs = || {
                (
                    Tensor::<4>::from_data(TensorData::new(sv.clone(), [b, f, t, d]), &device),
                    Tensor::<4>::from_data(TensorData::new(pv.clone(), [b, f, t, 3 * d]), &device),
                    with_left.then(|| Tensor::<3>::from_data(TensorData::new(lv.clone(), [b, t, d]), &device)),
                )
            };
            for which in [Impl::Auto, Impl::Reference] {
                let (st, pt, lt) = inputs();
                let got = temporal::temporal_combine(st, pt, lt, which).into_data().try_to_vec::<f32>().unwrap();
                let (rel, max_abs) = rel_l2(&got, &expected);
                println!("{} {which:?} temporal_combine [{b}, {f}, {t}, {d}] left {with_left}: rel {rel:.2e} max abs {max_abs:.2e}", device::name(kind));
                assert!(rel < 1e-6, "{} {which:?} [{b}, {f}, {t}, {d}]: rel L2 {rel:.3e}", device::name(kind));
            }
            // s and p with rows spaced apart (as CUDA pitches them): views of wider tensors
            // whose extra 64 values a row are huge (64, so burn's `narrow` keeps a view).
            let spaced = |v: &[f32], w: usize| {
                let wide: Vec<f32> = (0..b * f * t * (w + 64)).map(|j| if j % (w + 64) < w { v[j / (w + 64) * w + j % (w + 64)] } else { 1.0e6 }).collect();
                Tensor::<4>::from_data(TensorData::new(wide, [b, f, t, w + 64]), &device).narrow(3, 0, w)
            };
            let (_, _, lt) = inputs();
            let got = temporal::temporal_combine(spaced(&sv, d), spaced(&pv, 3 * d), lt, Impl::Auto).into_data().try_to_vec::<f32>().unwrap();
            let (rel, _) = rel_l2(&got, &expected);
            println!("{} Auto temporal_combine [{b}, {f}, {t}, {d}], rows 64 values apart: rel {rel:.2e}", device::name(kind));
            assert!(rel < 1e-6, "{} spaced rows [{b}, {f}, {t}, {d}]: rel L2 {rel:.3e}", device::name(kind));
            if sana_video_core::kernels::is_cube_device(&device) {
                let (st, pt, lt) = inputs();
                let h4 = |x: Tensor<4>| x.cast(FloatDType::F16);
                let got = temporal::temporal_combine(h4(st), h4(pt), lt.map(|l| l.cast(FloatDType::F16)), Impl::Auto);
                let got = got.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = rel_l2(&got, &expected);
                println!("{} Auto f16 temporal_combine [{b}, {f}, {t}, {d}]: rel {rel:.2e}", device::name(kind));
                assert!(rel < 2e-3, "{} f16: rel L2 {rel:.3e}", device::name(kind));
            }
        }
    }
}

/// W8A8 products (`fp8_gemm`): activations quantised per token, FP8 weight codes, per-channel
/// scales and a bias, against a float64 host product of the same codes, on every backend
/// and result dtype. The emulation (the reference, and the product wherever FP8 tensor cores
/// are not) accumulates in f32 and is held to f32's bound; cuBLASLt's FP8 GEMM on Hopper adds
/// its tensor cores' narrower accumulator (see `FP8_TENSOR_CORE_BOUND`).
#[test]
fn fp8_product_matches_host_and_reference() {
    use burn::tensor::{DType, FloatDType, Int};
    use sana_video_core::kernels::{act_quant, fp8_gemm};
    let lut: Vec<f32> = (0..=255u8).map(sana_video_core::quant::e4m3_to_f32).collect();
    for (kind, device) in backends() {
        let name = device::name(kind);
        let tensor_cores = fp8_gemm::tensor_cores(&device);
        for (m, n, k) in [(5usize, 16usize, 32usize), (300, 48, 64), (129, 96, 2240)] {
            let x = random_vec(m * k, 900 + m as u64).iter().enumerate().map(|(i, v)| v * (1.0 + (i / k % 5) as f32 * 7.0)).collect::<Vec<f32>>();
            // Weight codes cycled through every finite e4m3 value (NaNs, 0x7F and 0xFF, skipped).
            let w_codes: Vec<u8> = (0..n * k).map(|i| ((i * 53 + 7) % 256) as u8).map(|c| if c & 0x7F == 0x7F { 0x38 } else { c }).collect();
            let w_scale: Vec<f32> = random_vec(n, 910 + n as u64).iter().map(|v| 2e-3 * (0.5 + v.abs())).collect();
            let bias = random_vec(n, 920 + n as u64);
            for dtype in dequant_dtypes(kind, &device).iter().copied() {
                let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), &device).cast(FloatDType::from(dtype));
                let stored = xt.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let bias_t = Tensor::<1>::from_data(TensorData::new(bias.clone(), [n]), &device).cast(FloatDType::from(dtype));
                let bias_stored = bias_t.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                // Host: the quantiser's codes (bit-exact, `quant.rs`) times the weight codes in f64.
                let (xc, xs) = act_quant::encode_rows(&stored, m, k);
                let byte = |words: &[i32], i: usize| (words[i / 4] as u32 >> (8 * (i % 4))) as u8;
                let want: Vec<f32> = (0..m * n)
                    .map(|j| {
                        let (r, c) = (j / n, j % n);
                        let dot: f64 = (0..k).map(|i| lut[byte(&xc, r * k + i) as usize] as f64 * lut[w_codes[c * k + i] as usize] as f64).sum();
                        (dot * xs[r] as f64 * w_scale[c] as f64 + bias_stored[c] as f64) as f32
                    })
                    .collect();
                // On FP8 tensor cores both accumulation modes (the fast default, then the
                // precise one), each against its bound; elsewhere the one emulation.
                let modes: &[bool] = if tensor_cores { &[true, false] } else { &[false] };
                let previous = fp8_gemm::fast_accumulation();
                let mut native_errors = Vec::new();
                for &fast in modes {
                    fp8_gemm::set_fast_accumulation(fast);
                    let mut outs = Vec::new();
                    for which in [Impl::Auto, Impl::Reference] {
                        let wc = Tensor::<2, Int>::from_data(TensorData::new(fp8_gemm::pack_rows(&w_codes, n, k), [n, k / 4]), (&device, DType::I32));
                        let ws = Tensor::<1>::from_data(TensorData::new(w_scale.clone(), [n]), (&device, DType::F32));
                        let l = Tensor::<1>::from_data(TensorData::new(lut.clone(), [256]), (&device, DType::F32));
                        let y = fp8_gemm::linear(xt.clone(), &wc, &ws, Some(&bias_t), &l, dtype, which);
                        assert_eq!((y.dims(), y.dtype()), ([m, n], dtype), "{name}");
                        outs.push(y.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap());
                    }
                    // One rounding of the f32 result to the storage dtype: 2^-8 relative for bf16.
                    let rounding = match dtype {
                        DType::F32 => 0.0,
                        DType::F16 => 2f64.powi(-11),
                        _ => 2f64.powi(-8),
                    };
                    for (which, out) in ["auto", "reference"].iter().zip(&outs) {
                        let (rel, max) = rel_l2(out, &want);
                        let native = *which == "auto" && tensor_cores;
                        let accumulation = if !native {
                            1e-5
                        } else if fast {
                            fp8_fast_accum_bound(k)
                        } else {
                            FP8_TENSOR_CORE_BOUND
                        };
                        let bound = rounding + accumulation;
                        let mode = if !native { "" } else if fast { " (FP8 tensor cores, fast accumulation)" } else { " (FP8 tensor cores, precise accumulation)" };
                        println!("{name} {dtype:?} [{m}, {k}]·[{k}, {n}] {which}{mode}: rel L2 {rel:.2e} (max abs {max:.2e}, bound {bound:.1e})");
                        assert!(rel < bound, "{name} {dtype:?} [{m},{k},{n}] {which}{mode}: rel {rel:.3e} >= {bound:.1e}");
                        if native {
                            native_errors.push(rel);
                        }
                    }
                }
                fp8_gemm::set_fast_accumulation(previous);
                // The switch must take effect: over 2240 additions the fast mode's narrower
                // sums show (measured on an H200: 1.2e-3 against 2.2e-4 for f32 results).
                if let [fast, precise] = native_errors[..] {
                    if k >= 2048 && dtype == DType::F32 {
                        assert!(precise < fast, "{name} [{m},{k},{n}]: precise accumulation ({precise:.3e}) is not closer than fast ({fast:.3e})");
                    }
                }
            }
        }
    }
}

/// Bound on cuBLASLt's FP8 GEMM against the exact product of the same codes (f32 result).
/// Hopper's FP8 tensor cores add products in an accumulator narrower than f32 (about 14
/// mantissa bits, reported for H800 in the DeepSeek-V3 report) and cuBLASLt adds those
/// partial sums into f32 every few steps of `k`. Measured on an H200 (cuBLASLt 13.0): 9.1e-5
/// to 2.2e-4 for f32 results of these products.
const FP8_TENSOR_CORE_BOUND: f64 = 1e-3;

/// The same with cuBLASLt's fast accumulation (the default): the partial sums stay in that
/// accumulator of about 14 mantissa bits for all of `k`, each addition rounding by up to
/// 2^-14 relative, and `k` independent roundings add up like a random walk: 2^-14·√k
/// (2.9e-3 at `k` = 2240; measured on an H200: 1.2e-3 there, 1.8e-4 at `k` = 64). The
/// precise mode moves them into f32 every few steps, hence its `k`-independent bound.
fn fp8_fast_accum_bound(k: usize) -> f64 {
    2f64.powi(-14) * (k as f64).sqrt()
}

/// Convolution as row-shifted GEMMs over a flattened padded grid (`matmul::tap_gemms`, the
/// CUDA VAE convs): the reference against host f64 on every backend; on CUDA, cuBLASLt's
/// in-place taps against the reference in exact f32 (1e-6), TF32 and bf16. TF32 rounds each
/// operand to 10 explicit mantissa bits (2^-11 relative), so a product is off by at most
/// 2^-10, independently across terms: bound 2^-10 ≈ 1e-3. bf16 operands are compared with the
/// reference on the same rounded operands: their products are exact in f32 and the result is
/// f32, so only the summation order differs (1e-5).
/// Elsewhere `tap_gemms` must decline (`None`), so callers take their own path.
#[test]
fn tap_gemms_match_reference() {
    use burn::tensor::{DType, FloatDType};
    use sana_video_core::kernels::matmul::{tap_gemms, tap_gemms_reference, tap_offsets};
    // (kernel, grid [frames, hp, wp], channels C, outputs O)
    let cases: [([usize; 3], [usize; 3], usize, usize); 4] = [([3, 3, 3], [4, 6, 7], 8, 5), ([1, 3, 3], [2, 9, 11], 16, 32), ([3, 1, 1], [5, 3, 4], 12, 3), ([3, 3, 3], [3, 18, 26], 96, 96)];
    for (kind, device) in backends() {
        let name = device::name(kind);
        for (i, &(kernel, [t, hp, wp], c, o)) in cases.iter().enumerate() {
            let rows = t * hp * wp;
            let offsets = tap_offsets(kernel, hp, wp);
            let m = rows - offsets.last().unwrap();
            let x = random_vec(rows * c, 1200 + i as u64);
            let w = random_vec(offsets.len() * c * o, 1300 + i as u64);
            let want: Vec<f64> = (0..m * o)
                .map(|j| {
                    let (r, oi) = (j / o, j % o);
                    offsets.iter().enumerate().map(|(tap, off)| (0..c).map(|ci| x[(r + off) * c + ci] as f64 * w[(tap * c + ci) * o + oi] as f64).sum::<f64>()).sum()
                })
                .collect();
            let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, c]), &device);
            let wt = Tensor::<2>::from_data(TensorData::new(w.clone(), [offsets.len() * c, o]), &device);
            let reference = tap_gemms_reference(xt.clone(), wt.clone(), kernel, hp, wp, m);
            assert_eq!(reference.dims(), [rows, o]);
            let got = reference.into_data().try_to_vec::<f32>().unwrap();
            let (rel, _) = rel_l2(&got[..m * o], &want32);
            assert!(rel < 1e-6, "{name} case {i}: reference rel {rel:.3e}");
            assert!(got[m * o..].iter().all(|&v| v == 0.0), "{name} case {i}: reference rows from m on are zeros");
            let cases_dt: &[(DType, bool, f64)] = &[(DType::F32, false, 1e-6), (DType::F32, true, 1e-3), (DType::BF16, false, 1e-5)];
            for &(dtype, tf32, bound) in cases_dt {
                let (xd, wd) = (xt.clone().cast(FloatDType::from(dtype)), wt.clone().cast(FloatDType::from(dtype)));
                let out = tap_gemms(xd.clone(), wd.clone(), kernel, hp, wp, m, tf32, Impl::Auto);
                if kind != device::BackendKind::Cuda {
                    assert!(out.is_none(), "{name}: tap_gemms runs only on CUDA");
                    continue;
                }
                let out = out.unwrap_or_else(|| panic!("{name} case {i} {dtype:?}: cuBLASLt declined"));
                assert_eq!(out.dims(), [rows, o]);
                let got = out.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                // Against the reference on the operands as stored (bf16-rounded for bf16).
                let (xs, ws) = (xd.cast(FloatDType::F32), wd.cast(FloatDType::F32));
                let refd = tap_gemms_reference(xs, ws, kernel, hp, wp, m).into_data().try_to_vec::<f32>().unwrap();
                let (rel, max_abs) = rel_l2(&got[..m * o], &refd[..m * o]);
                println!("{name} case {i} {dtype:?} tf32 {tf32}: rel {rel:.3e} (max abs {max_abs:.2e})");
                assert!(rel < bound, "{name} case {i} {dtype:?} tf32 {tf32}: rel {rel:.3e} > {bound:e}");
            }
        }
    }
}

/// The VAE's channel RMS norm (with and without SiLU), kernel and reference, against host f64
/// on the same (rounded) inputs: odd channel counts, position counts that take vectors of 4,
/// 2 and 1, a zero column (the 1e-12 floor), batch 2; f32 (bound 1e-6: summation order), and
/// 16-bit storage (bf16, or f16 on wgpu, whose WGSL has no bf16): the kernel rounds once,
/// the reference twice (the norm, then SiLU in 16 bits), so 2^-8 for bf16, 2^-10 for f16.
#[test]
fn rms_norm_channels_matches_host() {
    use burn::tensor::{DType, FloatDType};
    for (kind, device) in backends() {
        for (i, &shape) in [[2usize, 5, 3, 4, 6], [1, 96, 1, 3, 5], [1, 7, 2, 2, 3], [2, 384, 2, 6, 10]].iter().enumerate() {
            let [b, c, t, h, w] = shape;
            let s = t * h * w;
            let mut x = random_vec(b * c * s, 300 + i as u64).iter().map(|v| 3.0 * v).collect::<Vec<f32>>();
            // One position all zeros: the norm's floor keeps it finite (zero).
            for ch in 0..c {
                x[ch * s] = 0.0;
            }
            let scale = random_vec(c, 310 + i as u64).iter().map(|v| 1.0 + v).collect::<Vec<f32>>();
            let scale_t = Tensor::<1>::from_data(TensorData::new(scale.clone(), [c]), &device);
            let halves: &[FloatDType] = if !kind.has_bf16() { &[FloatDType::F32, FloatDType::F16] } else { &[FloatDType::F32, FloatDType::BF16] };
            for &dt in halves {
                let xt = Tensor::<5>::from_data(TensorData::new(x.clone(), shape), &device).cast(dt);
                // The host computes from the values the device holds.
                let xr = xt.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                for silu in [false, true] {
                    let mut want = vec![0f32; xr.len()];
                    for bi in 0..b {
                        for p in 0..s {
                            let at = |ch: usize| (bi * c + ch) * s + p;
                            let n = (0..c).map(|ch| (xr[at(ch)] as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
                            for ch in 0..c {
                                let y = xr[at(ch)] as f64 / n * scale[ch] as f64;
                                want[at(ch)] = (if silu { silu64(y) } else { y }) as f32;
                            }
                        }
                    }
                    let bound = match DType::from(dt) {
                        DType::F32 => 1e-6,
                        DType::F16 => 2f64.powi(-10),
                        _ => 2f64.powi(-8),
                    };
                    for which in [Impl::Auto, Impl::Reference] {
                        let out = channel_norm::rms_norm_channels(xt.clone(), &scale_t, silu, which);
                        assert_eq!(out.dtype(), DType::from(dt));
                        let got = out.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                        let (rel, max_abs) = rel_l2(&got, &want);
                        println!("{} {which:?} {dt:?} silu {silu} shape {shape:?}: rel {rel:.2e} max abs {max_abs:.2e}", device::name(kind));
                        assert!(rel <= bound, "{} {which:?} {dt:?} silu {silu} shape {shape:?}: rel L2 {rel:.3e}", device::name(kind));
                        assert!(got.iter().all(|v| v.is_finite()), "non-finite output");
                    }
                }
            }
        }
    }
}
