// dashplayer.js: the dash.js side of the browser test (probe.js drives it
// for ?type=dash). Plays a dynamic MPD with dash.js in low-latency mode
// (chunked segments: availabilityTimeComplete="false"; a target live delay
// of 2 s and live catch-up on) and collects what play.mjs judges:
//
// - latency behind the publisher, from the wall clock: cascade's
//   availabilityStartTime is its wall clock when the first segment's start
//   arrived, the MPD has one Period at PT0S and no presentationTimeOffset,
//   so the frame at `video.currentTime` arrived at AST + currentTime and
//   latency is now - that (publisher to cascade is loopback, a few ms).
//   dash.js does not parse SEI, so the publisher's stamps are not used
//   here. dash.js's own readings are reported beside it, not judged:
//   `getCurrentLiveLatency()` (the same mapping with its UTCTiming-synced
//   clock), `timeAsUTC()`, its target delay and playback rate.
// - every dash.js ERROR with its code and message (fatal: playback cannot
//   go on), its stall events (PLAYBACK_STALLED, PLAYBACK_WAITING, and
//   BUFFER_EMPTY: the buffer ran dry), what was loaded (MPD requests, init
//   and media segments per track), and the MPD text itself.
//
// Loaded after dash.js; exposes `window.dashPlayer`.
'use strict';

(function () {
  const TARGET_DELAY_S = 2;
  const MPD_KEEP_CHARS = 6000;

  let player = null;
  let video = null;
  let url = null;
  let note = () => {};
  let astMs = null; // availabilityStartTime of the MPD (ms since the epoch)
  let mpdText = null;
  let mpdError = null;
  const tally = {
    manifestLoads: 0,
    initSegments: 0,
    mediaSegments: { video: 0, audio: 0 },
    errors: 0,
    stallEvents: 0,
  };
  let lowLatency = null;
  // The last media requests: when dash.js asked for each segment (wall
  // clock and the segment's place on the timeline), first byte and end.
  const requests = [];
  const MAX_REQUESTS = 24;
  const askedAt = new Map(); // request url -> wall clock of FRAGMENT_LOADING_STARTED

  // The MPD as the server sent it, for the report and for AST.
  async function fetchMpd() {
    try {
      const r = await fetch(url, { cache: 'no-store' });
      mpdText = await r.text();
      const m = /availabilityStartTime="([^"]+)"/.exec(mpdText);
      if (m) astMs = Date.parse(m[1]);
      if (!r.ok) mpdError = `HTTP ${r.status}`;
    } catch (e) {
      mpdError = String(e);
    }
  }

  function start(videoElement, mediaUrl, noteFn) {
    video = videoElement;
    url = mediaUrl;
    note = noteFn;
    if (!window.dashjs) throw new Error('dash.js did not load');
    if (!window.MediaSource) throw new Error('MediaSource unsupported');
    fetchMpd();
    player = dashjs.MediaPlayer().create();
    player.updateSettings({
      debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
      streaming: {
        delay: { liveDelay: TARGET_DELAY_S },
        liveCatchup: {
          enabled: true,
          // Default mode: the playback rate follows the distance from
          // the target delay, within ±50 %; past maxDrift a seek.
          maxDrift: 3,
          playbackRate: { min: -0.5, max: 0.5 },
        },
        buffer: { bufferTimeAtTopQuality: 10, stableBufferTime: 10 },
      },
    });
    const E = dashjs.MediaPlayer.events;
    player.on(E.ERROR, (e) => {
      tally.errors++;
      const err = e.error || {};
      const detail = [
        `code ${err.code}`,
        err.message || '',
        err.data ? JSON.stringify(err.data).slice(0, 500) : '',
      ]
        .filter(Boolean)
        .join(' | ');
      note('player:error', detail);
    });
    for (const [ev, name] of [
      [E.PLAYBACK_STALLED, 'playbackStalled'],
      [E.PLAYBACK_WAITING, 'playbackWaiting'],
      [E.BUFFER_EMPTY, 'bufferStalled'],
    ]) {
      player.on(ev, (e) => {
        tally.stallEvents++;
        note('player:stall', `${name}${e && e.mediaType ? ' ' + e.mediaType : ''} at ${video.currentTime.toFixed(3)}`);
      });
    }
    player.on(E.MANIFEST_LOADED, () => tally.manifestLoads++);
    player.on(E.FRAGMENT_LOADING_STARTED, (e) => {
      if (e.request && e.request.url) askedAt.set(e.request.url, Date.now());
      if (askedAt.size > 100) askedAt.clear();
    });
    player.on(E.FRAGMENT_LOADING_COMPLETED, (e) => {
      const r = e.request || {};
      if (r.type === 'InitializationSegment') tally.initSegments++;
      else if (r.type === 'MediaSegment' && r.mediaType in tally.mediaSegments) {
        tally.mediaSegments[r.mediaType]++;
        const now = Date.now();
        const t0 = askedAt.has(r.url) ? askedAt.get(r.url) : null;
        askedAt.delete(r.url);
        requests.push({
          track: r.mediaType,
          url: String(r.url || '').replace(/^.*\//, '').replace(/\?.*$/, ''),
          start: r.startTime,
          duration: r.duration,
          // Wall clock of the request, relative to AST + the segment's start.
          askedVsStartMs: t0 !== null && astMs !== null ? Math.round(t0 - (astMs + r.startTime * 1000)) : null,
          // Wall clock of the last byte, relative to AST + the segment's end.
          doneVsEndMs: astMs !== null ? Math.round(now - (astMs + (r.startTime + r.duration) * 1000)) : null,
          tookMs: t0 !== null ? now - t0 : null,
        });
        if (requests.length > MAX_REQUESTS) requests.shift();
      }
    });
    player.on(E.PLAYBACK_PLAYING, () => {
      if (lowLatency === null) {
        try {
          lowLatency = player.getLowLatencyModeEnabled();
        } catch (_) {
          // not initialised yet
        }
      }
    });
    player.initialize(video, url, true);
  }

  function safe(fn) {
    try {
      const v = fn();
      return Number.isFinite(v) ? v : null;
    } catch (_) {
      return null;
    }
  }

  // Latency of the frame on screen at wall time `now`, or null before the
  // MPD's availabilityStartTime is known.
  function latencyAt(ct, now) {
    if (astMs === null || !Number.isFinite(astMs)) return null;
    return { latencyMs: now - (astMs + ct * 1000), stampDistMs: null };
  }

  // Player-side readings for one sample.
  function extra(now) {
    if (!player) return {};
    const utc = safe(() => player.timeAsUTC());
    const live = safe(() => player.getCurrentLiveLatency());
    const target = safe(() => player.getTargetLiveDelay());
    return {
      dashLatencyMs: live === null ? null : live * 1000,
      utcLatencyMs: utc === null ? null : now - utc * 1000,
      targetLatencyMs: target === null ? null : target * 1000,
      playbackRate: video.playbackRate,
    };
  }

  async function summary() {
    // The MPD as it is now (the one fetched at start may predate the first
    // complete segment).
    await fetchMpd();
    const q = video && video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    return {
      transport: 'dash',
      dashVersion: player ? player.getVersion() : null,
      lowLatencyMode: lowLatency,
      availabilityStartTime: astMs === null ? null : new Date(astMs).toISOString(),
      ...tally,
      droppedFrames: q ? q.droppedVideoFrames : null,
      totalFrames: q ? q.totalVideoFrames : null,
      requests,
      mpd: mpdText === null ? null : mpdText.slice(0, MPD_KEEP_CHARS),
      error: mpdError ? `fetching the MPD: ${mpdError}` : null,
    };
  }

  function stop() {
    if (player) {
      player.reset();
      player = null;
    }
  }

  window.dashPlayer = { start, latencyAt, extra, summary, stop };
})();
