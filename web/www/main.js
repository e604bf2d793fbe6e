// The page: checks WebGPU, starts the engine's worker, turns the form into a request, shows
// progress with an ETA, encodes the frames with WebCodecs into MP4 (H.264) or WebM (VP9/VP8)
// and plays them. Element ids are stable (tests and users' scripts drive them); the last
// result is also on `window.sanaDemo.result` (raw frames, RGB f32 in [0, 1]).
import { muxMp4, muxWebm } from './mux.js';

const $ = (id) => document.getElementById(id);
const FPS = 16;
const demo = { result: null, adapter: null, limits: null, version: null };
window.sanaDemo = demo;

let worker = null;
let modelChoice = { kind: 'builtin' };
let run = null; // the generation in flight

function setStatus(state, text) {
  const s = $('status');
  s.dataset.state = state;
  s.textContent = text;
}

function setBusy(busy) {
  $('generate').disabled = busy;
  $('cancel').disabled = !busy;
  for (const id of ['model-load', 'model-builtin', 'model-folder']) $(id).disabled = busy;
}

function fail(message) {
  setStatus('error', message);
  $('progress').value = 0;
  setBusy(false);
  $('generate').disabled = !worker;
  run = null;
}

const fmtTime = (s) => (s < 60 ? `${s.toFixed(s < 10 ? 1 : 0)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);
const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;

// ---- WebGPU checks --------------------------------------------------------------------------

async function checkWebGpu() {
  if (!('gpu' in navigator)) {
    throw new Error('This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or Safari, or Firefox with WebGPU enabled; the page needs a secure context (https or localhost).');
  }
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    throw new Error(`WebGPU could not be queried: ${e.message || e}`);
  }
  if (!adapter) {
    throw new Error('WebGPU is present but no GPU adapter is available (requestAdapter() returned null): WebGPU may be disabled or the GPU blocklisted. In Chrome, check chrome://gpu; on Linux, start it with --enable-unsafe-webgpu.');
  }
  const info = adapter.info || {};
  const l = adapter.limits;
  demo.adapter = { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, fallback: !!(info.isFallbackAdapter ?? adapter.isFallbackAdapter) };
  demo.limits = { maxBufferSize: l.maxBufferSize, maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup };
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' / ') || 'unnamed adapter';
  $('adapter').textContent = `WebGPU adapter: ${name}${demo.adapter.fallback ? ' (software fallback: expect slow runs)' : ''} · `
    + `max buffer ${mb(l.maxBufferSize)}, max storage binding ${mb(l.maxStorageBufferBindingSize)}, `
    + `shader-f16 ${adapter.features.has('shader-f16') ? 'yes' : 'no'} (this page computes in f32)`;
  // The built-in model's largest tensor is 2 MB in f32, and the VAE attention chunks stay
  // under 128 MiB: WebGPU's default guaranteed limits (256 MiB / 128 MiB) are enough for it.
  if (l.maxStorageBufferBindingSize < 128 * 1024 * 1024) {
    throw new Error(`This GPU allows only ${mb(l.maxStorageBufferBindingSize)} per storage binding; the engine needs 128 MiB (WebGPU's default limit).`);
  }
  if (typeof VideoEncoder === 'undefined') {
    throw new Error('This browser has WebGPU but no WebCodecs VideoEncoder, which the page uses to make the video file.');
  }
}

// ---- The worker ---------------------------------------------------------------------------

function startWorker(model) {
  if (worker) worker.terminate();
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = (e) => onMessage(e.data);
  worker.onerror = (e) => {
    e.preventDefault();
    worker.terminate();
    worker = null;
    fail(`The engine's worker failed: ${e.message || 'unknown error'} (a WebGPU device loss or out-of-memory ends up here). Reload the page to start again.`);
  };
  setBusy(true);
  $('cancel').disabled = true;
  setStatus('loading', 'Loading the engine and the model…');
  worker.postMessage({ type: 'init', limits: demo.limits, model });
}

function fillSizes(defaults) {
  const sel = $('size');
  sel.innerHTML = '';
  const base = Math.max(defaults.height, defaults.width);
  const options = base <= 256 ? [64, 96, 128, 160, 192, 256] : [Math.round(base / 2 / 32) * 32, base];
  for (const s of options) {
    const [h, w] = defaults.height === defaults.width ? [s, s] : [Math.round((defaults.height * s) / base / 32) * 32, Math.round((defaults.width * s) / base / 32) * 32];
    const o = new Option(`${w}×${h}${h === defaults.height && w === defaults.width ? ' (trained)' : ''}`, `${h}x${w}`);
    if (h === defaults.height && w === defaults.width) o.selected = true;
    sel.add(o);
  }
}

function onMessage(m) {
  switch (m.type) {
    case 'download': {
      if (m.total > 0) $('progress').value = m.done / m.total;
      setStatus('loading', m.file ? `Loading model: ${m.file} (${mb(m.done)} of ${mb(m.total)})` : 'Model loaded');
      break;
    }
    case 'ready': {
      demo.version = m.version;
      fillSizes(m.defaults);
      $('frames').value = m.defaults.frames;
      $('steps').value = m.defaults.steps;
      $('cfg').value = m.defaults.cfg_scale;
      $('negative-prompt').placeholder = m.defaults.negative_prompt ? '(the official negative prompt)' : '(empty: the model\'s default)';
      $('progress').value = 0;
      setBusy(false);
      setStatus('idle', `Ready: engine ${m.version}, model "${m.modelDir}". Type a prompt and press Generate.`);
      break;
    }
    case 'stage': {
      if (!run) break;
      run.stage = m.name;
      run.units = m.units;
      run.stageStart = performance.now();
      if (m.name === 'denoise') run.steps = m.units;
      updateProgress(0);
      break;
    }
    case 'advance': {
      if (!run) break;
      if (run.stage === 'denoise') run.stepTimes.push(performance.now());
      updateProgress(m.done);
      break;
    }
    case 'warn':
      $('details').textContent += `warning: ${m.message}\n`;
      break;
    case 'frames': {
      if (!run) break;
      run.frames.push(m);
      showPreview(m);
      break;
    }
    case 'done':
      finish(m.summary).catch((e) => fail(`Encoding the video failed: ${e.message || e}`));
      break;
    case 'cancelled':
      clearTimeout(run && run.cancelTimer);
      run = null;
      setBusy(false);
      $('progress').value = 0;
      setStatus('cancelled', 'Cancelled.');
      break;
    case 'error':
      clearTimeout(run && run.cancelTimer);
      if (m.fatal && worker) { worker.terminate(); worker = null; }
      fail(m.message);
      break;
  }
}

function updateProgress(done) {
  const r = run;
  const now = performance.now();
  const elapsed = (now - r.start) / 1000;
  let text;
  if (r.stage === 'denoise') {
    const t = r.stepTimes;
    // Per-step time from the steps so far (the first includes shader compilation); the
    // engine waits for the GPU after each step in the browser, so these are finished steps.
    const per = t.length >= 2 ? (t[t.length - 1] - t[0]) / (t.length - 1) / 1000 : t.length === 1 ? (t[0] - r.stageStart) / 1000 : null;
    const left = per != null ? per * (r.steps - done) + per * 1.5 : null; // + decode, about 1.5 steps
    text = `Denoising: step ${done} of ${r.steps}${per != null ? ` · ${per.toFixed(2)} s/step · about ${fmtTime(left)} left` : ''}`;
    $('progress').value = 0.05 + 0.85 * (done / Math.max(1, r.steps));
    $('status').dataset.step = String(done);
  } else if (r.stage === 'decode') {
    text = `Decoding frames: ${done} of ${r.units}`;
    $('progress').value = 0.9 + 0.1 * (done / Math.max(1, r.units));
  } else {
    text = `${r.stage[0].toUpperCase()}${r.stage.slice(1)}…`;
    $('progress').value = 0.02;
  }
  r.text = text;
  setStatus('running', `${text} (${fmtTime(elapsed)} so far)`);
}

// Between messages (a long decode chunk), keep the elapsed time moving.
setInterval(() => {
  if (run && run.text && $('status').dataset.state === 'running') {
    setStatus('running', `${run.text} (${fmtTime((performance.now() - run.start) / 1000)} so far)`);
  }
}, 1000);

function toRgba(data, offset, h, w) {
  const px = new Uint8ClampedArray(h * w * 4);
  for (let i = 0, j = offset; i < h * w; i++, j += 3) {
    // As the CLI and diffusers quantise: round(x * 255).
    px[4 * i] = Math.round(data[j] * 255);
    px[4 * i + 1] = Math.round(data[j + 1] * 255);
    px[4 * i + 2] = Math.round(data[j + 2] * 255);
    px[4 * i + 3] = 255;
  }
  return px;
}

function showPreview(m) {
  const c = $('preview');
  c.width = m.width;
  c.height = m.height;
  const last = (m.count - 1) * m.height * m.width * 3;
  c.getContext('2d').putImageData(new ImageData(toRgba(m.data, last, m.height, m.width), m.width, m.height), 0, 0);
  c.hidden = false;
  $('video').hidden = true;
}

async function encodeVideo(frames, count, h, w) {
  const bitrate = Math.max(2e6, h * w * FPS * 2);
  const choices = [
    { codec: 'avc1.42E01F', container: 'mp4', mime: 'video/mp4', ext: 'mp4', extra: { avc: { format: 'avc' } } },
    { codec: 'vp09.00.10.08', container: 'webm', mime: 'video/webm', ext: 'webm', codecId: 'V_VP9', extra: {} },
    { codec: 'vp8', container: 'webm', mime: 'video/webm', ext: 'webm', codecId: 'V_VP8', extra: {} },
  ];
  let choice = null;
  for (const c of choices) {
    const config = { codec: c.codec, width: w, height: h, bitrate, framerate: FPS, ...c.extra };
    try {
      if ((await VideoEncoder.isConfigSupported(config)).supported && (!window.MediaSource || MediaSource.isTypeSupported(`${c.mime}; codecs="${c.codec}"`) || document.createElement('video').canPlayType(c.mime))) {
        choice = { ...c, config };
        break;
      }
    } catch { /* try the next */ }
  }
  if (!choice) throw new Error('no WebCodecs video encoder for H.264, VP9 or VP8 in this browser');
  const samples = [];
  let description = null;
  let encodeError = null;
  const encoder = new VideoEncoder({
    output: (chunk, meta) => {
      if (meta && meta.decoderConfig && meta.decoderConfig.description) description = new Uint8Array(meta.decoderConfig.description);
      const data = new Uint8Array(chunk.byteLength);
      chunk.copyTo(data);
      samples.push({ data, key: chunk.type === 'key' });
    },
    error: (e) => { encodeError = e; },
  });
  encoder.configure(choice.config);
  const frameUs = 1e6 / FPS;
  for (let i = 0; i < count; i++) {
    const rgba = toRgba(frames, i * h * w * 3, h, w);
    const vf = new VideoFrame(rgba, { format: 'RGBA', codedWidth: w, codedHeight: h, timestamp: Math.round(i * frameUs), duration: Math.round(frameUs) });
    encoder.encode(vf, { keyFrame: i % (FPS * 2) === 0 });
    vf.close();
  }
  await encoder.flush();
  encoder.close();
  if (encodeError) throw encodeError;
  if (samples.length !== count) throw new Error(`the encoder returned ${samples.length} frames of ${count}`);
  const bytes = choice.container === 'mp4'
    ? muxMp4({ samples, avcC: description, width: w, height: h, fps: FPS })
    : muxWebm({ samples, codecId: choice.codecId, width: w, height: h, fps: FPS });
  return { blob: new Blob([bytes], { type: choice.mime }), ext: choice.ext, codec: choice.codec };
}

async function finish(summary) {
  const r = run;
  const total = r.frames.reduce((s, f) => s + f.count, 0);
  const { height, width } = r.frames[0];
  const data = new Float32Array(total * height * width * 3);
  let o = 0;
  for (const f of r.frames) { data.set(f.data, o); o += f.data.length; }
  const seconds = (performance.now() - r.start) / 1000;
  r.text = 'Encoding the video…';
  setStatus('running', r.text);
  const video = await encodeVideo(data, total, height, width);
  const url = URL.createObjectURL(video.blob);
  const v = $('video');
  if (v.src) URL.revokeObjectURL(v.src);
  v.src = url;
  v.hidden = false;
  $('preview').hidden = true;
  v.play().catch(() => {});
  const a = $('download');
  const slug = r.request.prompt.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 48) || 'video';
  a.href = url;
  a.download = `sana-video-${slug}-seed${r.request.seed}.${video.ext}`;
  a.hidden = false;
  a.textContent = `Download (${video.ext.toUpperCase()}, ${(video.blob.size / 1024).toFixed(0)} KB)`;
  const perStep = r.stepTimes.length >= 2 ? (r.stepTimes[r.stepTimes.length - 1] - r.stepTimes[0]) / (r.stepTimes.length - 1) / 1000 : null;
  demo.result = { frames: data, count: total, height, width, fps: FPS, request: r.request, summary, seconds, secondsPerStep: perStep, codec: video.codec, bytes: video.blob.size };
  $('details').textContent = `${total} frames ${width}×${height} at ${FPS} fps · ${summary.steps} steps of ${summary.sampler} · seed ${r.request.seed}\n`
    + `${fmtTime(seconds)} in all${perStep ? `, ${perStep.toFixed(2)} s per denoising step` : ''} · ${video.codec} ${(video.blob.size / 1024).toFixed(0)} KB\n`
    + `memory plan: ${summary.memory}`;
  $('progress').value = 1;
  run = null;
  setBusy(false);
  setStatus('done', `Done in ${fmtTime(seconds)}.`);
}

function generate() {
  const [h, w] = $('size').value.split('x').map(Number);
  const neg = $('negative-prompt').value;
  const request = {
    prompt: $('prompt').value,
    negative_prompt: neg.trim() === '' ? null : neg,
    seed: Number($('seed').value),
    frames: Number($('frames').value),
    steps: Number($('steps').value),
    cfg_scale: Number($('cfg').value),
    height: h,
    width: w,
  };
  for (const [k, v] of Object.entries({ seed: request.seed, frames: request.frames, steps: request.steps })) {
    if (!Number.isInteger(v) || v < 0) { fail(`${k}: expected a whole number ≥ 0, got ${$(k).value}`); return; }
  }
  if (!worker) { fail('The engine is not running (an earlier error stopped it): reload the page.'); return; }
  run = { request, start: performance.now(), stage: 'starting', units: 0, steps: request.steps, stepTimes: [], frames: [] };
  $('details').textContent = '';
  $('download').hidden = true;
  delete $('status').dataset.step;
  setBusy(true);
  setStatus('running', 'Starting…');
  worker.postMessage({ type: 'generate', request });
}

function cancel() {
  if (!run || !worker) return;
  run.text = 'Cancelling…';
  setStatus('running', run.text);
  $('cancel').disabled = true;
  worker.postMessage({ type: 'cancel' });
  // The engine checks between steps; if a step never ends (a hung GPU), restart the worker.
  // Software adapters take tens of seconds per step, so wait several steps' time first.
  const t = run.stepTimes;
  const perStep = t.length >= 2 ? (t[t.length - 1] - t[0]) / (t.length - 1) : t.length === 1 ? t[0] - run.start : 0;
  run.cancelTimer = setTimeout(() => {
    if (!run) return;
    run = null;
    startWorker(modelChoice);
    setStatus('cancelled', 'Cancelled (the engine was restarted).');
  }, Math.max(60000, 4 * perStep));
}

function loadModel(model) {
  if (!worker) { startWorker(model); modelChoice = model; return; }
  modelChoice = model;
  setBusy(true);
  $('cancel').disabled = true;
  setStatus('loading', 'Loading the model…');
  worker.postMessage({ type: 'load', model });
}

$('generate').addEventListener('click', generate);
$('cancel').addEventListener('click', cancel);
$('model-folder').addEventListener('change', (e) => {
  const list = [...e.target.files];
  if (!list.length) return;
  // webkitRelativePath is "<folder>/<path inside>"; keep the path inside the folder.
  const files = list.map((file) => ({ path: file.webkitRelativePath.split('/').slice(1).join('/'), file })).filter((f) => f.path);
  $('model-name').textContent = `local folder ${list[0].webkitRelativePath.split('/')[0]}`;
  loadModel({ kind: 'files', files });
});
$('model-load').addEventListener('click', () => {
  const url = $('model-url').value.trim();
  if (!url) { fail('URL: type the address of a diffusers SANA-Video folder'); return; }
  $('model-name').textContent = url;
  loadModel({ kind: 'url', url });
});
$('model-builtin').addEventListener('click', () => { $('model-name').textContent = 'built-in (18 MB)'; loadModel({ kind: 'builtin' }); });

checkWebGpu().then(() => startWorker(modelChoice)).catch((e) => {
  $('adapter').textContent = 'WebGPU: not available';
  fail(e.message || String(e));
});
