// Plays an MP4 written by `sana-video generate` in headless Chromium (Debian's, through
// playwright-core) and checks what a browser sees: no media error, the expected size and
// duration, and playback advancing through decoded frames.
//
//   node tests/browser/mp4_playback.mjs CLIP.mp4 WIDTH HEIGHT FRAMES FPS
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [clip, width, height, frames, fps] = process.argv.slice(2);
if (!clip || !fps) {
  console.error('usage: mp4_playback.mjs CLIP.mp4 WIDTH HEIGHT FRAMES FPS');
  process.exit(2);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-mp4-'));
fs.copyFileSync(clip, path.join(dir, 'clip.mp4'));
fs.writeFileSync(path.join(dir, 'index.html'), `<!doctype html><video id="v" src="clip.mp4" muted playsinline></video>
<script>
window.result = new Promise((resolve) => {
  const v = document.getElementById('v');
  let presented = 0;
  const fail = (why) => resolve({ error: why });
  v.onerror = () => fail('media error ' + (v.error && v.error.code) + ' ' + (v.error && v.error.message));
  v.onloadedmetadata = () => {
    const tick = (now, meta) => { presented = meta.presentedFrames; v.requestVideoFrameCallback(tick); };
    v.requestVideoFrameCallback(tick);
    v.play().catch((e) => fail('play() rejected: ' + e));
  };
  v.onended = () => resolve({ width: v.videoWidth, height: v.videoHeight, duration: v.duration, presented, currentTime: v.currentTime });
  setTimeout(() => fail('timeout: presented ' + presented + ' frames, readyState ' + v.readyState), 60000);
});
</script>`);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic', '--autoplay-policy=no-user-gesture-required', '--allow-file-access-from-files'],
});
let code = 1;
try {
  const page = await browser.newPage();
  await page.goto('file://' + path.join(dir, 'index.html'));
  const r = await page.evaluate(() => window.result);
  console.log('chromium:', JSON.stringify(r));
  const want = { width: +width, height: +height, duration: frames / fps };
  const ok = !r.error && r.width === want.width && r.height === want.height && Math.abs(r.duration - want.duration) < 1.5 / fps
    && r.presented >= Math.min(2, frames);
  if (!ok) console.error(`expected ${JSON.stringify(want)} and playback; got ${JSON.stringify(r)}`);
  code = ok ? 0 : 1;
} finally {
  await browser.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
