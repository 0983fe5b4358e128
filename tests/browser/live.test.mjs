// Live view in a real browser: headless Chromium plays WHEP/WebRTC from the real
// `panoptes serve` binary, fed by the GStreamer RTSP test camera.
//
// Run through tests/browser/run.sh, which puts it in a network namespace with only `lo`
// up (Chromium contacts update hosts otherwise) and uses Panoptes' private PostgreSQL
// cluster (the machine's server is not reachable from inside the namespace).
//
// Environment: PANOPTES_BIN (the binary), PANOPTES_CLIPS (the test clips),
// LIVE_RESULTS (optional: a JSON file for the first-frame figures).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Stack, waitFor } from './harness.mjs';

const TRIES = 10;

const stack = new Stack('live');
let base, context, page, admin, viewer;

const api = (who, method, url, body, type) => stack.api(who, method, url, body, type);
const metric = (name) => stack.metric(name);

async function sessions() {
  const r = await api(admin, 'GET', '/api/live/sessions');
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
  const entry = { pc, video, t0: performance.now(), firstFrame: null };
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
  if (r.status !== 201) {
    pc.close();
    return { status: r.status, body, offerHasH265: /H265\/90000/.test(pc.localDescription.sdp) };
  }
  entry.location = r.headers.get('location');
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  return { status: r.status, location: entry.location };
}

/** Decoding statistics of a session in the page. */
async function pageStats(key) {
  const e = window.live[key];
  let framesDecoded = 0;
  let frameWidth = 0;
  let frameHeight = 0;
  (await e.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      framesDecoded = s.framesDecoded || 0;
      frameWidth = s.frameWidth || 0;
      frameHeight = s.frameHeight || 0;
    }
  });
  return {
    framesDecoded,
    frameWidth,
    frameHeight,
    videoWidth: e.video.videoWidth,
    videoHeight: e.video.videoHeight,
    firstFrame: e.firstFrame,
    state: e.pc.connectionState,
  };
}

async function pageClose(key) {
  const e = window.live[key];
  e.pc.close();
  e.video.remove();
  delete window.live[key];
}

async function play(p, url, key) {
  return p.evaluate(pagePlay, { url, csrf: admin.csrf, key });
}

async function stats(p, key) {
  return p.evaluate(pageStats, key);
}

async function decoding(p, key, limitMs = 15000) {
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

// --- set-up ---------------------------------------------------------------------------

before(async () => {
  const rtsp = await stack.camera();
  await stack.writeConfig('', `
[analytics]
enabled = false

[[cameras]]
id = "lobby"
[[cameras.streams]]
name = "main"
url = "${rtsp}/h264-720p"
roles = ["record", "live"]
[[cameras.streams]]
name = "sub"
url = "${rtsp}/h264-360p"
roles = ["grid"]

[[cameras]]
id = "yard"
[[cameras.streams]]
name = "main"
url = "${rtsp}/h264-1080p"
roles = ["live", "grid"]

[[cameras]]
id = "gate"
[[cameras.streams]]
name = "main"
url = "${rtsp}/h264-360p"
roles = ["live", "grid"]

[[cameras]]
id = "dock"
[[cameras.streams]]
name = "main"
url = "${rtsp}/h265-720p"
roles = ["live", "grid"]
`);
  stack.addUser('tester', 'admin');
  stack.addUser('guest', 'viewer');
  await stack.serve();
  base = stack.base;
  admin = await stack.login('tester');
  viewer = await stack.login('guest');
  await waitFor('every camera stream to stream', 30000, async () => {
    const list = await (await api(admin, 'GET', '/api/cameras/status')).json();
    return list.length === 5 && list.every((s) => s.state === 'streaming');
  });

  await stack.launchBrowser();
  context = await stack.context();
  await context.addCookies([{ name: 'panoptes_session', value: admin.value, url: base }]);
  page = await context.newPage();
  await page.goto(`${base}/healthz`);
});

after(() => stack.close());

// --- tests ------------------------------------------------------------------------------

test('an unauthenticated offer gets 401', async () => {
  const r = await fetch(`${base}/api/live/lobby/main/whep`, {
    method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n',
  });
  assert.equal(r.status, 401);
});

test('a camera the caller may not see is 404, like one that does not exist', async () => {
  const hidden = await api(viewer, 'POST', '/api/live/lobby/main/whep', 'v=0\r\n', 'application/sdp');
  const missing = await api(viewer, 'POST', '/api/live/nosuch/main/whep', 'v=0\r\n', 'application/sdp');
  assert.equal(hidden.status, 404);
  assert.equal(missing.status, 404);
  assert.deepEqual(await hidden.json(), await missing.json());
});

test('garbage offers, wrong content type and PATCH are refused cleanly', async () => {
  const garbage = await api(admin, 'POST', '/api/live/lobby/main/whep', 'not sdp at all', 'application/sdp');
  assert.equal(garbage.status, 422);
  const wrongType = await api(admin, 'POST', '/api/live/lobby/main/whep', 'v=0', 'text/plain');
  assert.equal(wrongType.status, 415);
  const patch = await api(admin, 'PATCH', '/api/live/sessions/abc', 'a=candidate', 'application/trickle-ice-sdpfrag');
  assert.equal(patch.status, 405);
});

test('Chromium plays the 720p main stream at its size', async () => {
  const r = await play(page, '/api/live/lobby/main/whep', 'single');
  assert.equal(r.status, 201, JSON.stringify(r));
  assert.match(r.location, /^\/api\/live\/sessions\/[0-9a-f]{32}$/);
  const s = await decoding(page, 'single');
  assert.equal(s.frameWidth, 1280);
  assert.equal(s.frameHeight, 720);
  await waitFor('the video element to have the picture size', 5000, async () => {
    const v = await stats(page, 'single');
    return v.videoWidth === 1280 && v.videoHeight === 720;
  });
  assert.equal(await metric('panoptes_live_viewers{camera="lobby",stream="main"}'), 1);
  // DELETE on the Location ends it.
  const del = await api(admin, 'DELETE', r.location);
  assert.equal(del.status, 200);
  await waitFor('the session to be gone', 5000, async () => (await sessions()).length === 0);
  assert.equal(await metric('panoptes_live_viewers{camera="lobby",stream="main"}'), 0);
  assert.equal((await api(admin, 'DELETE', r.location)).status, 404);
  await page.evaluate(pageClose, 'single');
});

test('an H.265 stream is refused with a clear error unless the browser offers H.265', async () => {
  const r = await play(page, '/api/live/dock/main/whep', 'hevc');
  console.log(`H.265 stream: the browser ${r.offerHasH265 ? 'offered' : 'did not offer'} H.265; answer ${r.status}`);
  if (r.offerHasH265 === false || r.status === 422) {
    assert.equal(r.status, 422, JSON.stringify(r));
    const body = JSON.parse(r.body);
    assert.equal(body.code, 'codec_unsupported');
    assert.match(body.message, /H\.265.*H\.264 sub stream/);
  } else {
    assert.equal(r.status, 201, JSON.stringify(r));
    await page.evaluate(pageClose, 'hevc');
  }
});

test('four tiles play at once; closing a page frees its sessions', async () => {
  const wall = await context.newPage();
  await wall.goto(`${base}/healthz`);
  const tiles = [
    ['/api/live/lobby/whep?view=grid', 640, 360],
    ['/api/live/lobby/main/whep', 1280, 720],
    ['/api/live/yard/whep?view=grid', 1920, 1080],
    ['/api/live/gate/whep?view=focus', 640, 360],
  ];
  for (const [i, [url]] of tiles.entries()) {
    const r = await play(wall, url, `tile${i}`);
    assert.equal(r.status, 201, `${url}: ${JSON.stringify(r)}`);
  }
  for (const [i, [url, w, h]] of tiles.entries()) {
    const s = await decoding(wall, `tile${i}`);
    assert.equal(`${s.frameWidth}x${s.frameHeight}`, `${w}x${h}`, url);
  }
  assert.equal((await sessions()).length, 4);
  assert.equal(await metric('panoptes_live_viewers'), 4);
  await wall.close();
  // No DELETE: the browser just goes away; consent freshness / DTLS close ends them.
  const t0 = Date.now();
  await waitFor('the closed page\'s sessions to end', 40000, async () => (await sessions()).length === 0);
  console.log(`closed page: sessions freed after ${Date.now() - t0} ms`);
  assert.equal(await metric('panoptes_live_viewers'), 0);
});

test(`first frame after POST, ${TRIES} tries (GOP 2 s)`, async () => {
  const times = [];
  for (let i = 0; i < TRIES; i++) {
    const key = `ff${i}`;
    const r = await play(page, '/api/live/lobby/main/whep', key);
    assert.equal(r.status, 201, JSON.stringify(r));
    const s = await waitFor('the first frame', 10000, async () => {
      const v = await stats(page, key);
      return v.firstFrame !== null ? v : null;
    });
    times.push(s.firstFrame);
    await api(admin, 'DELETE', r.location);
    await page.evaluate(pageClose, key);
    // A random phase within the GOP for the next try.
    await new Promise((res) => setTimeout(res, 150 + Math.random() * 400));
  }
  const sorted = [...times].sort((a, b) => a - b);
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
  const result = {
    tries: TRIES,
    median_ms: Math.round((sorted[4] + sorted[5]) / 2),
    p95_ms: Math.round(pct(0.95)),
    min_ms: Math.round(sorted[0]),
    max_ms: Math.round(sorted[sorted.length - 1]),
    all_ms: times.map(Math.round),
  };
  console.log(`first frame (POST → first decoded frame, 1280x720, GOP 2 s): ${JSON.stringify(result)}`);
  if (process.env.LIVE_RESULTS) fs.writeFileSync(process.env.LIVE_RESULTS, JSON.stringify(result, null, 2));
  assert.ok(result.median_ms < 1000, `median first frame ${result.median_ms} ms is not well under a second`);
});
