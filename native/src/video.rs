//! Video writers chosen by the output's extension: `.mp4` (H.264 by OpenH264, muxed by the
//! `mp4` crate), `.gif`, `.safetensors` (`frames` f32 [T,H,W,3] in [0,1] and `latents`),
//! or a folder of PNG frames (a path ending in `/` or without extension). Frames are
//! written as they arrive into a temporary sibling (`.NAME.partial-PID`) that is renamed
//! into place only when the run succeeds; a failed or interrupted run removes it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sana_video_core::io::safetensors::{serialize, HostData};

use crate::fmp4::{mp4_box, Fragmented, Sample};

/// Temporary outputs to remove if the process is interrupted hard (second Ctrl-C).
pub static PARTIAL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Mp4,
    Gif,
    Safetensors,
    PngDir,
}

impl Format {
    pub fn of(path: &str) -> Result<Format, String> {
        let p = Path::new(path);
        if path.ends_with('/') || p.is_dir() {
            return Ok(Format::PngDir);
        }
        match p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
            Some("mp4") => Ok(Format::Mp4),
            Some("gif") => Ok(Format::Gif),
            Some("safetensors") => Ok(Format::Safetensors),
            None => Ok(Format::PngDir),
            Some(other) => Err(format!(
                "--output {path}: unknown format .{other} (use .mp4, .gif, .safetensors, or a folder for PNG frames; \
                 .webm needs a VP8/VP9 encoder we do not ship)"
            )),
        }
    }
}

/// Checks an output path before any work: the folder exists and is writable, the target
/// is not an existing folder (for files), the frame size suits the format.
pub fn check_output(path: &str, format: Format, height: usize, width: usize) -> Result<(), String> {
    let p = Path::new(path.trim_end_matches('/'));
    let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(format!("--output {path}: folder {} does not exist", parent.display()));
    }
    let probe = parent.join(format!(".sana-video-write-test-{}", std::process::id()));
    File::create(&probe).map_err(|e| format!("--output {path}: cannot write in {}: {e}", parent.display()))?;
    let _ = std::fs::remove_file(&probe);
    if format != Format::PngDir && p.is_dir() {
        return Err(format!("--output {path}: is a folder"));
    }
    if format == Format::PngDir && p.exists() && !p.is_dir() {
        return Err(format!("--output {path}: exists and is not a folder"));
    }
    if format == Format::Mp4 && (height % 2 != 0 || width % 2 != 0) {
        return Err(format!("--output {path}: H.264 (4:2:0) needs an even width and height, got {width}x{height}"));
    }
    if format == Format::Gif && (height > 65535 || width > 65535) {
        return Err(format!("--output {path}: GIF frames are limited to 65535 px"));
    }
    Ok(())
}

fn to_u8(v: f32) -> u8 {
    // diffusers' numpy_to_pil: (x * 255).round()
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

enum Sink {
    Mp4 { encoder: Box<openh264::encoder::Encoder>, writer: Option<mp4::Mp4Writer<BufWriter<File>>>, sps: Option<Vec<u8>>, pps: Option<Vec<u8>>, index: u64 },
    /// Fragmented MP4: one fragment per `push`, flushed, so the file plays while it grows.
    Fmp4 { encoder: Box<openh264::encoder::Encoder>, writer: Option<Fragmented<BufWriter<File>>>, sps: Option<Vec<u8>>, pps: Option<Vec<u8>>, index: u64 },
    Gif { encoder: gif::Encoder<BufWriter<File>> },
    Png { dir: PathBuf, index: usize, meta: Vec<(String, String)> },
    Safetensors { frames: Vec<f32> },
}

pub struct VideoWriter {
    pub format: Format,
    target: PathBuf,
    temp: PathBuf,
    height: usize,
    width: usize,
    fps: u32,
    metadata: Vec<(String, String)>,
    sink: Option<Sink>,
    pub frames_written: usize,
    done: bool,
}

impl VideoWriter {
    /// `stream`: write `.mp4` as fragmented MP4, one fragment per [`VideoWriter::push`],
    /// so the file can be played while it grows (LongSANA pushes once per chunk).
    pub fn create(path: &str, format: Format, height: usize, width: usize, fps: u32, metadata: Vec<(String, String)>, stream: bool) -> Result<VideoWriter, String> {
        let target = PathBuf::from(path.trim_end_matches('/'));
        let name = target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "output".into());
        let temp = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        PARTIAL.lock().map(|mut v| v.push(temp.clone())).ok();
        let io = |e: std::io::Error| format!("--output {path}: {e}");
        let sink = match format {
            Format::Mp4 => {
                let encoder = h264_encoder(fps)?;
                if stream {
                    Sink::Fmp4 { encoder, writer: None, sps: None, pps: None, index: 0 }
                } else {
                    Sink::Mp4 { encoder, writer: None, sps: None, pps: None, index: 0 }
                }
            }
            Format::Gif => {
                let file = BufWriter::new(File::create(&temp).map_err(io)?);
                let mut encoder = gif::Encoder::new(file, width as u16, height as u16, &[]).map_err(|e| format!("--output {path}: {e}"))?;
                encoder.set_repeat(gif::Repeat::Infinite).map_err(|e| format!("--output {path}: {e}"))?;
                let comment: String = metadata.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
                for chunk in comment.as_bytes().chunks(255).take(1000) {
                    encoder.write_raw_extension(gif::Extension::Comment.into(), &[chunk]).map_err(|e| format!("--output {path}: {e}"))?;
                }
                Sink::Gif { encoder }
            }
            Format::PngDir => {
                std::fs::create_dir(&temp).map_err(io)?;
                Sink::Png { dir: temp.clone(), index: 0, meta: metadata.clone() }
            }
            Format::Safetensors => Sink::Safetensors { frames: Vec::new() },
        };
        Ok(VideoWriter { format, target, temp, height, width, fps, metadata, sink: Some(sink), frames_written: 0, done: false })
    }

    /// Appends frames `[T, H, W, 3]` in [0, 1].
    pub fn push(&mut self, data: &[f32], count: usize) -> Result<(), String> {
        let (h, w) = (self.height, self.width);
        let path = self.target.display().to_string();
        let io = |e: &dyn std::fmt::Display| format!("--output {path}: {e}");
        let fps = self.fps;
        let temp = self.temp.clone();
        match self.sink.as_mut().ok_or("writer already finished")? {
            Sink::Safetensors { frames } => frames.extend_from_slice(data),
            Sink::Png { dir, index, meta } => {
                for f in 0..count {
                    let rgb: Vec<u8> = data[f * h * w * 3..(f + 1) * h * w * 3].iter().map(|&v| to_u8(v)).collect();
                    let file = BufWriter::new(File::create(dir.join(format!("frame_{:05}.png", *index))).map_err(|e| io(&e))?);
                    let mut enc = png::Encoder::new(file, w as u32, h as u32);
                    enc.set_color(png::ColorType::Rgb);
                    enc.set_depth(png::BitDepth::Eight);
                    if *index == 0 {
                        for (k, v) in meta.iter() {
                            enc.add_itxt_chunk(k.clone(), v.clone()).map_err(|e| io(&e))?;
                        }
                    }
                    let mut wr = enc.write_header().map_err(|e| io(&e))?;
                    wr.write_image_data(&rgb).map_err(|e| io(&e))?;
                    wr.finish().map_err(|e| io(&e))?;
                    *index += 1;
                }
            }
            Sink::Gif { encoder } => {
                for f in 0..count {
                    let rgb: Vec<u8> = data[f * h * w * 3..(f + 1) * h * w * 3].iter().map(|&v| to_u8(v)).collect();
                    let mut frame = gif::Frame::from_rgb_speed(w as u16, h as u16, &rgb, 10);
                    frame.delay = (100.0 / fps as f32).round() as u16;
                    encoder.write_frame(&frame).map_err(|e| io(&e))?;
                }
            }
            Sink::Mp4 { encoder, writer, sps, pps, index } => {
                for f in 0..count {
                    let picture = encode_frame(encoder, &data[f * h * w * 3..(f + 1) * h * w * 3], h, w, sps, pps, *index)?;
                    if writer.is_none() {
                        let (Some(s), Some(p)) = (sps.as_ref(), pps.as_ref()) else {
                            return Err("H.264 encoder: the first frame carried no SPS/PPS".into());
                        };
                        let file = BufWriter::new(File::create(&temp).map_err(|e| io(&e))?);
                        let cfg = mp4::Mp4Config {
                            major_brand: "isom".parse().map_err(|_| "mp4 brand")?,
                            minor_version: 512,
                            compatible_brands: ["isom", "iso2", "avc1", "mp41"].iter().filter_map(|b| b.parse().ok()).collect(),
                            timescale: 1000,
                        };
                        let mut wr = mp4::Mp4Writer::write_start(file, &cfg).map_err(|e| io(&e))?;
                        wr.add_track(&mp4::TrackConfig {
                            track_type: mp4::TrackType::Video,
                            timescale: fps * 1000,
                            language: "und".into(),
                            media_conf: mp4::MediaConfig::AvcConfig(mp4::AvcConfig {
                                width: w as u16,
                                height: h as u16,
                                seq_param_set: s.clone(),
                                pic_param_set: p.clone(),
                            }),
                        })
                        .map_err(|e| io(&e))?;
                        *writer = Some(wr);
                    }
                    let wr = writer.as_mut().expect("created above");
                    let sample = mp4::Mp4Sample {
                        start_time: *index * 1000,
                        duration: 1000,
                        rendering_offset: 0,
                        is_sync: picture.sync,
                        bytes: bytes::Bytes::from(picture.data),
                    };
                    wr.write_sample(1, &sample).map_err(|e| io(&e))?;
                    *index += 1;
                }
            }
            Sink::Fmp4 { encoder, writer, sps, pps, index } => {
                let mut pictures = Vec::with_capacity(count);
                for f in 0..count {
                    pictures.push(encode_frame(encoder, &data[f * h * w * 3..(f + 1) * h * w * 3], h, w, sps, pps, *index)?);
                    *index += 1;
                }
                if writer.is_none() && count > 0 {
                    let (Some(s), Some(p)) = (sps.as_ref(), pps.as_ref()) else {
                        return Err("H.264 encoder: the first frame carried no SPS/PPS".into());
                    };
                    let file = BufWriter::new(File::create(&temp).map_err(|e| io(&e))?);
                    let udta = udta_box(&self.metadata);
                    *writer = Some(Fragmented::start(file, w as u16, h as u16, fps, s, p, Some(&udta)).map_err(|e| io(&e))?);
                }
                if let Some(wr) = writer.as_mut() {
                    wr.append(&pictures).map_err(|e| io(&e))?;
                }
            }
        }
        self.frames_written += count;
        Ok(())
    }

    /// Finishes the file and renames it into place. `latents` go into `.safetensors` outputs.
    pub fn finish(mut self, latents: &[f32], latent_shape: &[usize]) -> Result<(), String> {
        let path = self.target.display().to_string();
        let io = |e: &dyn std::fmt::Display| format!("--output {path}: {e}");
        let (h, w, t) = (self.height, self.width, self.frames_written);
        match self.sink.take().ok_or("writer already finished")? {
            Sink::Safetensors { frames } => {
                let mut meta = self.metadata.clone();
                meta.push(("fps".into(), self.fps.to_string()));
                let bytes = serialize_with_metadata(
                    &[("frames", HostData::F32(&frames), &[t, h, w, 3]), ("latents", HostData::F32(latents), latent_shape)],
                    &meta,
                )?;
                let mut f = File::create(&self.temp).map_err(|e| io(&e))?;
                f.write_all(&bytes).map_err(|e| io(&e))?;
                f.sync_all().map_err(|e| io(&e))?;
            }
            Sink::Png { .. } => {}
            Sink::Gif { encoder } => {
                let mut file = encoder.into_inner().map_err(|e| io(&e))?;
                file.flush().map_err(|e| io(&e))?;
            }
            Sink::Fmp4 { writer, .. } => {
                let wr = writer.ok_or_else(|| format!("--output {path}: no frames were written"))?;
                let file = wr.into_inner().into_inner().map_err(|e| io(&e))?;
                file.sync_all().map_err(|e| io(&e))?;
            }
            Sink::Mp4 { writer, .. } => {
                let mut wr = writer.ok_or_else(|| format!("--output {path}: no frames were written"))?;
                wr.write_end().map_err(|e| io(&e))?;
                let mut file = wr.into_writer();
                file.flush().map_err(|e| io(&e))?;
                drop(file);
                add_mp4_metadata(&self.temp, &self.metadata).map_err(|e| io(&e))?;
            }
        }
        if self.format == Format::PngDir && self.target.is_dir() {
            // Replace an existing frames folder only now that the new one is complete.
            std::fs::remove_dir_all(&self.target).map_err(|e| io(&e))?;
        }
        std::fs::rename(&self.temp, &self.target).map_err(|e| io(&e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if !self.done {
            remove_partial(&self.temp);
        }
        PARTIAL.lock().map(|mut v| v.retain(|p| p != &self.temp)).ok();
    }
}

/// A [`VideoWriter`] on its own thread, so frames are converted and encoded (H.264: 4-6 ms
/// a 480p frame with OpenH264's SIMD, 10-18 without, BENCHMARKS.md ninth run) while the
/// device decodes the next ones, or, in LongSANA, runs the next chunk's DiT. The queue holds
/// [`QUEUE_BYTES`] worth of four-frame pushes (a 40-frame LongSANA chunk at 480p; decoders
/// that push more frames at once hold proportionally more), at least two pushes. A write error stops
/// the thread; it is reported by the next push or by `finish`, and the partial output is
/// removed as `VideoWriter` does.
pub struct BackgroundWriter {
    queue: Option<std::sync::mpsc::SyncSender<(Vec<f32>, usize)>>,
    worker: Option<std::thread::JoinHandle<(VideoWriter, Result<(), String>)>>,
}

/// Host memory the writer's queue may hold: f32 frames waiting to be encoded.
pub const QUEUE_BYTES: usize = 192 << 20;

/// Pushes the queue holds: the decoders push one latent frame's worth (four video frames)
/// at a time, so [`QUEUE_BYTES`] over four f32 RGB frames, between 2 and 64.
fn queue_pushes(height: usize, width: usize) -> usize {
    let push = 4 * height.max(1) * width.max(1) * 3 * std::mem::size_of::<f32>();
    (QUEUE_BYTES / push).clamp(2, 64)
}

impl BackgroundWriter {
    pub fn start(writer: VideoWriter) -> Result<Self, String> {
        let (queue, rx) = std::sync::mpsc::sync_channel::<(Vec<f32>, usize)>(queue_pushes(writer.height, writer.width));
        let worker = std::thread::Builder::new()
            .name("video-writer".into())
            .spawn(move || {
                let mut writer = writer;
                for (data, count) in rx {
                    if let Err(e) = writer.push(&data, count) {
                        return (writer, Err(e));
                    }
                }
                (writer, Ok(()))
            })
            .map_err(|e| format!("cannot start the video writer thread: {e}"))?;
        Ok(BackgroundWriter { queue: Some(queue), worker: Some(worker) })
    }

    /// Queues `count` frames (`[count, H, W, 3]` in [0, 1]); waits while the queue is full.
    pub fn push(&mut self, data: Vec<f32>, count: usize) -> Result<(), String> {
        let queue = self.queue.as_ref().ok_or("writer already finished")?;
        if queue.send((data, count)).is_err() {
            // The thread stopped on an error: that error is the answer.
            return Err(self.join().err().unwrap_or_else(|| "the video writer stopped".into()));
        }
        Ok(())
    }

    fn join(&mut self) -> Result<VideoWriter, String> {
        drop(self.queue.take());
        let worker = self.worker.take().ok_or("writer already finished")?;
        match worker.join() {
            Ok((writer, Ok(()))) => Ok(writer),
            Ok((_writer, Err(e))) => Err(e),
            Err(_) => Err("the video writer thread panicked".into()),
        }
    }

    /// Waits for every queued frame, then finishes the file (atomically, see
    /// [`VideoWriter::finish`]).
    pub fn finish(mut self, latents: &[f32], latent_shape: &[usize]) -> Result<(), String> {
        self.join()?.finish(latents, latent_shape)
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        // Unfinished: let the thread stop, then its VideoWriter drops and removes the file.
        drop(self.queue.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

pub fn remove_partial(p: &Path) {
    if p.is_dir() {
        let _ = std::fs::remove_dir_all(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}

fn h264_encoder(fps: u32) -> Result<Box<openh264::encoder::Encoder>, String> {
    let api = openh264::OpenH264API::from_source();
    let config = openh264::encoder::EncoderConfig::new()
        .max_frame_rate(openh264::encoder::FrameRate::from_hz(fps as f32))
        .rate_control_mode(openh264::encoder::RateControlMode::Off)
        // Constant quality (rate control off, QP capped at 22: ~CRF 20), and never
        // drop frames to meet a bitrate: every generated frame is kept.
        .skip_frames(false)
        .qp(openh264::encoder::QpRange::new(0, 22))
        .intra_frame_period(openh264::encoder::IntraFramePeriod::from_num_frames(fps.max(1) * 2));
    let encoder = openh264::encoder::Encoder::with_api_config(api, config).map_err(|e| format!("H.264 encoder: {e}"))?;
    Ok(Box::new(encoder))
}

/// Encodes one RGB frame ([H, W, 3] in [0, 1]) into an AVCC sample; SPS and PPS, which the
/// container carries out of band, are kept aside.
fn encode_frame(
    encoder: &mut openh264::encoder::Encoder,
    rgb: &[f32],
    h: usize,
    w: usize,
    sps: &mut Option<Vec<u8>>,
    pps: &mut Option<Vec<u8>>,
    index: u64,
) -> Result<Sample, String> {
    let rgb: Vec<u8> = rgb.iter().map(|&v| to_u8(v)).collect();
    let yuv = openh264::formats::YUVBuffer::from_rgb8_source(openh264::formats::RgbSliceU8::new(&rgb, (w, h)));
    let bs = encoder.encode(&yuv).map_err(|e| format!("H.264 encoder: {e}"))?;
    let mut data = Vec::new();
    let mut sync = false;
    for l in 0..bs.num_layers() {
        let Some(layer) = bs.layer(l) else { continue };
        for n in 0..layer.nal_count() {
            let Some(nal) = layer.nal_unit(n) else { continue };
            let body = strip_start_code(nal);
            let Some(&head) = body.first() else { continue };
            match head & 0x1f {
                7 => *sps = Some(body.to_vec()),
                8 => *pps = Some(body.to_vec()),
                t => {
                    sync |= t == 5;
                    data.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    data.extend_from_slice(body);
                }
            }
        }
    }
    if data.is_empty() {
        return Err(format!("H.264 encoder returned no picture for frame {}", index + 1));
    }
    Ok(Sample { data, sync })
}

fn strip_start_code(nal: &[u8]) -> &[u8] {
    if nal.starts_with(&[0, 0, 0, 1]) {
        &nal[4..]
    } else if nal.starts_with(&[0, 0, 1]) {
        &nal[3..]
    } else {
        nal
    }
}

/// safetensors bytes with a `__metadata__` map (prompt, seed, settings).
fn serialize_with_metadata(tensors: &[(&str, HostData<'_>, &[usize])], meta: &[(String, String)]) -> Result<Vec<u8>, String> {
    let plain = serialize(tensors).map_err(|e| e.to_string())?;
    // Re-write the header with the metadata added (the data section is unchanged).
    let n = u64::from_le_bytes(plain[..8].try_into().map_err(|_| "bad header")?) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&plain[8..8 + n]).map_err(|e| e.to_string())?;
    let m: serde_json::Map<String, serde_json::Value> = meta.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    header["__metadata__"] = serde_json::Value::Object(m);
    let mut text = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + plain.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&plain[8 + n..]);
    Ok(out)
}


/// iTunes-style tags (`moov/udta/meta/ilst`: `©cmt` with the settings, `©too` with the
/// software), which ffprobe and players show. The `mp4` crate writes `moov` last, so the
/// box is appended at the end of the file and `moov`'s size is patched.
fn add_mp4_metadata(path: &Path, meta: &[(String, String)]) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut pos = 0u64;
    let mut moov = None;
    while pos + 8 <= len {
        f.seek(SeekFrom::Start(pos))?;
        let mut h = [0u8; 8];
        f.read_exact(&mut h)?;
        let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
        if size < 8 {
            return Ok(()); // 64-bit or to-end sizes: leave the file as it is
        }
        if &h[4..8] == b"moov" {
            moov = Some((pos, size));
        }
        pos += size;
    }
    let Some((at, size)) = moov.filter(|(at, size)| at + size == len) else { return Ok(()) };
    let udta = udta_box(meta);
    let new_size = size + udta.len() as u64;
    if new_size > u32::MAX as u64 {
        return Ok(());
    }
    f.seek(SeekFrom::End(0))?;
    f.write_all(&udta)?;
    f.seek(SeekFrom::Start(at))?;
    f.write_all(&(new_size as u32).to_be_bytes())?;
    f.sync_all()
}

/// `udta/meta/ilst` with `©cmt` (the settings) and `©too` (the software).
fn udta_box(meta: &[(String, String)]) -> Vec<u8> {
    let item = |kind: &[u8; 4], text: &str| {
        let mut data = vec![0, 0, 0, 1, 0, 0, 0, 0];
        data.extend_from_slice(text.as_bytes());
        mp4_box(kind, &mp4_box(b"data", &data))
    };
    let comment: Vec<String> = meta.iter().filter(|(k, _)| k != "software").map(|(k, v)| format!("{k}: {v}")).collect();
    let software = meta.iter().find(|(k, _)| k == "software").map(|(_, v)| v.as_str()).unwrap_or("sana-video");
    let mut ilst = item(&[0xA9, b'c', b'm', b't'], &comment.join("\n"));
    ilst.extend(item(&[0xA9, b't', b'o', b'o'], software));
    let mut hdlr = vec![0u8; 8];
    hdlr.extend_from_slice(b"mdir");
    hdlr.extend_from_slice(b"appl");
    hdlr.extend_from_slice(&[0u8; 9]);
    let mut meta_body = vec![0u8; 4];
    meta_body.extend(mp4_box(b"hdlr", &hdlr));
    meta_body.extend(mp4_box(b"ilst", &ilst));
    mp4_box(b"udta", &mp4_box(b"meta", &meta_body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn writer_queue_holds_a_longsana_chunk_at_480p_and_is_bounded() {
        // A 40-frame chunk (ten pushes of four frames) at 832x480; 2..=64 at the extremes.
        assert_eq!(super::queue_pushes(480, 832), 10);
        assert_eq!(super::queue_pushes(4320, 7680), 2);
        assert_eq!(super::queue_pushes(16, 16), 64);
    }
}
