// The browser demo (web/dist, built by scripts/build-web.sh) in Debian's headless Chromium:
// WebGPU on SwiftShader, driven by playwright-core through the page's stable element ids.
//
//   node tests/browser/web_demo.mjs --dist web/dist --native NATIVE.safetensors \
//        --prompt P --seed S --frames F --steps N --size HxW [--artifacts DIR] [--screenshot FILE]
//        [--local-folder builtin-model]
//
// NATIVE.safetensors is `sana-video generate` output for the same prompt and settings (its
// `frames` tensor, f32 [T, H, W, 3]). Checks, in order:
//  1. without --enable-unsafe-webgpu the page says WebGPU has no adapter (data-state="error");
//  2. a typed prompt generates a clip: data-state="done", the <video> plays with the right
//     size and duration, the Download link holds the file;
//  3. the browser's first frame matches the native CLI's (raw frames, and the decoded video);
//  4. a failed weight fetch (a model URL that does not exist) is reported by name; a local
//     folder (--local-folder DIR, picked through the folder input) loads;
//  5. Cancel stops a long run between steps (data-state="cancelled") and the page recovers.
// Screenshots of each state go to --artifacts.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { serve } from './serve.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
for (const k of ['dist', 'native', 'prompt', 'seed', 'frames', 'steps', 'size']) {
  if (!args[k]) { console.error(`web_demo: --${k} is required`); process.exit(2); }
}
const artifacts = args.artifacts || 'target/browser-artifacts';
fs.mkdirSync(artifacts, { recursive: true });
const [H, W] = args.size.split('x').map(Number);
const FRAMES = Number(args.frames);

const FLAGS = ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-quic', '--autoplay-policy=no-user-gesture-required'];
const launch = (webgpu) => chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: webgpu ? [...FLAGS, '--enable-unsafe-webgpu'] : FLAGS });

let failures = 0;
const check = (ok, what) => { console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`); if (!ok) failures++; };
// Waits for the page to leave running/loading, printing its status every minute (software
// WebGPU is slow; a silent wait tells nothing when it times out).
async function settled(page, timeout) {
  const ticker = setInterval(() => page.textContent('#status').then((t) => console.log(`     ... ${t}`)).catch(() => {}), 60000);
  try {
    await page.waitForFunction(() => !['running', 'loading'].includes(document.getElementById('status').dataset.state), null, { timeout });
  } finally {
    clearInterval(ticker);
  }
}
const state = (page) => page.getAttribute('#status', 'data-state');

function readNativeFrames(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString());
  const t = header.frames;
  if (!t || t.dtype !== 'F32') throw new Error(`${file}: no f32 tensor "frames"`);
  const [a, b] = t.data_offsets;
  const bytes = buf.subarray(8 + n + a, 8 + n + b);
  return { data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)), shape: t.shape };
}

function psnr(a, b) {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10(1 / mse);
}

const { server, url } = await serve(args.dist);
const consoleLines = [];
const watch = (page) => {
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
};
try {
  // 1. No WebGPU.
  {
    const browser = await launch(false);
    const page = await browser.newPage();
    watch(page);
    await page.goto(url);
    await settled(page, 60000);
    const text = await page.textContent('#status');
    check((await state(page)) === 'error' && /WebGPU/.test(text) && /adapter/.test(text), `no WebGPU: the page says so ("${text.slice(0, 90)}…")`);
    await page.screenshot({ path: path.join(artifacts, 'no-webgpu.png') });
    await browser.close();
  }

  const browser = await launch(true);
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  watch(page);
  await page.goto(url);
  await settled(page, 300000);
  check((await state(page)) === 'idle', `engine and built-in model load (${await page.textContent('#status')})`);
  console.log(`     ${await page.textContent('#adapter')}`);

  // 2. Generate from a typed prompt.
  await page.fill('#prompt', '');
  await page.type('#prompt', args.prompt);
  await page.fill('#seed', args.seed);
  await page.fill('#frames', args.frames);
  await page.fill('#steps', args.steps);
  await page.selectOption('#size', `${H}x${W}`);
  const t0 = Date.now();
  await page.click('#generate');
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'running', null, { timeout: 10000 });
  check(await page.isEnabled('#cancel'), 'Cancel is enabled while running');
  await settled(page, 1800000);
  const seconds = (Date.now() - t0) / 1000;
  const st = await state(page);
  check(st === 'done', `generation finishes (data-state="${st}": ${await page.textContent('#status')}) in ${seconds.toFixed(1)} s`);
  if (st !== 'done') throw new Error('generation failed; stopping');
  const video = await page.evaluate(async () => {
    const v = document.getElementById('video');
    if (v.readyState < 1) await new Promise((r) => v.addEventListener('loadedmetadata', r, { once: true }));
    return { duration: v.duration, width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.message, src: v.src };
  });
  check(!video.error && video.width === W && video.height === H, `video is ${video.width}x${video.height} (want ${W}x${H})`);
  check(Math.abs(video.duration - FRAMES / 16) < 1 / 32, `video lasts ${video.duration} s (want ${FRAMES}/16 = ${FRAMES / 16})`);
  const dl = await page.evaluate(async () => {
    const a = document.getElementById('download');
    const blob = await (await fetch(a.href)).blob();
    return { hidden: a.hidden, name: a.download, size: blob.size, type: blob.type, same: a.href === document.getElementById('video').src };
  });
  check(!dl.hidden && /^sana-video-.*\.(mp4|webm)$/.test(dl.name) && dl.size > 0 && dl.same, `Download offers ${dl.name} (${dl.size} bytes, ${dl.type})`);
  await page.screenshot({ path: path.join(artifacts, 'done.png') });
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  const stats = await page.evaluate(() => ({ seconds: window.sanaDemo.result.seconds, perStep: window.sanaDemo.result.secondsPerStep, codec: window.sanaDemo.result.codec }));
  console.log(`     browser: ${stats.seconds.toFixed(1)} s in the page, ${stats.perStep ? stats.perStep.toFixed(2) : '?'} s per denoising step, ${stats.codec}`);

  // 3. First frame against the native CLI's.
  const native = readNativeFrames(args.native);
  check(native.shape.join() === [FRAMES, H, W, 3].join(), `native frames are [${native.shape}]`);
  const n = H * W * 3;
  const first = await page.evaluate((n) => Array.from(window.sanaDemo.result.frames.subarray(0, n)), n);
  const ref = native.data.subarray(0, n);
  const raw = psnr(first, ref);
  let maxDiff = 0;
  for (let i = 0; i < n; i++) maxDiff = Math.max(maxDiff, Math.abs(first[i] - ref[i]));
  check(raw >= 50, `first frame, engine output: ${raw.toFixed(1)} dB PSNR vs native (max |diff| ${maxDiff.toExponential(2)}; need >= 50 dB)`);
  const decoded = await page.evaluate(async ({ H, W }) => {
    const v = document.getElementById('video');
    v.pause();
    await new Promise((r) => { v.addEventListener('seeked', r, { once: true }); v.currentTime = 0; });
    await new Promise((r) => v.requestVideoFrameCallback ? (v.requestVideoFrameCallback(() => r()), setTimeout(r, 500)) : r());
    const c = document.createElement('canvas');
    c.width = W; c.height = H;
    const ctx = c.getContext('2d');
    ctx.drawImage(v, 0, 0, W, H);
    const px = ctx.getImageData(0, 0, W, H).data;
    const out = [];
    for (let i = 0; i < W * H; i++) out.push(px[4 * i] / 255, px[4 * i + 1] / 255, px[4 * i + 2] / 255);
    return out;
  }, { H, W });
  const enc = psnr(decoded, ref);
  check(enc >= 30, `first frame, decoded from the ${stats.codec} video: ${enc.toFixed(1)} dB PSNR vs native (need >= 30 dB)`);

  // 4. A failed weight fetch is named; then back to the built-in model.
  await page.click('#model-picker summary');
  await page.fill('#model-url', `${url}no-such-model`);
  await page.click('#model-load');
  await settled(page, 60000);
  const fetchErr = await page.textContent('#status');
  check((await state(page)) === 'error' && fetchErr.includes('no-such-model/model_index.json'), `failed fetch is named ("${fetchErr.slice(0, 100)}")`);
  await page.screenshot({ path: path.join(artifacts, 'fetch-error.png') });
  // A local diffusers folder (the built-in model's, picked as a folder): read in parts from
  // its File objects.
  if (args['local-folder']) {
    await page.setInputFiles('#model-folder', args['local-folder']);
    await settled(page, 120000);
    const st = await page.textContent('#status');
    check((await state(page)) === 'idle' && st.includes('"local"'), `a local folder loads ("${st.slice(0, 80)}")`);
  }
  await page.click('#model-builtin');
  await settled(page, 120000);
  check((await state(page)) === 'idle', 'the built-in model loads again (from the Cache API)');

  // 5. Cancel a long run between steps (loading a model resets the form to its defaults:
  // keep the small size so a step stays short).
  await page.fill('#frames', args.frames);
  await page.selectOption('#size', `${H}x${W}`);
  await page.fill('#steps', '200');
  await page.click('#generate');
  await page.waitForFunction(() => Number(document.getElementById('status').dataset.step || 0) >= 1, null, { timeout: 600000 });
  const tc = Date.now();
  await page.click('#cancel');
  await settled(page, 120000);
  const cs = await state(page);
  check(cs === 'cancelled', `Cancel stops the run (data-state="${cs}") after ${((Date.now() - tc) / 1000).toFixed(1)} s`);
  check(await page.isEnabled('#generate') && await page.isHidden('#download'), 'after Cancel: Generate is enabled, no download offered');
  await page.screenshot({ path: path.join(artifacts, 'cancelled.png') });
  await browser.close();
} catch (e) {
  failures++;
  console.error(`FAIL ${e.stack || e}`);
} finally {
  server.close();
  fs.writeFileSync(path.join(artifacts, 'console.log'), consoleLines.join('\n'));
}
if (failures) {
  console.error(`web_demo: ${failures} check(s) failed; page console in ${artifacts}/console.log`);
  process.exit(1);
}
console.log('web_demo: all checks passed');
