// Live view over ICE-TCP in a real browser: Panoptes runs with UDP off
// (`webrtc_udp = ""`) and `webrtc_tcp` set, as on a network that blocks UDP; headless
// Chromium connects actively to the relay's passive TCP candidate and plays the camera.
// Then Panoptes restarts with both transports and Chromium must pick UDP.
//
// Run through tests/browser/run.sh (see live.test.mjs). Environment: PANOPTES_BIN,
// LIVE_TCP_RESULTS (optional: a JSON file for the first-frame figures over TCP).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  env, setUp, tearDown, startPanoptes, api, sessions, metric, play, stats, decoding, pageClose, firstFrames,
  waitFor, freePort,
} from './harness.mjs';

const TRIES = 10;

const cameras = (rtsp) => `
[[cameras]]
id = "lobby"
[[cameras.streams]]
name = "main"
url = "${rtsp}/h264-720p"
roles = ["live"]
[[cameras.streams]]
name = "sub"
url = "${rtsp}/h264-360p"
roles = ["grid"]
`;

let tcpPort;

before(async () => {
  tcpPort = await freePort();
  await setUp({ server: `webrtc_udp = ""\nwebrtc_tcp = "127.0.0.1:${tcpPort}"`, cameras, streams: 2 });
});

after(tearDown);

test('with UDP off, Chromium plays the 720p stream over ICE-TCP', async () => {
  const { page, admin } = env;
  const r = await play(page, '/api/live/lobby/main/whep', 'tcp');
  assert.equal(r.status, 201, JSON.stringify(r));
  // Only passive TCP candidates on the TCP port.
  assert.ok(r.candidates.length > 0, 'no candidate in the answer');
  for (const c of r.candidates) assert.match(c, new RegExp(` tcp \\d+ 127\\.0\\.0\\.1 ${tcpPort} typ host tcptype passive`));

  const s = await decoding(page, 'tcp');
  console.log(`ICE-TCP selected pair: ${JSON.stringify(s.pair)}; ${s.framesDecoded} frames decoded`);
  assert.equal(s.pair?.remote.protocol, 'tcp', JSON.stringify(s.pair));
  assert.equal(s.pair.remote.port, tcpPort);
  assert.equal(s.pair.local.protocol, 'tcp');
  assert.equal(s.pair.local.tcpType, 'active');
  assert.equal(s.pair.local.relayProtocol, undefined, 'no TURN relay in between');
  assert.equal(`${s.frameWidth}x${s.frameHeight}`, '1280x720');
  await waitFor('the video element to have the picture size', 5000, async () => {
    const v = await stats(page, 'tcp');
    return v.videoWidth === 1280 && v.videoHeight === 720 ? v : null;
  });
  // Frames keep coming over the connection.
  const later = await waitFor('more frames', 10000, async () => {
    const v = await stats(page, 'tcp');
    return v.framesDecoded >= s.framesDecoded + 25 ? v : null;
  });
  assert.ok(later.framesDecoded > s.framesDecoded);

  // The same session bookkeeping as over UDP.
  const list = await sessions();
  assert.equal(list.length, 1);
  assert.ok(list[0].connected && list[0].frames > 0, JSON.stringify(list));
  assert.equal(await metric('panoptes_live_viewers{camera="lobby",stream="main"}'), 1);
  assert.ok(await metric('panoptes_live_bytes_sent_total{camera="lobby",stream="main"}') > 100000);
  assert.ok(await metric('panoptes_live_tcp_connections ') >= 1);

  // DELETE ends the session and lets its connection go.
  assert.equal((await api(admin, 'DELETE', r.location)).status, 200);
  await waitFor('the session to be gone', 5000, async () => (await sessions()).length === 0);
  assert.equal(await metric('panoptes_live_viewers{camera="lobby",stream="main"}'), 0);
  await waitFor('its TCP connection to close', 5000, async () => (await metric('panoptes_live_tcp_connections ')) === 0);
  assert.ok(await metric('panoptes_live_tcp_connections_closed_total{reason="session_ended"}') >= 1);
  await page.evaluate(pageClose, 'tcp');
});

test('over ICE-TCP, two tiles play at once and a closed page frees its sessions', async () => {
  const wall = await env.context.newPage();
  await wall.goto(`${env.base}/healthz`);
  const tiles = [['/api/live/lobby/whep?view=grid', '640x360'], ['/api/live/lobby/whep?view=focus', '1280x720']];
  for (const [i, [url]] of tiles.entries()) {
    const r = await play(wall, url, `tile${i}`);
    assert.equal(r.status, 201, `${url}: ${JSON.stringify(r)}`);
  }
  for (const [i, [url, size]] of tiles.entries()) {
    const s = await decoding(wall, `tile${i}`);
    assert.equal(`${s.frameWidth}x${s.frameHeight}`, size, url);
    assert.equal(s.pair?.remote.protocol, 'tcp', JSON.stringify(s.pair));
  }
  assert.equal(await metric('panoptes_live_viewers'), 2);
  await wall.close();
  const t0 = Date.now();
  await waitFor('the closed page\'s sessions to end', 40000, async () => (await sessions()).length === 0);
  console.log(`ICE-TCP closed page: sessions freed after ${Date.now() - t0} ms`);
  await waitFor('their TCP connections to close', 5000, async () => (await metric('panoptes_live_tcp_connections ')) === 0);
  assert.equal(await metric('panoptes_live_viewers'), 0);
});

test(`first frame after POST over ICE-TCP, ${TRIES} tries (GOP 2 s)`, async () => {
  const result = await firstFrames(env.page, '/api/live/lobby/main/whep', TRIES);
  console.log(`first frame over ICE-TCP (POST → first decoded frame, 1280x720, GOP 2 s): ${JSON.stringify(result)}`);
  if (process.env.LIVE_TCP_RESULTS) fs.writeFileSync(process.env.LIVE_TCP_RESULTS, JSON.stringify(result, null, 2));
  assert.ok(result.median_ms < 1000, `median first frame ${result.median_ms} ms is not well under a second`);
});

test('with both transports, the answer offers both and Chromium picks UDP', async () => {
  await startPanoptes({
    server: `webrtc_udp = "127.0.0.1:0"\nwebrtc_tcp = "127.0.0.1:${tcpPort}"`, cameras, streams: 2,
  });
  const { page } = env;
  const r = await play(page, '/api/live/lobby/main/whep', 'both');
  assert.equal(r.status, 201, JSON.stringify(r));
  assert.ok(r.candidates.some((c) => / udp /.test(c)), r.candidates.join('\n'));
  assert.ok(r.candidates.some((c) => / tcp .* tcptype passive/.test(c)), r.candidates.join('\n'));
  const s = await decoding(page, 'both');
  console.log(`both transports, selected pair: ${JSON.stringify(s.pair)}`);
  assert.equal(s.pair?.remote.protocol, 'udp', JSON.stringify(s.pair));
  assert.equal(`${s.frameWidth}x${s.frameHeight}`, '1280x720');
  assert.equal((await api(env.admin, 'DELETE', r.location)).status, 200);
  await page.evaluate(pageClose, 'both');
});
