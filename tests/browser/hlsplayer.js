// hlsplayer.js: the hls.js side of the browser test (probe.js drives it for
// ?type=hls). Plays an LL-HLS media or multivariant playlist with hls.js in
// low-latency mode and collects what play.mjs judges:
//
// - cascade-loadtest's SEI stamps (publisher wall clock per video frame,
//   loadtest/src/stamp.rs). hls.js itself parses user_data_unregistered SEI
//   out of the fMP4 parts it loads and hands them over in
//   FRAG_PARSING_USERDATA with their presentation time already on the media
//   element's timeline (minus the initPTS it gave the SourceBuffer), so the
//   stamp nearest `video.currentTime` is the frame on screen: latency is
//   now - (its wall clock + how far currentTime is past its pts).
// - EXT-X-PROGRAM-DATE-TIME of the playhead (`hls.playingDate`) and hls.js's
//   own live-edge estimate (`hls.latency`), reported beside the stamps as a
//   cross-check, not judged.
// - every hls.js ERROR (stalls, nudges and hole skips included) with its
//   details, and what was loaded: parts, whole segments, blocking playlist
//   reloads (`_HLS_msn`), and which form of the stream: the muxed files or
//   one track's (`video.m3u8`, `audio.m3u8`, `-v`/`-a` media).
//
// A URL ending in `#split` names a multivariant playlist of which only the
// separate-audio variant is played (see splitVariantOnly).
//
// Loaded after hls.js; exposes `window.hlsPlayer`.
'use strict';

(function () {
  // "cascade-loadtst!" as hls.js prints a UUID.
  const STAMP_UUID = Array.from('cascade-loadtst!', (c) =>
    c.charCodeAt(0).toString(16).padStart(2, '0')
  )
    .join('')
    .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
  const MAX_STAMPS = 3000; // over a minute and a half at 30 fps
  const STALL_DETAILS = ['bufferStalledError', 'bufferNudgeOnStall', 'bufferSeekOverHole'];

  function u64(b, o) {
    let hi = 0;
    let lo = 0;
    for (let i = 0; i < 4; i++) {
      hi = hi * 256 + b[o + i];
      lo = lo * 256 + b[o + 4 + i];
    }
    return hi * 4294967296 + lo;
  }

  let hls = null;
  let video = null;
  let note = () => {};
  const stamps = []; // {pts (s, media timeline), wallMs, seq, arrivedAt}, in pts order
  const seen = new Set(); // stamp seqs already taken (a re-loaded part repeats them)
  const tally = {
    userdataSamples: 0,
    foreignUserdata: 0,
    repeats: 0,
    parts: 0,
    segments: 0,
    initSegments: 0,
    playlistRequests: 0,
    blockingReloads: 0,
    errors: 0,
    stallEvents: 0,
    // Requests for the muxed form's files and for one track's.
    muxedRequests: 0,
    trackRequests: 0,
    // Fragments (parts or segments) the audio rendition's loader loaded.
    audioFragments: 0,
  };
  let form = 'as given';
  let initPts = null;
  let lowLatencyPlaylist = null;

  function onUserdata(_ev, data) {
    const now = Date.now();
    for (const s of data.samples || []) {
      tally.userdataSamples++;
      if (s.payloadType !== 5 || s.uuid !== STAMP_UUID || !s.userDataBytes || s.userDataBytes.length < 16) {
        tally.foreignUserdata++;
        continue;
      }
      const seq = u64(s.userDataBytes, 0);
      if (seen.has(seq)) {
        tally.repeats++;
        continue;
      }
      seen.add(seq);
      const stamp = { pts: s.pts, wallMs: u64(s.userDataBytes, 8) / 1000, seq, arrivedAt: now };
      // hls.js hands a chunk's samples over in pts order and chunks in
      // playback order: insertion from the end is nearly always an append.
      let i = stamps.length;
      while (i > 0 && stamps[i - 1].pts > stamp.pts) i--;
      stamps.splice(i, 0, stamp);
      if (stamps.length > MAX_STAMPS) {
        for (const old of stamps.splice(0, stamps.length - MAX_STAMPS)) seen.delete(old.seq);
      }
    }
  }

  // The stamp whose pts is nearest `t` (seconds on the media timeline).
  function nearestStamp(t) {
    let lo = 0;
    let hi = stamps.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (stamps[mid].pts < t) lo = mid + 1;
      else hi = mid;
    }
    let best = null;
    for (const i of [lo - 1, lo]) {
      const s = stamps[i];
      if (s && (!best || Math.abs(s.pts - t) < Math.abs(best.pts - t))) best = s;
    }
    return best;
  }

  // cascade's multivariant playlist with only its separate-audio variant and
  // that variant's audio rendition, URIs made absolute, as a blob URL:
  // given the whole playlist, hls.js plays the muxed variant, which comes
  // first (and keeps the other, which states the same bandwidth, codecs
  // and resolution, as a fallback).
  async function splitVariantOnly(masterUrl) {
    const resp = await fetch(masterUrl);
    if (!resp.ok) throw new Error(`${masterUrl}: HTTP ${resp.status}`);
    const lines = (await resp.text()).split('\n');
    const abs = (u) => new URL(u, masterUrl).href;
    const out = [];
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i];
      if (l.startsWith('#EXT-X-STREAM-INF:')) {
        if (/AUDIO="audio"/.test(l)) out.push(l, abs(lines[i + 1]));
        i++;
      } else if (l.startsWith('#EXT-X-MEDIA:')) {
        if (/GROUP-ID="audio"/.test(l)) out.push(l.replace(/URI="([^"]*)"/, (_m, u) => `URI="${abs(u)}"`));
      } else out.push(l);
    }
    if (!out.some((l) => l.startsWith('#EXT-X-STREAM-INF:'))) {
      throw new Error(`no separate-audio variant in ${masterUrl}`);
    }
    form = 'split';
    return URL.createObjectURL(new Blob([out.join('\n')], { type: 'application/vnd.apple.mpegurl' }));
  }

  function start(videoElement, url, noteFn) {
    video = videoElement;
    note = noteFn;
    if (!window.Hls) throw new Error('hls.js did not load');
    if (!Hls.isSupported()) throw new Error('hls.js: MediaSource unsupported');
    hls = new Hls({
      lowLatencyMode: true,
      // hls.js's catch-up: up to 1.5x while behind its target latency
      // (PART-HOLD-BACK in low-latency mode), so a join that lands late
      // closes the gap instead of keeping it.
      maxLiveSyncPlaybackRate: 1.5,
      liveDurationInfinity: true,
      backBufferLength: 10,
      debug: false,
      xhrSetup(_xhr, reqUrl) {
        const u = new URL(reqUrl, location.href);
        if (u.protocol === 'blob:') return;
        if (/\.m3u8$/.test(u.pathname)) {
          tally.playlistRequests++;
          if (u.searchParams.has('_HLS_msn')) tally.blockingReloads++;
        } else if (/\/init(-[av])?\.mp4$/.test(u.pathname)) tally.initSegments++;
        if (/\/(audio|video)\.m3u8$|-[av]\.(m4s|mp4)$/.test(u.pathname)) tally.trackRequests++;
        else if (/\/(index\.m3u8|init\.mp4|(seg|part)[0-9.]+\.m4s)$/.test(u.pathname)) tally.muxedRequests++;
      },
    });
    hls.on(Hls.Events.FRAG_PARSING_USERDATA, onUserdata);
    hls.on(Hls.Events.INIT_PTS_FOUND, (_ev, d) => {
      initPts = { initPTS: d.initPTS, timescale: d.timescale };
    });
    hls.on(Hls.Events.LEVEL_LOADED, (_ev, d) => {
      const det = d.details;
      if (lowLatencyPlaylist === null) {
        lowLatencyPlaylist = {
          partTarget: det.partTarget,
          partHoldBack: det.partHoldBack,
          holdBack: det.holdBack,
          canBlockReload: det.canBlockReload,
          canSkipUntil: det.canSkipUntil,
          targetDuration: det.targetduration,
          parts: det.partList ? det.partList.length : 0,
          preloadHint: !!det.preloadHint,
        };
      }
    });
    hls.on(Hls.Events.FRAG_LOADED, (_ev, d) => {
      if (d.frag.sn === 'initSegment') return;
      if (d.frag.type === 'audio') tally.audioFragments++;
      if (d.part) tally.parts++;
      else tally.segments++;
    });
    hls.on(Hls.Events.ERROR, (_ev, d) => {
      tally.errors++;
      const detail = [
        d.type,
        d.details,
        d.fatal ? 'fatal' : 'non-fatal',
        d.reason || (d.error && d.error.message) || '',
        d.response ? `HTTP ${d.response.code} ${d.response.text || ''}`.trim() : '',
        d.frag ? `frag sn=${d.frag.sn} ${d.frag.url || ''}` : '',
        d.part ? `part ${d.part.index} ${d.part.url || ''}` : '',
        d.context && d.context.url ? `url ${d.context.url}` : '',
        d.buffer !== undefined ? `buffer ${Math.round(d.buffer * 1000)} ms` : '',
      ]
        .filter(Boolean)
        .join(' | ');
      if (d.fatal) note('player:error', detail);
      else if (STALL_DETAILS.includes(d.details)) {
        tally.stallEvents++;
        note('player:stall', detail);
      } else note('player:warning', detail);
    });
    hls.on(Hls.Events.STALL_RESOLVED, () => note('player:stall-resolved', video.currentTime));
    hls.attachMedia(video);
    const source = /#split$/.test(url) ? splitVariantOnly(url.replace(/#split$/, '')) : Promise.resolve(url);
    source.then(
      (u) => hls.loadSource(u),
      (e) => note('player:error', `the separate-audio variant: ${e}`)
    );
    const p = video.play();
    if (p && p.catch) p.catch((e) => note('play()', String(e)));
  }

  // Latency of the frame on screen at wall time `now`, or null before stamps.
  function latencyAt(ct, now) {
    const s = nearestStamp(ct);
    if (!s) return null;
    return { latencyMs: now - (s.wallMs + (ct - s.pts) * 1000), stampDistMs: (ct - s.pts) * 1000 };
  }

  // Player-side readings for one sample.
  function extra(now) {
    if (!hls) return {};
    const date = hls.playingDate;
    return {
      pdtLatencyMs: date ? now - date.getTime() : null,
      hlsLatencyMs: Number.isFinite(hls.latency) ? hls.latency * 1000 : null,
      targetLatencyMs: Number.isFinite(hls.targetLatency) ? hls.targetLatency * 1000 : null,
      playbackRate: video.playbackRate,
    };
  }

  function summary() {
    const last = stamps.length ? stamps.reduce((a, b) => (b.seq > a.seq ? b : a)) : null;
    const q = video && video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    return {
      transport: 'hls',
      form,
      hlsVersion: window.Hls ? Hls.version : null,
      lowLatencyMode: hls ? hls.lowLatencyMode : null,
      playlist: lowLatencyPlaylist,
      ...tally,
      stamps: stamps.length,
      // Lost frames: stamp numbers never seen since the first one.
      stampGaps: missingSince(0).length,
      missing: missingSince(0).slice(0, 20),
      lastStampSeq: last ? last.seq : null,
      // Publisher clock to hls.js's parse of the part here: the wire's
      // (and the packager's) share of the latency.
      lastArrivalMs: last ? Math.round(last.arrivedAt - last.wallMs) : null,
      initPts,
      droppedFrames: q ? q.droppedVideoFrames : null,
      totalFrames: q ? q.totalVideoFrames : null,
      error: null,
    };
  }

  function stop() {
    if (hls) {
      hls.destroy();
      hls = null;
    }
  }

  // Stamp sequence numbers missing between the first and the last stamp
  // that arrived at or after wall time `t` (samples come in presentation
  // order, stamps count decode order: B-frames make them arrive out of
  // order, so only a number never seen is a lost frame).
  function missingSince(t) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of stamps) {
      if (s.arrivedAt >= t) {
        lo = Math.min(lo, s.seq);
        hi = Math.max(hi, s.seq);
      }
    }
    const missing = [];
    for (let q = lo; q <= hi; q++) if (!seen.has(q)) missing.push(q);
    return missing;
  }

  function gapsSince(t) {
    return missingSince(t).length;
  }

  window.hlsPlayer = { start, latencyAt, extra, summary, stop, gapsSince, STAMP_UUID };
})();
