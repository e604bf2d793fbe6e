// The engine's thread: loads the wasm module and the model files, opens the WebGPU device
// through burn, and runs the same pipeline as the CLI. The page stays responsive because
// everything heavy happens here; the pipeline yields (`pause`) before each step and decoded
// chunk, which is when a Cancel message gets through.
//
// Messages in:  {type: 'init', limits, model}, {type: 'load', model}, {type: 'generate', request},
//               {type: 'cancel'}
// Messages out: {type: 'ready', version, modelDir, defaults}, {type: 'download', done, total, file},
//               {type: 'stage', name, units}, {type: 'advance', done}, {type: 'warn', message},
//               {type: 'frames', data, count, height, width}, {type: 'done', summary},
//               {type: 'cancelled'}, {type: 'error', message, fatal}
import init, * as sana from './pkg/sana_video_web.js';

const CACHE = 'sana-video-models-v2';
let limits = { maxBufferSize: 0, maxStorageBufferBindingSize: 0 };
let modelDir = null;
let cancelFlag = false;
let busy = false;

const post = (m, transfer) => self.postMessage(m, transfer || []);
// A macrotask, so queued messages (Cancel) are handled before the next step.
const yieldToEventLoop = () => new Promise((resolve) => setTimeout(resolve, 0));

function failure(e) {
  const panic = sana.lastPanic && sana.lastPanic();
  if (panic) return { message: `The engine stopped on an internal error: ${panic}. Reload the page to try again.`, fatal: true };
  const text = typeof e === 'string' ? e : (e && e.message) || String(e);
  if (/device.*lost|Device lost|out of memory|OutOfMemory/i.test(text)) {
    return { message: `The GPU device was lost or ran out of memory: ${text}. Try fewer frames, fewer steps or a smaller size, then reload.`, fatal: true };
  }
  return { message: text, fatal: false };
}

// A file of a model as a Blob, through the Cache API (kept for the next visit). The response
// streams into the cache and the Blob read back from it is disk-backed, so a large file
// never has to fit in memory; its size is checked against the manifest.
async function cachedBlob(url, size, version) {
  const key = version ? `${url}?v=${version}` : url;
  let cache = null;
  try { cache = self.caches ? await caches.open(CACHE) : null; } catch { cache = null; } // not a secure context
  let hit = cache ? await cache.match(key) : undefined;
  if (!hit) {
    let resp;
    try {
      resp = await fetch(url);
    } catch (e) {
      throw new Error(`could not fetch ${url}: ${e.message || e} (is the site or the network down?)`);
    }
    if (!resp.ok) throw new Error(`could not fetch ${url}: HTTP ${resp.status} ${resp.statusText}`);
    if (cache) {
      try {
        await cache.put(key, resp);
        hit = await cache.match(key);
      } catch (e) {
        throw new Error(`could not download ${url}: ${e.message || e}`);
      }
    } else {
      hit = resp;
    }
  }
  const blob = await hit.blob();
  if (size != null && blob.size !== size) {
    if (cache) await cache.delete(key);
    throw new Error(`${url}: got ${blob.size} bytes, expected ${size} (truncated download?)`);
  }
  return blob;
}

// Hands the model's Blobs to the engine, which reads them in parts (headers, then tensor by
// tensor) with FileReaderSync: weights go to the GPU without a whole-file copy in wasm memory.
function setFiles(dir, blobs) {
  const reader = new FileReaderSync();
  const byPath = new Map(blobs.map(([path, blob]) => [`${dir}/${path}`, blob]));
  sana.setFiles(JSON.stringify([...byPath].map(([p, b]) => [p, b.size])),
    (path, start, len) => new Uint8Array(reader.readAsArrayBuffer(byPath.get(path).slice(start, start + len))));
}

// Files of a model: the site's manifest (written by scripts/build-web.sh), or the standard
// diffusers file names under a URL.
async function manifestFor(base) {
  try {
    const r = await fetch(`${base}/manifest.json`);
    if (r.ok) return await r.json();
  } catch { /* fall through */ }
  const index = await fetch(`${base}/model_index.json`).catch((e) => { throw new Error(`could not fetch ${base}/model_index.json: ${e.message || e}`); });
  if (!index.ok) throw new Error(`${base}/model_index.json: HTTP ${index.status}; a model URL must point at a diffusers folder`);
  const files = [{ path: 'model_index.json' }];
  const names = {
    transformer: ['config.json', 'diffusion_pytorch_model.safetensors'],
    vae: ['config.json', 'diffusion_pytorch_model.safetensors'],
    text_encoder: ['config.json', 'model.safetensors'],
    tokenizer: ['tokenizer.json', 'tokenizer_config.json'],
    scheduler: ['scheduler_config.json'],
  };
  for (const [dir, list] of Object.entries(names)) for (const f of list) files.push({ path: `${dir}/${f}` });
  return { version: null, files };
}

async function loadModel(model) {
  modelDir = null;
  let blobs;
  let dir;
  if (model.kind === 'files') {
    // A local diffusers folder picked by the visitor: [{path, file}], paths inside it;
    // File objects are disk-backed Blobs, read in parts like the rest.
    blobs = model.files.map(({ path, file }) => [path, file]);
    dir = 'local';
  } else {
    const base = model.kind === 'url' ? model.url.replace(/\/+$/, '') : new URL('models/builtin', self.location.href.replace(/[^/]*$/, '')).href;
    const manifest = await manifestFor(base);
    const total = manifest.files.reduce((s, f) => s + (f.size || 0), 0);
    let done = 0;
    blobs = [];
    for (const f of manifest.files) {
      post({ type: 'download', done, total, file: f.path });
      const blob = await cachedBlob(`${base}/${f.path}`, f.size, manifest.version);
      done += blob.size;
      blobs.push([f.path, blob]);
    }
    post({ type: 'download', done, total, file: '' });
    dir = model.kind === 'url' ? 'remote' : 'builtin';
  }
  setFiles(dir, blobs);
  const defaults = JSON.parse(sana.modelDefaults(dir));
  modelDir = dir;
  return defaults;
}

self.onmessage = async (e) => {
  const m = e.data;
  if (m.type === 'cancel') { cancelFlag = true; return; }
  if (busy) { post({ type: 'error', message: 'the engine is busy; wait for the current run or cancel it', fatal: false }); return; }
  busy = true;
  try {
    if (m.type === 'init') {
      limits = m.limits;
      await init();
      await sana.initDevice();
      const defaults = await loadModel(m.model);
      post({ type: 'ready', version: sana.engineVersion(), modelDir, defaults });
    } else if (m.type === 'load') {
      const defaults = await loadModel(m.model);
      post({ type: 'ready', version: sana.engineVersion(), modelDir, defaults });
    } else if (m.type === 'generate') {
      if (!modelDir) throw new Error('no model is loaded (the last load failed): load the built-in model or another one first');
      cancelFlag = false;
      const callbacks = {
        stage: (name, units) => post({ type: 'stage', name, units }),
        advance: (done) => post({ type: 'advance', done }),
        warn: (message) => post({ type: 'warn', message }),
        frames: (data, count, height, width) => post({ type: 'frames', data, count, height, width }, [data.buffer]),
        cancelled: () => cancelFlag,
        pause: yieldToEventLoop,
      };
      const summary = await sana.generate(modelDir, JSON.stringify(m.request), callbacks, limits.maxBufferSize, limits.maxStorageBufferBindingSize);
      post({ type: 'done', summary: JSON.parse(summary) });
    }
  } catch (err) {
    if (err === 'cancelled') post({ type: 'cancelled' });
    else post({ type: 'error', ...failure(err) });
  } finally {
    busy = false;
  }
};
