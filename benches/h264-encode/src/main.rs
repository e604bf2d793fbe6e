//! Encodes synthetic 480p frames (moving sine patterns with a little noise) with the engine's
//! OpenH264 settings (native/src/video.rs: rate control off, QP at most 22, no skipped
//! frames, an IDR every two seconds) and prints the time per frame.
//! Usage: h264-encode [frames=81] [width=832] [height=480]
use std::time::Instant;

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (frames, w, h) = (arg(1, 81), arg(2, 832), arg(3, 480));
    let fps = 16u32;
    let config = openh264::encoder::EncoderConfig::new()
        .max_frame_rate(openh264::encoder::FrameRate::from_hz(fps as f32))
        .rate_control_mode(openh264::encoder::RateControlMode::Off)
        .skip_frames(false)
        .qp(openh264::encoder::QpRange::new(0, 22))
        .intra_frame_period(openh264::encoder::IntraFramePeriod::from_num_frames(fps * 2));
    let mut enc = match openh264::encoder::Encoder::with_api_config(openh264::OpenH264API::from_source(), config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("H.264 encoder: {e}");
            std::process::exit(1);
        }
    };
    let pictures: Vec<Vec<u8>> = (0..frames)
        .map(|f| {
            let mut rgb = vec![0u8; w * h * 3];
            for y in 0..h {
                for x in 0..w {
                    let v = ((x as f32 * 0.03 + f as f32 * 0.2).sin() * (y as f32 * 0.02).cos() * 100.0 + 128.0) as u8;
                    let n = ((x * 7919 + y * 104729 + f * 13) % 23) as u8;
                    let o = (y * w + x) * 3;
                    rgb[o..o + 3].copy_from_slice(&[v, v / 2 + n, 255 - v]);
                }
            }
            rgb
        })
        .collect();
    let t0 = Instant::now();
    let mut bytes = 0usize;
    for rgb in &pictures {
        let yuv = openh264::formats::YUVBuffer::from_rgb8_source(openh264::formats::RgbSliceU8::new(rgb, (w, h)));
        match enc.encode(&yuv) {
            Ok(bs) => bytes += bs.to_vec().len(),
            Err(e) => {
                eprintln!("H.264 encoder: {e}");
                std::process::exit(1);
            }
        }
    }
    let s = t0.elapsed().as_secs_f64();
    println!("{frames} frames of {w}x{h}: {s:.3} s, {:.1} ms a frame, {bytes} bytes", 1e3 * s / frames.max(1) as f64);
}
