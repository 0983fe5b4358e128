// The live wall with 64 cameras, in headless Chromium against the real `panoptes serve`:
// 64 cameras on the GStreamer test camera's 360p H.264 mount (roles live + grid only: no
// recording, no decoding on the server, analytics off). Log in through the form, open the
// wall: it lists 64 cameras on 4 pages of 16 (the default layout tops out at 16 tiles);
// every tile of each page plays (frames decoded keep rising, read from the page's
// RTCPeerConnections through window.panoptesLive()); going to the next page frees the
// previous page's WHEP sessions on the server (GET /api/live/sessions and the
// panoptes_live_viewers gauge) and plays the new page; the main thread never blocks for
// 500 ms or more (PerformanceObserver 'longtask'). Figures are printed at the end.
//
// Run through tests/browser/run.sh (network namespace, private PostgreSQL cluster).
// Environment: PANOPTES_BIN, PANOPTES_CLIPS (scripts/setup.sh's env.sh), CHROMIUM,
// KEEP_TEST_DIR, WALL64_RESULTS (optional: a JSON file for the figures).


import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { PASSWORD, REPO, Stack, waitFor } from './harness.mjs';

const CAMERAS = 64;
const PER_PAGE = 16;
const PAGES = CAMERAS / PER_PAGE;

const figures = { pages: [] };
const stack = new Stack('wall64');
let base, admin, page;

const apiJson = (url) => stack.json(admin, url);
const metric = (name) => stack.metric(name);

/** The camera ids of the tiles on screen, in order. */
const tiles = () => page.$$eval('[data-testid=tile]', (els) => els.map((e) => e.getAttribute('data-camera')));

/** Stats of every live video in the page (RTCPeerConnection.getStats, via the app). */
const live = () => page.evaluate(() => window.panoptesLive());

/** Waits until every camera of `cams` plays in a grid tile: a picture, then 25 more frames
 * (a second of the 25 fps stream) in every tile. */
async function allPlaying(cams, limitMs) {
  const pick = async () => (await live()).filter((x) => x.view === 'grid' && cams.includes(x.camera));
  let missing = '';
  const first = await waitFor(`all ${cams.length} tiles to decode`, limitMs, async () => {
    const s = await pick();
    const ok = s.length === cams.length && s.every((x) => x.framesDecoded > 0 && x.videoWidth > 0);
    missing = `${s.length} players; not playing: ` +
      s.filter((x) => !(x.framesDecoded > 0 && x.videoWidth > 0)).map((x) => `${x.camera}:${x.state}`).join(' ');
    return ok ? s : null;
  }, 250).catch((e) => {
    throw new Error(`${e.message}; ${missing}`);
  });
  const t = Date.now();
  const later = await waitFor('every tile to keep decoding', 10000, async () => {
    const s = await pick();
    return s.length === cams.length &&
      s.every((x) => x.framesDecoded >= first.find((f) => f.camera === x.camera).framesDecoded + 25) ? s : null;
  }, 250);
  return { first, later, keptDecodingMs: Date.now() - t };
}

before(async () => {
  assert.ok(fs.existsSync(path.join(REPO, 'web-ui/dist/index.html')), 'web-ui/dist is missing: npm run build in web-ui');
  const rtsp = await stack.camera();
  let cameras = '';
  for (let i = 1; i <= CAMERAS; i++) {
    const id = `cam${String(i).padStart(2, '0')}`;
    cameras += `
[[cameras]]
id = "${id}"
name = "Camera ${i}"
[[cameras.streams]]
name = "main"
url = "${rtsp}/h264-360p"
roles = ["live", "grid"]
`;
  }
  await stack.writeConfig(`webrtc_udp = "127.0.0.1:0"\nui_dir = "${REPO}/web-ui/dist"`, `[analytics]\nenabled = false\n${cameras}`);
  base = stack.base;
  stack.addUser('tester', 'admin');
  await stack.serve();
  admin = await stack.login('tester');
  const t0 = Date.now();
  await waitFor(`all ${CAMERAS} camera streams to stream`, 60000, async () => {
    const list = await apiJson('/api/cameras/status');
    return list.length === CAMERAS && list.every((s) => s.state === 'streaming');
  }, 500);
  figures.allStreamingAfterReadyMs = Date.now() - t0;

  await stack.launchBrowser();
  const context = await stack.context({ viewport: { width: 1280, height: 800 } });
  // Long tasks of the main thread from the first script on.
  await context.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((l) => window.__longTasks.push(...l.getEntries().map((e) => e.duration)))
      .observe({ type: 'longtask', buffered: true });
  });
  page = await context.newPage();
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
});

after(async () => {
  console.log(`figures: ${JSON.stringify(figures)}`);
  if (process.env.WALL64_RESULTS) fs.writeFileSync(process.env.WALL64_RESULTS, JSON.stringify(figures, null, 2));
  await stack.close();
});

test('the wall with 64 cameras: 4 pages of 16, every tile plays, paging frees the sessions, no long freeze', async () => {
  try {
    await page.goto(`${base}/`);
    await page.waitForSelector('[data-testid=login-form]');
    await page.fill('input[name=username]', 'tester');
    await page.fill('input[name=password]', PASSWORD);
    let t = Date.now();
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-testid=who]:has-text("tester")');
    assert.match(await page.evaluate(() => location.hash), /^#\/wall/);
    await page.waitForSelector('.wall .toolbar:has-text("64 cameras")');
    await page.waitForSelector(`.pager:has-text("Page 1 / ${PAGES}")`);
    await page.waitForSelector('.seg-btn.active:has-text("16")');

    const seen = new Set();
    let previous = [];
    for (let p = 1; p <= PAGES; p++) {
      if (p > 1) {
        t = Date.now();
        await page.click('.pager button[aria-label^="Next page"]');
        await page.waitForSelector(`.pager:has-text("Page ${p} / ${PAGES}")`);
      }
      const cams = await waitFor(`the ${PER_PAGE} tiles of page ${p}`, 5000, async () => {
        const c = await tiles();
        return c.length === PER_PAGE && !c.some((x) => previous.includes(x)) ? c : null;
      });
      for (const c of cams) seen.add(c);
      const { first, later, keptDecodingMs } = await allPlaying(cams, 30000);
      const allPlayMs = Date.now() - t - keptDecodingMs;
      for (const s of later) assert.equal(`${s.videoWidth}x${s.videoHeight}`, '640x360', s.camera);
      // The tiles say so, too.
      await waitFor(`page ${p}'s tiles to show "playing"`, 5000, async () =>
        (await page.locator('[data-testid=tile][data-state=playing]').count()) === PER_PAGE);
      // The server holds exactly this page's sessions: the previous page's were ended.
      const sessions = await waitFor(`the server's sessions to be page ${p}'s only`, 10000, async () => {
        const list = await apiJson('/api/live/sessions');
        const ids = list.map((s) => s.camera).sort();
        return ids.length === PER_PAGE && ids.join() === [...cams].sort().join() && list.every((s) => s.connected) ? list : null;
      }, 250);
      const viewers = await waitFor('the viewers gauge to agree', 10000, async () => {
        const v = await metric('panoptes_live_viewers');
        return v === PER_PAGE ? v : null;
      }, 250);
      // And the page holds no player of another page.
      const players = await live();
      assert.deepEqual(players.map((x) => x.camera).sort(), [...cams].sort());
      const ff = first.map((x) => x.firstFrameMs).filter((x) => typeof x === 'number');
      figures.pages.push({
        page: p,
        allTilesPlayingMs: allPlayMs,
        tileFirstFrameMs: [Math.min(...ff), Math.max(...ff)],
        serverSessions: sessions.length,
        liveViewersGauge: viewers,
        // Frames decoded per second per tile while waiting for those 25 frames (the stream: 25).
        decodedFpsMin: Math.round(Math.min(...later.map((x) =>
          (x.framesDecoded - first.find((f) => f.camera === x.camera).framesDecoded) / (keptDecodingMs / 1000))) * 10) / 10,
      });
      previous = cams;
    }
    assert.equal(seen.size, CAMERAS, 'every camera had its tile on some page');
    assert.equal(await page.locator('.pager button[aria-label^="Next page"]').isDisabled(), true, 'the last page');

    const longTasks = await page.evaluate(() => window.__longTasks.map(Math.round));
    figures.longTasks = longTasks.length;
    figures.worstLongTaskMs = Math.max(0, ...longTasks);
    assert.ok(figures.worstLongTaskMs < 500, `the main thread blocked for ${figures.worstLongTaskMs} ms`);
  } catch (e) {
    const file = path.join(stack.dir, 'failed-wall64.png');
    await page?.screenshot({ path: file }).catch(() => {});
    console.log(`screenshot of the failure: ${file} (KEEP_TEST_DIR=1 keeps it)`);
    throw e;
  }
});
