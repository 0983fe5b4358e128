// Shared pieces of the browser tests: a scratch directory with the processes a test
// starts (the GStreamer test camera, `panoptes serve`), users made with the CLI, API
// logins, headless Chromium with the flags that work here, and polling with a deadline.
//
// Runs inside tests/browser/run.sh's network namespace (only `lo` up); Panoptes uses its
// private PostgreSQL cluster under the scratch directory.

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
export const BIN = process.env.PANOPTES_BIN;
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const PASSWORD = 'correct horse battery staple';
export const METRICS_TOKEN = 'browser-test-metrics';

export const CHROMIUM_ARGS = [
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

/** The environment for panoptes: no outside database or config, a metrics token. */
export function panoptesEnv() {
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

  /** Writes panoptes.toml: `body(port)` gives everything after the [server] table's lines. */
  async writeConfig(server, rest) {
    const port = await freePort();
    this.base = `http://127.0.0.1:${port}`;
    this.config = path.join(this.dir, 'panoptes.toml');
    fs.writeFileSync(this.config, `
[server]
listen = "127.0.0.1:${port}"
data_dir = "${this.dir}/data"
metrics_token_env = "PANOPTES_METRICS_TOKEN"
webrtc_udp = "127.0.0.1:0"
ui_dir = "${REPO}/web-ui/dist"
${server}
${rest}`);
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
    const c = this.server;
    if (!c || c.exitCode !== null) return;
    await new Promise((r) => {
      const t = setTimeout(() => { c.kill('SIGKILL'); r(); }, 30000);
      c.on('exit', () => { clearTimeout(t); r(); });
      c.kill('SIGTERM');
    });
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
    for (const c of [...this.children].reverse()) {
      if (c.exitCode === null && c.signalCode === null) {
        await new Promise((r) => {
          const t = setTimeout(() => { c.kill('SIGKILL'); r(); }, 30000);
          c.on('exit', () => { clearTimeout(t); r(); });
          c.kill('SIGTERM');
        });
      }
    }
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
