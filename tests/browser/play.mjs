#!/usr/bin/env node
// play.mjs: plays one live stream in headless Chromium, HTTP-FLV and
// WebSocket-FLV with mpegts.js, LL-HLS with hls.js in low-latency mode, DASH
// with dash.js in low-latency mode, and judges it like a viewer would.
// Serves the pages (page.html, hls.html, dash.html),
// their scripts and node_modules' players from a loopback static server
// (nothing is fetched from outside once `npm ci` has run), drives Debian's
// /usr/bin/chromium with playwright-core, and prints one JSON line:
//
//   node play.mjs --url http://127.0.0.1:PORT/live/x.flv --type flv --seconds 5
//   node play.mjs --url ws://127.0.0.1:PORT/live/x.flv --type ws
//   node play.mjs --url http://127.0.0.1:PORT/live/x/index.m3u8 --type hls --seconds 10
//   node play.mjs --url http://127.0.0.1:PORT/live/x/index.mpd --type dash --seconds 10
//
// Exit status: 0 when all three checks pass (currentTime advances, a frame
// is not blank, latency behind the publisher stays under the bound), 1 when
// a check fails (playback never starting included), 2 when the browser or
// page could not be set up, 3 on the whole-run timeout. Why it failed is in the JSON (`failures`, `error`) and
// on stderr.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    type: { type: 'string' }, // flv | ws | hls | dash; defaults from the URL
    seconds: { type: 'string', default: '5' },
    // Playback must begin within this long of load().
    'start-timeout': { type: 'string', default: '15' },
    // Wall time between the first frame and the measured window: the
    // latency chaser's first jump past the joining GOP happens here.
    settle: { type: 'string', default: '2' },
    'max-latency-ms': { type: 'string', default: '1000' },
    // Share of the window's wall time currentTime must cover.
    'min-advance': { type: 'string', default: '0.8' },
    // Longest currentTime may stand still inside the window. With hls.js,
    // any stall it reports inside the window (BUFFER_STALLED_ERROR, a nudge
    // or a hole skip) fails too, and with dash.js any stall event it sends
    // (playbackStalled, playbackWaiting, bufferStalled).
    'max-stall-ms': { type: 'string', default: '750' },
    // Whole run, browser start to exit.
    timeout: { type: 'string', default: '45' },
    chromium: { type: 'string', default: process.env.CHROMIUM_BIN || '/usr/bin/chromium' },
    screenshot: { type: 'string' },
    // Development against a server that sends no CORS header (an ffmpeg
    // -listen HTTP-FLV server): lets the page read a cross-origin stream.
    // Never for the real test: cascade's CORS header is part of what it checks.
    dev: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

const num = (name) => {
  const v = Number(opt[name]);
  if (!Number.isFinite(v) || v < 0) usage(`--${name} ${opt[name]}: not a number`);
  return v;
};

function usage(msg) {
  process.stderr.write(`play.mjs: ${msg}\nusage: node play.mjs --url URL [--type flv|ws|hls|dash] [--seconds 5]\n`);
  process.exit(2);
}

if (!opt.url) usage('--url is required');
const type =
  opt.type ||
  (/^wss?:/.test(opt.url) ? 'ws' : /\.m3u8(\?|$)/.test(opt.url) ? 'hls' : /\.mpd(\?|$)/.test(opt.url) ? 'dash' : 'flv');
if (!['flv', 'ws', 'hls', 'dash'].includes(type)) usage(`--type ${type}: expected flv, ws, hls or dash`);
// --type ws with an http URL means the same path over WebSocket.
const mediaUrl = type === 'ws' ? opt.url.replace(/^http/, 'ws') : opt.url;
const seconds = num('seconds');
const limits = {
  maxLatencyMs: num('max-latency-ms'),
  minAdvance: num('min-advance') * seconds,
  maxStallMs: num('max-stall-ms'),
};

// A check that failed (as opposed to a setup that did): exit status 1.
class CheckFailure extends Error {}

const log = (msg) => process.stderr.write(`play.mjs: ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A bound on a race that must not keep the process alive once it is won.
const bound = (ms) => new Promise((r) => setTimeout(r, ms).unref());

const result = {
  ok: false,
  type,
  url: mediaUrl,
  // --dev turns off the browser's same-origin checks: such a run proves
  // nothing about CORS.
  dev: opt.dev,
  currentTimeStart: null,
  currentTimeEnd: null,
  advance: null,
  wallSeconds: null,
  stalls: null,
  maxStallMs: null,
  blank: null,
  pixelStats: null,
  latencyMsP50: null,
  latencyMsMax: null,
  latencySamples: 0,
  startupMs: null,
  tap: null,
  events: [],
  failures: [],
  error: null,
  // Milliseconds since start of each phase, for a slow run's post-mortem.
  timings: {},
};
const T0 = Date.now();
const mark = (phase) => (result.timings[phase] = Date.now() - T0);

let printed = false;
function finish(code) {
  if (!printed) {
    printed = true;
    if (!result.error && result.failures.length) result.error = result.failures.join('; ');
    process.stdout.write(JSON.stringify(result) + '\n');
    if (result.error) log(`FAILED: ${result.error}`);
  }
  process.exitCode = code;
  return code;
}

// --- the page's static server ------------------------------------------------

const FILES = {
  '/': ['page.html', 'text/html'],
  '/flvtap.js': ['flvtap.js', 'text/javascript'],
  '/probe.js': ['probe.js', 'text/javascript'],
  '/mpegts.js': ['node_modules/mpegts.js/dist/mpegts.js', 'text/javascript'],
  '/hls.html': ['hls.html', 'text/html'],
  '/hlsplayer.js': ['hlsplayer.js', 'text/javascript'],
  '/hls.js': ['node_modules/hls.js/dist/hls.js', 'text/javascript'],
  '/dash.html': ['dash.html', 'text/html'],
  '/dashplayer.js': ['dashplayer.js', 'text/javascript'],
  '/dash.js': ['node_modules/dashjs/dist/modern/umd/dash.mediaplayer.min.js', 'text/javascript'],
};
// The page each player type is played on.
const PAGES = { flv: '/', ws: '/', hls: '/hls.html', dash: '/dash.html' };

function startStaticServer() {
  for (const [file] of Object.values(FILES)) {
    if (!fs.existsSync(path.join(HERE, file))) {
      throw new Error(`${file} is missing: run \`npm ci\` in tests/browser (scripts/install-test-deps.sh does)`);
    }
  }
  const server = http.createServer((req, res) => {
    const entry = FILES[new URL(req.url, 'http://x').pathname];
    if (!entry) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': entry[1], 'cache-control': 'no-store' });
    fs.createReadStream(path.join(HERE, entry[0])).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// --- judging ------------------------------------------------------------------

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

// currentTime's advance over the window, and how long it ever stood still
// (from its last observed advance to the next, or to the window's end).
function judgeAdvance(samples) {
  const first = samples[0];
  const last = samples[samples.length - 1];
  let lastMove = first.t;
  let maxStall = 0;
  let stalls = 0;
  for (let i = 1; i < samples.length; i++) {
    if (samples[i].ct > samples[i - 1].ct + 0.001) {
      const still = samples[i].t - lastMove;
      if (still > 300) stalls++;
      maxStall = Math.max(maxStall, still);
      lastMove = samples[i].t;
    }
  }
  const tail = last.t - lastMove;
  if (tail > 300) stalls++;
  maxStall = Math.max(maxStall, tail);
  result.currentTimeStart = round(first.ct, 3);
  result.currentTimeEnd = round(last.ct, 3);
  result.advance = round(last.ct - first.ct, 3);
  result.wallSeconds = round((last.t - first.t) / 1000, 3);
  result.stalls = stalls;
  result.maxStallMs = maxStall;
  if (result.advance < limits.minAdvance) {
    result.failures.push(
      `currentTime advanced ${result.advance} s over ${result.wallSeconds} s of wall time (want >= ${round(limits.minAdvance, 2)})`
    );
  }
  if (maxStall > limits.maxStallMs) {
    result.failures.push(`currentTime stood still for ${maxStall} ms (limit ${limits.maxStallMs} ms)`);
  }
}

function judgeLatency(samples) {
  const lat = samples.map((s) => s.latencyMs).filter((v) => v !== null && Number.isFinite(v));
  lat.sort((a, b) => a - b);
  result.latencySamples = lat.length;
  result.latencyMsP50 = round(percentile(lat, 50), 1);
  result.latencyMsMax = round(lat.length ? lat[lat.length - 1] : null, 1);
  result.latencyMsMin = round(lat.length ? lat[0] : null, 1);
  // The player's own view: buffered end minus currentTime. Latency should
  // be this plus the wire's share; a large disagreement means the stamps
  // are mapped onto the wrong timeline.
  const lag = samples.map((s) => (s.bufferedEnd - s.ct) * 1000).sort((a, b) => a - b);
  result.bufferLagMsP50 = round(percentile(lag, 50), 1);
  if (lat.length < samples.length / 2) {
    result.failures.push(
      `latency measured at only ${lat.length} of ${samples.length} samples (stamps seen: ${result.tap ? result.tap.stamps : 0})`
    );
    return;
  }
  if (result.latencyMsMax >= limits.maxLatencyMs) {
    result.failures.push(`latency reached ${result.latencyMsMax} ms (p50 ${result.latencyMsP50} ms, limit ${limits.maxLatencyMs} ms)`);
  }
  // Below zero would mean the mapping from currentTime to stream time is
  // off (a wrong base), not a fast server: say so rather than pass.
  if (result.latencyMsMin < -100) {
    result.failures.push(`latency ${result.latencyMsMin} ms is negative: the timeline mapping is wrong`);
  }
}

// hls.js's side of the window: the stalls it reported (a stall is
// currentTime standing still for detectStallWithCurrentTimeMs, 1.25 s, or a
// 'waiting' after it moved; nudges and hole skips are its repairs), proof
// that it played low-latency (parts and blocking playlist reloads), and its
// own latency readings next to the stamps' for comparison.
function judgeHls(samples, gapsInWindow) {
  const from = samples[0].t;
  const to = samples[samples.length - 1].t;
  const stalls = result.events.filter((e) => e.kind === 'player:stall');
  const inWindow = stalls.filter((e) => e.at >= from && e.at <= to);
  const warnings = result.events.filter((e) => e.kind === 'player:warning');
  const stat = (key) => {
    const v = samples.map((s) => s[key]).filter((x) => x !== null && x !== undefined && Number.isFinite(x));
    v.sort((a, b) => a - b);
    return { p50: round(percentile(v, 50), 1), min: round(v[0], 1), max: round(v[v.length - 1], 1) };
  };
  const tap = result.tap || {};
  result.hls = {
    stallEvents: stalls.length,
    stallEventsInWindow: inWindow.length,
    warnings: warnings.length,
    stampGapsInWindow: gapsInWindow,
    // Publisher clock vs the playhead's EXT-X-PROGRAM-DATE-TIME (cascade's
    // clock when the frame arrived), hls.js's distance from the live edge
    // and the target it steers to.
    pdtLatencyMs: stat('pdtLatencyMs'),
    hlsLatencyMs: stat('hlsLatencyMs'),
    targetLatencyMs: stat('targetLatencyMs'),
    playbackRate: stat('playbackRate'),
  };
  if (inWindow.length) {
    result.failures.push(`hls.js reported ${inWindow.length} stall(s) in the window: ${inWindow.map((e) => e.detail).join(' ;; ')}`);
  }
  if (gapsInWindow) {
    result.failures.push(`${gapsInWindow} stamped frame(s) missing during the window: ${JSON.stringify(tap.missing)}`);
  }
  if (!tap.lowLatencyMode || !(tap.parts > 0) || !(tap.blockingReloads > 0)) {
    result.failures.push(
      `not low-latency playback: lowLatencyMode ${tap.lowLatencyMode}, ${tap.parts} parts and ${tap.segments} segments loaded, ${tap.blockingReloads} of ${tap.playlistRequests} playlist requests blocking`
    );
  }
}

// dash.js's side of the window: the stalls it reported, proof that it
// played low-latency (chunked segments of both tracks), and its own latency
// readings (getCurrentLiveLatency, timeAsUTC) beside the wall clock's.
function judgeDash(samples) {
  const from = samples[0].t;
  const to = samples[samples.length - 1].t;
  const stalls = result.events.filter((e) => e.kind === 'player:stall');
  const inWindow = stalls.filter((e) => e.at >= from && e.at <= to);
  const stat = (key) => {
    const v = samples.map((s) => s[key]).filter((x) => x !== null && x !== undefined && Number.isFinite(x));
    v.sort((a, b) => a - b);
    return { p50: round(percentile(v, 50), 1), min: round(v[0], 1), max: round(v[v.length - 1], 1) };
  };
  const tap = result.tap || {};
  result.dash = {
    stallEvents: stalls.length,
    stallEventsInWindow: inWindow.length,
    dashLatencyMs: stat('dashLatencyMs'),
    utcLatencyMs: stat('utcLatencyMs'),
    targetLatencyMs: stat('targetLatencyMs'),
    playbackRate: stat('playbackRate'),
  };
  if (inWindow.length) {
    result.failures.push(`dash.js reported ${inWindow.length} stall(s) in the window: ${inWindow.map((e) => e.detail).join(' ;; ')}`);
  }
  const segs = tap.mediaSegments || {};
  if (!tap.lowLatencyMode || !(segs.video > 0) || !(segs.audio > 0)) {
    result.failures.push(
      `not low-latency playback of both tracks: lowLatencyMode ${tap.lowLatencyMode}, media segments ${JSON.stringify(segs)}`
    );
  }
}

// testsrc2 at 720p: spread-out luma, many saturated colours.
function isBlank(s) {
  return !s || s.width === 0 || s.lumaStddev < 12 || s.colourfulFraction < 0.05 || s.colours < 4;
}

function judgeFrames(startFrame, endFrame) {
  result.pixelStats = { start: startFrame, end: endFrame };
  result.framesDiffer = !!(startFrame && endFrame && startFrame.signature !== endFrame.signature);
  result.blank = isBlank(startFrame) || isBlank(endFrame);
  if (result.blank) {
    result.failures.push(`a decoded frame is blank: ${JSON.stringify(isBlank(endFrame) ? endFrame : startFrame)}`);
  }
}

function round(v, digits) {
  if (v === null || v === undefined || !Number.isFinite(v)) return null;
  const k = 10 ** digits;
  return Math.round(v * k) / k;
}

// --- the run ------------------------------------------------------------------

async function run(state) {
  state.server = await startStaticServer();
  const pageUrl =
    `http://127.0.0.1:${state.server.address().port}${PAGES[type]}` +
    `?url=${encodeURIComponent(mediaUrl)}&type=${type}`;

  if (!fs.existsSync(opt.chromium)) throw new Error(`no Chromium at ${opt.chromium}`);
  // A fresh profile every run: no cache, no state from an earlier run.
  state.profile = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-chromium-'));
  const args = [
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ];
  if (opt.dev) args.push('--disable-web-security');
  // headless: false keeps playwright from adding its own --headless; the
  // flag above picks the new headless mode explicitly.
  state.context = await chromium.launchPersistentContext(state.profile, {
    executablePath: opt.chromium,
    headless: false,
    args,
    viewport: { width: 1000, height: 400 },
    timeout: 20000,
  });
  mark('browser');
  const page = state.context.pages()[0] || (await state.context.newPage());
  page.on('pageerror', (e) => result.events.push({ kind: 'pageerror', detail: String(e) }));
  if (opt.verbose) page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
  await page.goto(pageUrl, { waitUntil: 'load', timeout: 10000 });

  mark('page');
  const startErr = await page.evaluate(() => window.probe.start());
  if (startErr) throw new Error(`page could not start the player: ${startErr}`);
  const loadAt = Date.now();

  // Playback has begun once currentTime moves with data to play.
  const startDeadline = loadAt + num('start-timeout') * 1000;
  for (;;) {
    const s = await page.evaluate(() => window.probe.snapshot());
    if (s.ct > 0 && s.readyState >= 2) break;
    const errs = await page.evaluate(() => window.probe.events().filter((e) => e.kind === 'player:error'));
    if (errs.length) {
      result.tap = await page.evaluate(() => window.probe.tapSummary());
      result.events.push(...(await page.evaluate(() => window.probe.events())));
      throw new CheckFailure(`player error before playback began: ${errs[0].detail}`);
    }
    if (Date.now() > startDeadline) {
      result.tap = await page.evaluate(() => window.probe.tapSummary());
      result.events.push(...(await page.evaluate(() => window.probe.events())));
      throw new CheckFailure(`playback did not start within ${opt['start-timeout']} s (last: ${JSON.stringify(s)})`);
    }
    await sleep(50);
  }
  result.startupMs = Date.now() - loadAt;
  mark('playing');
  await sleep(num('settle') * 1000);

  const startFrame = await page.evaluate(() => window.probe.frameStats());
  const samples = await page.evaluate((ms) => window.probe.measure(ms, 100), seconds * 1000);
  const endFrame = await page.evaluate(() => window.probe.frameStats());
  if (opt.screenshot) await page.screenshot({ path: opt.screenshot });
  result.tap = await page.evaluate(() => window.probe.tapSummary());
  result.events.push(...(await page.evaluate(() => window.probe.events())));
  const gapsInWindow = await page.evaluate((t) => window.probe.gapsSince(t), samples[0].t);

  mark('measured');
  judgeAdvance(samples);
  judgeFrames(startFrame, endFrame);
  judgeLatency(samples);
  if (type === 'hls') judgeHls(samples, gapsInWindow);
  if (type === 'dash') judgeDash(samples);
  // Every half second of the window, for a post-mortem of a failed run.
  const fields =
    type === 'dash'
      ? ['s', 'currentTime', 'latencyMs', 'dashLatencyMs', 'utcLatencyMs', 'playbackRate']
      : ['s', 'currentTime', 'latencyMs', 'pdtLatencyMs', 'hlsLatencyMs', 'playbackRate'];
  result.series = {
    fields,
    rows: samples
      .filter((_, i) => i % 5 === 0)
      .map((x) => [(x.t - samples[0].t) / 1000, ...fields.slice(1).map((f) => (f === 'currentTime' ? x.ct : x[f]))].map((v) => round(v, 2))),
  };
  if (result.tap && result.tap.error) result.failures.push(result.tap.error);
  const playerErrors = result.events.filter((e) => e.kind === 'player:error' || e.kind === 'pageerror');
  if (playerErrors.length) result.failures.push(`player errors: ${JSON.stringify(playerErrors)}`);
  await page.evaluate(() => window.probe.stop()).catch(() => {});
  result.ok = result.failures.length === 0;
  return result.ok ? 0 : 1;
}

async function cleanup(state) {
  if (state.context) await state.context.close().catch(() => {});
  // A socket a wedged browser left open would keep this process alive
  // for the server's keep-alive timeout.
  if (state.server) {
    state.server.close();
    state.server.closeAllConnections();
  }
  if (state.profile) fs.rmSync(state.profile, { recursive: true, force: true });
}

const state = {};
const hardTimeout = setTimeout(async () => {
  result.error = `whole run exceeded --timeout ${opt.timeout} s`;
  finish(3);
  // Closing can hang on a wedged browser: bound it, then leave; playwright
  // kills the browser it launched when this process exits.
  await Promise.race([cleanup(state), bound(3000)]);
  process.exit(3);
}, num('timeout') * 1000);

let code;
try {
  code = await run(state);
} catch (e) {
  result.error = String(e && e.message ? e.message : e);
  code = e instanceof CheckFailure ? 1 : 2;
}
if (!printed) {
  mark('done');
  finish(code);
  await Promise.race([cleanup(state), bound(5000)]);
  clearTimeout(hardTimeout);
}
