// Shared set-up of the browser tests: the GStreamer RTSP test camera, the real `panoptes
// serve` binary (its private PostgreSQL cluster), headless Chromium, and in-page WHEP
// helpers. Each test file runs in its own process, so the state below is per file.
//
// Environment: PANOPTES_BIN (the binary), CHROMIUM (default /usr/bin/chromium),
// KEEP_TEST_DIR (keep the logs and data), PANOPTES_TEST_LOG (Panoptes' log filter, e.g.
// `info,panoptes_api::live=debug`).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.PANOPTES_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const PASSWORD = 'correct horse battery staple';

/** What the set-up made: the test's data directory, Panoptes' base URL, the camera's RTSP
 * base, the browser, a context logged in as the admin, a page, the two users. */
export const env = {};
const children = [];
let panoptes = null;

/** Polls `cond` until it returns a truthy value or `limitMs` passes. */
export async function waitFor(what, limitMs, cond) {
  const end = Date.now() + limitMs;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${limitMs} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function start(cmd, args, opts, logName) {
  const log = fs.openSync(path.join(env.dir, logName), 'a');
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', opts.stdoutPipe ? 'pipe' : log, log] });
  children.push(child);
  return child;
}

async function stop(c) {
  if (c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  await new Promise((r) => {
    const t = setTimeout(() => { c.kill('SIGKILL'); r(); }, 30000);
    c.on('exit', () => { clearTimeout(t); r(); });
  });
}

function panoptesEnv() {
  const e = { ...process.env, PANOPTES_METRICS_TOKEN: 'browser-test-metrics' };
  delete e.PANOPTES_DATABASE_URL;
  delete e.PANOPTES_CONFIG;
  delete e.RUST_LOG;
  return e;
}

/** Writes Panoptes' configuration: `server` holds extra `[server]` lines (the WebRTC
 * transports), `cameras` the `[[cameras]]` tables (`${rtsp}` is the camera's base URL). */
function writeConfig({ server, cameras }) {
  const config = path.join(env.dir, 'panoptes.toml');
  fs.writeFileSync(config, `
[server]
listen = "127.0.0.1:${env.port}"
data_dir = "${env.dir}/data"
metrics_token_env = "PANOPTES_METRICS_TOKEN"
${server}

[analytics]
enabled = false
${process.env.PANOPTES_TEST_LOG ? `[log]\nfilter = "${process.env.PANOPTES_TEST_LOG}"` : ''}
${cameras(env.rtsp)}
`);
  return config;
}

/** Starts (or restarts with new `[server]` lines) Panoptes and waits until every camera
 * stream of the configuration (`streams` of them) streams. */
export async function startPanoptes({ server, cameras, streams }) {
  if (panoptes) await stop(panoptes);
  const config = writeConfig({ server, cameras });
  panoptes = start(BIN, ['serve', '--config', config], { env: panoptesEnv() }, 'panoptes.log');
  await waitFor('Panoptes to be ready', 90000, async () => (await (await fetch(`${env.base}/readyz`)).json()).ready);
  env.admin = await login('tester');
  env.viewer = await login('guest');
  await waitFor('every camera stream to stream', 30000, async () => {
    const list = await (await api(env.admin, 'GET', '/api/cameras/status')).json();
    return list.length === streams && list.every((s) => s.state === 'streaming');
  });
  if (env.context) {
    await env.context.addCookies([{ name: 'panoptes_session', value: env.admin.value, url: env.base }]);
  }
}

/** Camera, users, Panoptes (see startPanoptes) and Chromium with a page on Panoptes. */
export async function setUp(options) {
  assert.ok(BIN && fs.existsSync(BIN), `PANOPTES_BIN must name the panoptes binary (got ${BIN})`);
  env.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'panoptes-browser-'));
  fs.chmodSync(env.dir, 0o755); // the private cluster runs as the postgres user

  const cam = start('/usr/bin/python3', [path.join(REPO, 'scripts/test-camera.py'), '--port', '0', '--bind', '127.0.0.1'],
    { env: process.env, stdoutPipe: true }, 'camera.log');
  env.rtsp = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('test camera did not start')), 30000);
    readline.createInterface({ input: cam.stdout }).on('line', (l) => {
      if (l.startsWith('READY ')) {
        clearTimeout(timer);
        resolve(l.slice(6).trim());
      }
    });
    cam.on('exit', (c) => reject(new Error(`test camera exited ${c}`)));
  });

  env.port = await freePort();
  env.base = `http://127.0.0.1:${env.port}`;
  const config = writeConfig(options);
  for (const [name, role] of [['tester', 'admin'], ['guest', 'viewer']]) {
    const r = spawnSync(BIN, ['user', 'add', name, '--role', role, '--config', config], {
      input: `${PASSWORD}\n`, env: panoptesEnv(), encoding: 'utf8', timeout: 120000,
    });
    assert.equal(r.status, 0, `user add ${name}: ${r.stderr}`);
  }
  await startPanoptes(options);

  env.browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
      '--use-fake-ui-for-media-stream',
    ],
  });
  env.context = await env.browser.newContext();
  await env.context.grantPermissions(['camera', 'microphone'], { origin: env.base });
  await env.context.addCookies([{ name: 'panoptes_session', value: env.admin.value, url: env.base }]);
  env.page = await env.context.newPage();
  await env.page.goto(`${env.base}/healthz`);
}

export async function tearDown() {
  await env.browser?.close().catch(() => {});
  for (const c of children.reverse()) await stop(c);
  if (process.env.KEEP_TEST_DIR) console.log(`kept ${env.dir}`);
  else if (env.dir) fs.rmSync(env.dir, { recursive: true, force: true });
}

export async function login(name) {
  const r = await fetch(`${env.base}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, password: PASSWORD }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, `login ${name}: ${text}`);
  const cookie = r.headers.get('set-cookie').split(';')[0];
  const { csrf_token: csrf } = JSON.parse(text);
  return { cookie, csrf, value: cookie.split('=')[1] };
}

export async function api(who, method, url, body, type) {
  const headers = { cookie: who.cookie, 'x-csrf-token': who.csrf };
  if (type) headers['content-type'] = type;
  return fetch(`${env.base}${url}`, { method, headers, body });
}

export async function sessions() {
  const r = await api(env.admin, 'GET', '/api/live/sessions');
  assert.equal(r.status, 200);
  return r.json();
}

/** The sum of a metric's series whose line starts with `name` (labels included). */
export async function metric(name) {
  const r = await fetch(`${env.base}/metrics`, { headers: { authorization: 'Bearer browser-test-metrics' } });
  const text = await r.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

// --- in-page code -------------------------------------------------------------------

/** Starts a WHEP session in the page; returns {status, body} (and keeps the pc in window.live). */
async function pagePlay({ url, csrf, key }) {
  window.live = window.live || {};
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  document.body.appendChild(video);
  pc.ontrack = (e) => {
    video.srcObject = e.streams[0] || new MediaStream([e.track]);
    video.play().catch(() => {});
  };
  await pc.setLocalDescription(await pc.createOffer());
  // Milestones in ms after t0: answer, ICE connected, DTLS up (connectionState).
  const entry = { pc, video, t0: performance.now(), firstFrame: null, marks: {} };
  const mark = (name) => { entry.marks[name] ??= Math.round(performance.now() - entry.t0); };
  pc.addEventListener('iceconnectionstatechange', () => mark(`ice_${pc.iceConnectionState}`));
  pc.addEventListener('connectionstatechange', () => mark(`pc_${pc.connectionState}`));
  window.live[key] = entry;
  video.requestVideoFrameCallback(() => {
    entry.firstFrame = performance.now() - entry.t0;
  });
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', 'x-csrf-token': csrf },
    body: pc.localDescription.sdp,
  });
  const body = await r.text();
  mark('answer');
  if (r.status !== 201) {
    pc.close();
    return { status: r.status, body, offerHasH265: /H265\/90000/.test(pc.localDescription.sdp) };
  }
  entry.location = r.headers.get('location');
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  const candidates = body.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:'));
  return { status: r.status, location: entry.location, candidates };
}

/** Decoding statistics of a session in the page, and its selected ICE candidate pair. */
async function pageStats(key) {
  const e = window.live[key];
  let framesDecoded = 0;
  let frameWidth = 0;
  let frameHeight = 0;
  const report = await e.pc.getStats();
  let pairId = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      framesDecoded = s.framesDecoded || 0;
      frameWidth = s.frameWidth || 0;
      frameHeight = s.frameHeight || 0;
    }
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  let pair = null;
  const p = pairId && report.get(pairId);
  if (p) {
    const cand = (id) => {
      const c = report.get(id) || {};
      return {
        protocol: c.protocol, candidateType: c.candidateType, tcpType: c.tcpType,
        relayProtocol: c.relayProtocol, address: c.address, port: c.port,
      };
    };
    pair = { state: p.state, nominated: p.nominated, local: cand(p.localCandidateId), remote: cand(p.remoteCandidateId) };
  }
  return {
    framesDecoded,
    frameWidth,
    frameHeight,
    videoWidth: e.video.videoWidth,
    videoHeight: e.video.videoHeight,
    firstFrame: e.firstFrame,
    marks: e.marks,
    state: e.pc.connectionState,
    pair,
  };
}

export async function pageClose(key) {
  const e = window.live[key];
  e.pc.close();
  e.video.remove();
  delete window.live[key];
}

export async function play(p, url, key) {
  return p.evaluate(pagePlay, { url, csrf: env.admin.csrf, key });
}

export async function stats(p, key) {
  return p.evaluate(pageStats, key);
}

export async function decoding(p, key, limitMs = 15000) {
  const first = await waitFor(`${key} to decode a frame`, limitMs, async () => {
    const s = await stats(p, key);
    return s.framesDecoded > 0 ? s : null;
  });
  // Frames keep coming (a live stream, not one picture).
  return waitFor(`${key} to keep decoding`, 10000, async () => {
    const s = await stats(p, key);
    return s.framesDecoded >= first.framesDecoded + 10 ? s : null;
  });
}

/** `tries` sessions one after the other on `url`: POST → first frame presented, in ms,
 * each ended with DELETE, started at a random point of the GOP. */
export async function firstFrames(p, url, tries) {
  const times = [];
  const marks = [];
  for (let i = 0; i < tries; i++) {
    const key = `ff${i}`;
    const r = await play(p, url, key);
    assert.equal(r.status, 201, JSON.stringify(r));
    const s = await waitFor('the first frame', 10000, async () => {
      const v = await stats(p, key);
      return v.firstFrame !== null ? v : null;
    });
    times.push(s.firstFrame);
    marks.push(s.marks);
    await api(env.admin, 'DELETE', r.location);
    await p.evaluate(pageClose, key);
    await new Promise((res) => setTimeout(res, 150 + Math.random() * 400));
  }
  const median = (values) => {
    const v = values.filter((x) => typeof x === 'number').sort((a, b) => a - b);
    const mid = v.length / 2;
    return Math.round(v.length % 2 ? v[Math.floor(mid)] : (v[mid - 1] + v[mid]) / 2);
  };
  const sorted = [...times].sort((a, b) => a - b);
  const pct = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  return {
    tries,
    median_ms: median(times),
    // Where the time goes (medians): answer received, ICE connected, DTLS up.
    median_answer_ms: median(marks.map((m) => m.answer)),
    median_ice_connected_ms: median(marks.map((m) => m.ice_connected)),
    median_dtls_connected_ms: median(marks.map((m) => m.pc_connected)),
    p95_ms: Math.round(pct(0.95)),
    min_ms: Math.round(sorted[0]),
    max_ms: Math.round(sorted[sorted.length - 1]),
    all_ms: times.map(Math.round),
  };
}
