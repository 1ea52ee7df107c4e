// probe.js: the page side of the browser test. Plays the stream named in
// the page's query (?url=…&type=flv|ws|hls|dash): FLV with mpegts.js tuned
// for live low latency, LL-HLS with hls.js in low-latency mode
// (hlsplayer.js, on hls.html), DASH with dash.js in low-latency mode
// (dashplayer.js, on dash.html), and gives play.mjs what it asserts on
// through `window.probe`: currentTime over a window of wall time, stalls,
// latency behind the publisher (from the stamps flvtap.js or hlsplayer.js
// collected; for DASH from the wall clock and the MPD's
// availabilityStartTime), and pixel statistics of a frame drawn to a canvas.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const url = params.get('url');
  const type = params.get('type') || 'flv';
  const video = document.getElementById('video');
  const canvas = document.getElementById('canvas');
  const events = []; // player errors and media events worth reporting
  let player = null;

  function note(kind, detail) {
    if (events.length < 200) events.push({ at: Date.now(), kind, detail });
  }

  for (const ev of ['waiting', 'stalled', 'error', 'seeking', 'playing', 'ended']) {
    video.addEventListener(ev, () => note('video:' + ev, video.currentTime));
  }

  function start() {
    if (type === 'hls') {
      if (!window.hlsPlayer) throw new Error('hlsplayer.js did not load (is this hls.html?)');
      window.hlsPlayer.start(video, url, note);
      return;
    }
    if (type === 'dash') {
      if (!window.dashPlayer) throw new Error('dashplayer.js did not load (is this dash.html?)');
      window.dashPlayer.start(video, url, note);
      return;
    }
    if (!window.mpegts) throw new Error('mpegts.js did not load');
    const features = mpegts.getFeatureList();
    if (!features.mseLivePlayback) throw new Error('MSE live playback unsupported');
    mpegts.LoggingControl.enableVerbose = false;
    mpegts.LoggingControl.enableDebug = false;
    player = mpegts.createPlayer(
      { type: 'flv', isLive: true, hasAudio: true, hasVideo: true, url },
      {
        // The transport must run on this thread: a worker would fetch with
        // its own `fetch` and flvtap.js would see nothing.
        enableWorker: false,
        enableWorkerForMSE: false,
        // Hand every received byte to the demuxer at once.
        enableStashBuffer: false,
        isLive: true,
        lazyLoad: false,
        deferLoadAfterSourceOpen: false,
        // A joining player gets the GOP from the last keyframe (up to 2 s
        // old): chasing seeks to 0.3 s before the buffered end as soon as
        // more than 0.8 s is buffered. Playing at 1.0 would then keep
        // whatever lag that seek left (anywhere in 0.3-0.8 s), so liveSync
        // plays at 1.2x while more than 0.5 s is buffered, down to 0.3 s.
        liveBufferLatencyChasing: true,
        liveBufferLatencyMaxLatency: 0.8,
        liveBufferLatencyMinRemain: 0.3,
        liveSync: true,
        liveSyncMaxLatency: 0.5,
        liveSyncTargetLatency: 0.3,
        liveSyncPlaybackRate: 1.2,
        autoCleanupSourceBuffer: true,
      }
    );
    player.on(mpegts.Events.ERROR, (kind, detail, info) => {
      note('player:error', [kind, detail, info && (info.msg || info.code)].join(' '));
    });
    player.attachMediaElement(video);
    player.load();
    const p = player.play();
    if (p && p.catch) p.catch((e) => note('play()', String(e)));
  }

  function tapSummary() {
    if (type === 'hls') return window.hlsPlayer.summary();
    if (type === 'dash') return window.dashPlayer.summary();
    const tap = window.flvTap.current();
    return tap ? tap.summary() : null;
  }

  // Latency of the frame on screen now, or null before stamps arrive.
  function latencyNow() {
    if (type === 'hls') return window.hlsPlayer.latencyAt(video.currentTime, Date.now());
    if (type === 'dash') return window.dashPlayer.latencyAt(video.currentTime, Date.now());
    const tap = window.flvTap.current();
    if (!tap || tap.base() === null) return null;
    const pts = tap.base() + video.currentTime * 1000;
    return tap.latencyAt(pts, Date.now());
  }

  function bufferedEnd() {
    const b = video.buffered;
    return b.length ? b.end(b.length - 1) : 0;
  }

  function snapshot() {
    const lat = latencyNow();
    const t = Date.now();
    return {
      ...(type === 'hls' ? window.hlsPlayer.extra(t) : type === 'dash' ? window.dashPlayer.extra(t) : {}),
      t,
      ct: video.currentTime,
      readyState: video.readyState,
      paused: video.paused,
      bufferedEnd: bufferedEnd(),
      latencyMs: lat ? lat.latencyMs : null,
      stampDistMs: lat ? lat.stampDistMs : null,
    };
  }

  // Samples every `everyMs` for `ms` of wall time, on the page's own timer
  // so the DevTools round trip does not jitter the readings.
  function measure(ms, everyMs) {
    return new Promise((resolve) => {
      const samples = [snapshot()];
      const end = samples[0].t + ms;
      const timer = setInterval(() => {
        const s = snapshot();
        samples.push(s);
        if (s.t >= end) {
          clearInterval(timer);
          resolve(samples);
        }
      }, everyMs);
    });
  }

  // Pixel statistics of the current frame scaled onto the canvas. testsrc2
  // is bright, saturated and full of edges; a blank or undecoded frame is a
  // flat black (or single colour) surface.
  function frameStats() {
    const w = canvas.width;
    const h = canvas.height;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(video, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data;
    const n = w * h;
    let sumY = 0;
    let sumY2 = 0;
    let colourful = 0;
    const buckets = new Uint32Array(64);
    const rgb = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) {
      const r = d[i];
      const g = d[i + 1];
      const b = d[i + 2];
      rgb[0] += r;
      rgb[1] += g;
      rgb[2] += b;
      const y = 0.299 * r + 0.587 * g + 0.114 * b;
      sumY += y;
      sumY2 += y * y;
      if (Math.max(r, g, b) - Math.min(r, g, b) > 64) colourful++;
      buckets[((r >> 6) << 4) | ((g >> 6) << 2) | (b >> 6)]++;
    }
    const meanY = sumY / n;
    let colours = 0;
    for (const c of buckets) if (c >= n * 0.005) colours++;
    // A coarse fingerprint so two frames can be told apart.
    let sig = 0;
    for (let i = 0; i < d.length; i += 4 * 97) sig = (sig * 31 + d[i] + d[i + 1] * 3 + d[i + 2] * 7) % 1000000007;
    return {
      width: video.videoWidth,
      height: video.videoHeight,
      meanRgb: rgb.map((v) => Math.round(v / n)),
      lumaMean: Math.round(meanY * 10) / 10,
      lumaStddev: Math.round(Math.sqrt(Math.max(0, sumY2 / n - meanY * meanY)) * 10) / 10,
      colourfulFraction: Math.round((colourful / n) * 1000) / 1000,
      colours,
      signature: sig,
    };
  }

  window.probe = {
    start() {
      try {
        start();
        return null;
      } catch (e) {
        return String(e && e.message ? e.message : e);
      }
    },
    snapshot,
    measure,
    frameStats,
    tapSummary,
    events: () => events.slice(),
    // Stamp sequence numbers skipped by stamps that arrived since wall time
    // `t` (HLS only: FLV counts its gaps in the tap summary).
    gapsSince: (t) => (type === 'hls' ? window.hlsPlayer.gapsSince(t) : null),
    stop() {
      if (type === 'hls') {
        window.hlsPlayer.stop();
        return;
      }
      if (type === 'dash') {
        window.dashPlayer.stop();
        return;
      }
      if (player) {
        player.pause();
        player.unload();
        player.detachMediaElement();
        player.destroy();
        player = null;
      }
    },
  };
})();
