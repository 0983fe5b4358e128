// Live view in a real browser: headless Chromium plays WHEP/WebRTC from the real
// `panoptes serve` binary, fed by the GStreamer RTSP test camera, over UDP (the default
// transport; ICE over TCP is live-tcp.test.mjs).
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
import {
  env, setUp, tearDown, api, sessions, metric, play, stats, decoding, pageClose, firstFrames, waitFor,
} from './harness.mjs';

const TRIES = 10;

let base, context, page, admin, viewer;

before(async () => {
  await setUp({
    server: 'webrtc_udp = "127.0.0.1:0"',
    streams: 5,
    cameras: (rtsp) => `
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
`,
  });
  ({ base, context, page, admin, viewer } = env);
});

after(tearDown);

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
  assert.ok(r.candidates.length > 0 && r.candidates.every((c) => / udp /.test(c)), r.candidates.join('\n'));
  const s = await decoding(page, 'single');
  assert.equal(s.frameWidth, 1280);
  assert.equal(s.frameHeight, 720);
  assert.equal(s.pair?.remote.protocol, 'udp', JSON.stringify(s.pair));
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
  const result = await firstFrames(page, '/api/live/lobby/main/whep', TRIES);
  console.log(`first frame (POST → first decoded frame, 1280x720, GOP 2 s): ${JSON.stringify(result)}`);
  if (process.env.LIVE_RESULTS) fs.writeFileSync(process.env.LIVE_RESULTS, JSON.stringify(result, null, 2));
  assert.ok(result.median_ms < 1000, `median first frame ${result.median_ms} ms is not well under a second`);
});
