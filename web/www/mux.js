// Containers for the video the page encodes with WebCodecs: MP4 (ISO BMFF) for H.264 and
// WebM (Matroska) for VP9/VP8. Both write the whole file at once (a few seconds of video),
// with the duration in the header so <video> knows it before playing.

const enc = new TextEncoder();

function concat(parts) {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function u8(...v) { return new Uint8Array(v); }
function u16(v) { return u8((v >>> 8) & 255, v & 255); }
function u32(v) { return u8((v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255); }
function zeros(n) { return new Uint8Array(n); }

// ---- MP4 ---------------------------------------------------------------------------------

function box(type, ...payload) {
  const body = concat(payload);
  return concat([u32(body.length + 8), enc.encode(type), body]);
}
function fullBox(type, version, flags, ...payload) {
  return box(type, u8(version, (flags >>> 16) & 255, (flags >>> 8) & 255, flags & 255), ...payload);
}
const MATRIX = concat([u32(0x00010000), u32(0), u32(0), u32(0), u32(0x00010000), u32(0), u32(0), u32(0), u32(0x40000000)]);

/**
 * H.264 samples (AVC format: length-prefixed NAL units, as WebCodecs' `avc: {format: 'avc'}`
 * gives them) into a progressive MP4 with the index before the data (plays while loading).
 * `samples`: [{data: Uint8Array, key: bool}], `avcC`: the decoder configuration record.
 */
export function muxMp4({ samples, avcC, width, height, fps }) {
  const n = samples.length;
  const movieScale = 1000;
  const movieDuration = Math.round((n * movieScale) / fps);
  // Media timescale: one tick per frame at integer rates, else milliseconds.
  const [mediaScale, delta] = Number.isInteger(fps) ? [fps, 1] : [Math.round(fps * 1000), 1000];
  const sync = samples.map((s, i) => (s.key ? i + 1 : 0)).filter((i) => i > 0);

  const build = (chunkOffset) => {
    const avc1 = box('avc1',
      zeros(6), u16(1), // reserved, data_reference_index
      zeros(16), u16(width), u16(height), u32(0x00480000), u32(0x00480000), u32(0), u16(1),
      zeros(32), u16(0x0018), u16(0xffff),
      box('avcC', avcC));
    const stbl = box('stbl',
      fullBox('stsd', 0, 0, u32(1), avc1),
      fullBox('stts', 0, 0, u32(1), u32(n), u32(delta)),
      fullBox('stss', 0, 0, u32(sync.length), ...sync.map(u32)),
      fullBox('stsc', 0, 0, u32(1), u32(1), u32(n), u32(1)),
      fullBox('stsz', 0, 0, u32(0), u32(n), ...samples.map((s) => u32(s.data.length))),
      fullBox('stco', 0, 0, u32(1), u32(chunkOffset)));
    const minf = box('minf',
      fullBox('vmhd', 0, 1, zeros(8)),
      box('dinf', fullBox('dref', 0, 0, u32(1), fullBox('url ', 0, 1))),
      stbl);
    const mdia = box('mdia',
      fullBox('mdhd', 0, 0, u32(0), u32(0), u32(mediaScale), u32(n * delta), u16(0x55c4), u16(0)),
      fullBox('hdlr', 0, 0, u32(0), enc.encode('vide'), zeros(12), enc.encode('SANA-Video\0')),
      minf);
    const tkhd = fullBox('tkhd', 0, 3, u32(0), u32(0), u32(1), u32(0), u32(movieDuration), zeros(8),
      u16(0), u16(0), u16(0), u16(0), MATRIX, u32(width << 16), u32(height << 16));
    const mvhd = fullBox('mvhd', 0, 0, u32(0), u32(0), u32(movieScale), u32(movieDuration), u32(0x00010000), u16(0x0100),
      zeros(10), MATRIX, zeros(24), u32(2));
    return box('moov', mvhd, box('trak', tkhd, mdia));
  };
  const ftyp = box('ftyp', enc.encode('isom'), u32(512), enc.encode('isomiso2avc1mp41'));
  const moovSize = build(0).length; // the offset does not change the size
  const payload = concat(samples.map((s) => s.data));
  const moov = build(ftyp.length + moovSize + 8);
  return concat([ftyp, moov, u32(payload.length + 8), enc.encode('mdat'), payload]);
}

// ---- WebM --------------------------------------------------------------------------------

function idBytes(id) {
  const out = [];
  for (let v = id; v > 0; v = Math.floor(v / 256)) out.unshift(v & 255);
  return new Uint8Array(out);
}
function sizeVint(n) { // 8-byte EBML size: simple and always large enough
  const b = new Uint8Array(8);
  b[0] = 0x01;
  let v = n;
  for (let i = 7; i >= 1; i--) { b[i] = v % 256; v = Math.floor(v / 256); }
  return b;
}
function el(id, ...payload) {
  const body = concat(payload.map((p) => (typeof p === 'string' ? enc.encode(p) : p)));
  return concat([idBytes(id), sizeVint(body.length), body]);
}
function uint(id, v) {
  const out = [];
  for (let x = v; x > 0 || out.length === 0; x = Math.floor(x / 256)) out.unshift(x & 255);
  return el(id, new Uint8Array(out));
}
function float64(id, v) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, v);
  return el(id, b);
}

/**
 * VP8/VP9 frames into a WebM file with its duration. `codecId`: 'V_VP8' or 'V_VP9';
 * `samples`: [{data: Uint8Array, key: bool}] at a constant `fps`.
 */
export function muxWebm({ samples, codecId, width, height, fps }) {
  const frameMs = 1000 / fps;
  const header = el(0x1a45dfa3, uint(0x4286, 1), uint(0x42f7, 1), uint(0x42f2, 4), uint(0x42f3, 8),
    el(0x4282, 'webm'), uint(0x4287, 2), uint(0x4285, 2));
  const info = el(0x1549a966, uint(0x2ad7b1, 1000000), el(0x4d80, 'sana-video'), el(0x5741, 'sana-video web demo'),
    float64(0x4489, samples.length * frameMs));
  const tracks = el(0x1654ae6b, el(0xae, uint(0xd7, 1), uint(0x73c5, 1), uint(0x83, 1), el(0x86, codecId),
    uint(0x23e383, Math.round(1e6 * frameMs)), el(0xe0, uint(0xb0, width), uint(0xba, height))));
  // Clusters of at most 30 s: block times are signed 16-bit milliseconds from the cluster.
  const clusters = [];
  for (let start = 0; start < samples.length;) {
    const t0 = Math.round(start * frameMs);
    const blocks = [];
    let i = start;
    for (; i < samples.length && Math.round(i * frameMs) - t0 < 30000; i++) {
      const rel = Math.round(i * frameMs) - t0;
      blocks.push(el(0xa3, u8(0x81, (rel >> 8) & 255, rel & 255, samples[i].key ? 0x80 : 0), samples[i].data));
    }
    clusters.push(el(0x1f43b675, uint(0xe7, t0), ...blocks));
    start = i;
  }
  return concat([header, el(0x18538067, info, tracks, ...clusters)]);
}
