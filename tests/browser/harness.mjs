// Shared set-up of the browser tests (live.test.mjs, live-tcp.test.mjs, ui.test.mjs): a
// scratch directory with the processes a test starts (the GStreamer RTSP test camera, the
// real `panoptes serve` binary on its private PostgreSQL cluster), users made with the CLI,
// API logins, headless Chromium with the flags that work here, polling with a deadline,
// and in-page WHEP helpers. Each test file runs in its own process.
//
// - `Stack`: one test file's world (ui.test.mjs uses it directly; `uiBase` gives the URL
//   the web UI is served at).
// - `setUp`/`startPanoptes`/`tearDown` and `env`: the live tests' fixed set-up on a Stack
//   (camera, an admin and a viewer, Panoptes with analytics off, a logged-in page), with
//   the WHEP helpers (`play`, `stats`, `decoding`, `firstFrames`, ...).
//
// Runs inside tests/browser/run.sh's network namespace (only `lo` up).
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

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.PANOPTES_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const PASSWORD = 'correct horse battery staple';
const METRICS_TOKEN = 'browser-test-metrics';

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
  '--use-fake-ui-for-media-stream',
];

/** Polls `cond` until it returns a truthy value or `limitMs` passes. */
export async function waitFor(what, limitMs, cond, everyMs = 100) {
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
    await new Promise((r) => setTimeout(r, everyMs));
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

/** Stops a child process: SIGTERM, then SIGKILL after 30 s; resolves when it has exited. */
async function stop(c) {
  if (c.exitCode !== null || c.signalCode !== null) return;
  await new Promise((r) => {
    const t = setTimeout(() => { c.kill('SIGKILL'); r(); }, 30000);
    c.on('exit', () => { clearTimeout(t); r(); });
    c.kill('SIGTERM');
  });
}

/** The environment for panoptes: no outside database or config, a metrics token. */
function panoptesEnv() {
  const env = { ...process.env, PANOPTES_METRICS_TOKEN: METRICS_TOKEN };
  delete env.PANOPTES_DATABASE_URL;
  delete env.PANOPTES_CONFIG;
  delete env.RUST_LOG;
  return env;
}

/** One test file's world: a scratch directory and the processes started in it. */
export class Stack {
  constructor(name) {
    assert.ok(BIN && fs.existsSync(BIN), `PANOPTES_BIN must name the panoptes binary (got ${BIN})`);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `panoptes-${name}-`));
    fs.chmodSync(this.dir, 0o755); // the private cluster runs as the postgres user
    this.children = [];
    this.browser = null;
    this.base = null;
    this.config = null;
    this.server = null;
    this.port = null;
  }

  /** Starts a process with its output in the scratch directory (`logName`). */
  start(cmd, args, opts, logName) {
    const log = fs.openSync(path.join(this.dir, logName), 'a');
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', opts.stdoutPipe ? 'pipe' : log, log] });
    this.children.push(child);
    return child;
  }

  /** Starts the GStreamer RTSP test camera; resolves to its `rtsp://host:port`. */
  async camera() {
    const cam = this.start('/usr/bin/python3', [path.join(REPO, 'scripts/test-camera.py'), '--port', '0', '--bind', '127.0.0.1'],
      { env: process.env, stdoutPipe: true }, 'camera.log');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('test camera did not start')), 30000);
      readline.createInterface({ input: cam.stdout }).on('line', (l) => {
        if (l.startsWith('READY ')) {
          clearTimeout(timer);
          resolve(l.slice(6).trim());
        }
      });
      cam.on('exit', (c) => reject(new Error(`test camera exited ${c}`)));
    });
  }

  /** Writes panoptes.toml: `server` holds extra `[server]` lines, `rest` the other tables.
   * The port is chosen once, so a rewrite for a restart keeps `base` (and the browser's
   * cookies for it). PANOPTES_TEST_LOG sets Panoptes' log filter. */
  async writeConfig(server, rest) {
    this.port ??= await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    this.config = path.join(this.dir, 'panoptes.toml');
    const log = process.env.PANOPTES_TEST_LOG ? `[log]\nfilter = "${process.env.PANOPTES_TEST_LOG}"\n` : '';
    fs.writeFileSync(this.config, `
[server]
listen = "127.0.0.1:${this.port}"
data_dir = "${this.dir}/data"
metrics_token_env = "PANOPTES_METRICS_TOKEN"
${server}

${log}${rest}`);
    return this.config;
  }

  /** Runs a panoptes CLI command against the configuration; returns {status, stdout, stderr}. */
  cli(args, input = '') {
    return spawnSync(BIN, [...args, '--config', this.config], {
      input, env: panoptesEnv(), encoding: 'utf8', timeout: 120000,
    });
  }

  /** Creates a user with the CLI (and grants cameras to it). */
  addUser(name, role, cameras = []) {
    const r = this.cli(['user', 'add', name, '--role', role], `${PASSWORD}\n`);
    assert.equal(r.status, 0, `user add ${name}: ${r.stderr}`);
    if (cameras.length) {
      const g = this.cli(['user', 'grant', name, ...cameras]);
      assert.equal(g.status, 0, `user grant ${name}: ${g.stderr}`);
    }
  }

  /** Starts `panoptes serve` and waits until it is ready. */
  async serve(env = {}) {
    this.server = this.start(BIN, ['serve', '--config', this.config], { env: { ...panoptesEnv(), ...env } }, 'panoptes.log');
    await waitFor('Panoptes to be ready', 90000, async () => (await (await fetch(`${this.base}/readyz`)).json()).ready);
  }

  /** Stops `panoptes serve` (SIGTERM) and waits for it to exit. */
  async stopServer() {
    if (this.server) await stop(this.server);
  }

  /** Runs SQL with psql on the private cluster's socket (the cluster must be running). */
  sql(query) {
    const socket = path.join(this.dir, 'data/postgres/run');
    const r = spawnSync('psql', ['-h', socket, '-U', 'panoptes', '-d', 'panoptes', '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', query],
      { encoding: 'utf8', timeout: 120000 });
    assert.equal(r.status, 0, `psql: ${r.stderr}`);
    return r.stdout.trim();
  }

  log(name = 'panoptes.log') {
    try {
      return fs.readFileSync(path.join(this.dir, name), 'utf8');
    } catch {
      return '';
    }
  }

  /** Logs in over HTTP; returns the cookie, its value and the CSRF token. */
  async login(name, password = PASSWORD) {
    const r = await fetch(`${this.base}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, password }),
    });
    const text = await r.text();
    assert.equal(r.status, 200, `login ${name}: ${text}`);
    const cookie = r.headers.get('set-cookie').split(';')[0];
    const body = JSON.parse(text);
    return { cookie, csrf: body.csrf_token, value: cookie.split('=')[1], id: body.id };
  }

  /** A request as `who` (from login). */
  api(who, method, url, body, type) {
    const headers = { cookie: who.cookie, 'x-csrf-token': who.csrf };
    if (type) headers['content-type'] = type;
    return fetch(`${this.base}${url}`, { method, headers, body });
  }

  async json(who, url) {
    const r = await this.api(who, 'GET', url);
    const text = await r.text();
    assert.equal(r.status, 200, `GET ${url}: ${r.status} ${text}`);
    return JSON.parse(text);
  }

  /** The sum of a metric's series whose line starts with `name` (labels included). */
  async metric(name) {
    const r = await fetch(`${this.base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    const text = await r.text();
    return text
      .split('\n')
      .filter((l) => l.startsWith(name))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  }

  /** Headless Chromium with the flags that work here. */
  async launchBrowser() {
    this.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    return this.browser;
  }

  /** A browser context allowed to use WebRTC on loopback (ICE needs the permission). */
  async context(options = {}) {
    const context = await this.browser.newContext(options);
    await context.grantPermissions(['camera', 'microphone'], { origin: this.base });
    return context;
  }

  /** Stops everything in reverse order and removes the scratch directory (KEEP_TEST_DIR keeps it). */
  async close() {
    await this.browser?.close().catch(() => {});
    for (const c of [...this.children].reverse()) await stop(c);
    if (process.env.KEEP_TEST_DIR) console.log(`kept ${this.dir}`);
    else fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The URL the web UI is served at. The binary serves web-ui/dist at `/`; a binary without
 * that (older than the UI) gets a small static server with a proxy to its API instead,
 * and the test says so.
 */
export async function uiBase(stack) {
  const r = await fetch(`${stack.base}/`).catch(() => null);
  const html = r && r.ok && (r.headers.get('content-type') ?? '').includes('text/html');
  if (html) return stack.base;
  const dist = path.join(REPO, 'web-ui/dist');
  assert.ok(fs.existsSync(path.join(dist, 'index.html')), 'web-ui/dist is missing: scripts/setup.sh builds it');
  console.log('NOTE: this panoptes does not serve the web UI at /; serving web-ui/dist through a test proxy');
  const http = await import('node:http');
  const target = new URL(stack.base);
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.map': 'application/json' };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (/^\/(api|healthz|readyz|metrics)(\/|$)/.test(url.pathname)) {
      const up = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (r2) => {
          res.writeHead(r2.statusCode, r2.headers);
          r2.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
      return;
    }
    let file = path.join(dist, path.normalize(url.pathname));
    if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(dist, 'index.html');
    res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  // Stopped with the other processes (looks like one to Stack.close).
  stack.children.push({
    exitCode: null,
    signalCode: null,
    kill() {},
    on(_event, done) {
      server.closeAllConnections();
      server.close(() => done());
    },
  });
  return `http://127.0.0.1:${port}`;
}

// --- the live tests' set-up -------------------------------------------------------------

/** What setUp made: the Stack, its directory, Panoptes' base URL, the camera's RTSP base,
 * the browser, a context logged in as the admin, a page, the two users' logins. */
export const env = {};

/** Writes the live tests' configuration: `server` holds extra `[server]` lines (the WebRTC
 * transports), `cameras(rtsp)` the `[[cameras]]` tables; analytics off. */
function liveConfig({ server, cameras }) {
  return env.stack.writeConfig(server, `[analytics]\nenabled = false\n${cameras(env.rtsp)}`);
}

/** Starts (or restarts with new `[server]` lines) Panoptes and waits until every camera
 * stream of the configuration (`streams` of them) streams. */
export async function startPanoptes(options) {
  const { stack } = env;
  await stack.stopServer();
  await liveConfig(options);
  await stack.serve();
  env.admin = await stack.login('tester');
  env.viewer = await stack.login('guest');
  await waitFor('every camera stream to stream', 30000, async () => {
    const list = await stack.json(env.admin, '/api/cameras/status');
    return list.length === options.streams && list.every((s) => s.state === 'streaming');
  });
  if (env.context) {
    await env.context.addCookies([{ name: 'panoptes_session', value: env.admin.value, url: env.base }]);
  }
}

/** Camera, users `tester` (admin) and `guest` (viewer), Panoptes (see startPanoptes) and
 * Chromium with a page on Panoptes, logged in as the admin. */
export async function setUp(options) {
  const stack = new Stack('browser');
  env.stack = stack;
  env.dir = stack.dir;
  env.rtsp = await stack.camera();
  await liveConfig(options);
  env.base = stack.base;
  stack.addUser('tester', 'admin');
  stack.addUser('guest', 'viewer');
  await startPanoptes(options);
  env.browser = await stack.launchBrowser();
  env.context = await stack.context();
  await env.context.addCookies([{ name: 'panoptes_session', value: env.admin.value, url: env.base }]);
  env.page = await env.context.newPage();
  await env.page.goto(`${env.base}/healthz`);
}

export async function tearDown() {
  await env.stack?.close();
}

/** A request as `who` (a login from env). */
export function api(who, method, url, body, type) {
  return env.stack.api(who, method, url, body, type);
}

/** The sum of a metric's series whose line starts with `name` (labels included). */
export function metric(name) {
  return env.stack.metric(name);
}

export async function sessions() {
  const r = await api(env.admin, 'GET', '/api/live/sessions');
  assert.equal(r.status, 200);
  return r.json();
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
