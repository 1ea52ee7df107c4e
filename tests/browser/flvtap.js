// flvtap.js: reads the same FLV bytes the player reads and pulls out what a
// latency measurement needs: cascade-loadtest's SEI stamps (publisher wall
// clock per video frame, loadtest/src/stamp.rs) with the tag timestamps
// they rode on, and the first audio and video sample timestamps (mpegts.js
// rebases its timeline on the smaller of the two: MP4Remuxer._dtsBase).
//
// It taps the transport rather than the player, so it measures what arrived
// on the wire and does not depend on mpegts.js internals: `fetch` is wrapped
// to tee the HTTP-FLV response body, `WebSocket` to add a message listener
// for WebSocket-FLV. Loaded before mpegts.js; exposes `window.flvTap`.
'use strict';

(function () {
  // "cascade-loadtst!": the UUID that marks our user_data_unregistered SEI.
  const STAMP_UUID = Array.from('cascade-loadtst!', (c) => c.charCodeAt(0));
  const SEI_PAYLOAD_LEN = 16 + 8 + 8; // UUID + seq + micros
  const MAX_STAMPS = 2000; // about a minute of 30 fps video

  function u24(b, o) {
    return (b[o] << 16) | (b[o + 1] << 8) | b[o + 2];
  }

  function s24(b, o) {
    const v = u24(b, o);
    return v & 0x800000 ? v - 0x1000000 : v;
  }

  // Big-endian unsigned 64-bit as a double: exact below 2^53, which unix
  // microseconds are for the next two centuries.
  function u64(b, o) {
    let hi = 0;
    let lo = 0;
    for (let i = 0; i < 4; i++) {
      hi = hi * 256 + b[o + i];
      lo = lo * 256 + b[o + 4 + i];
    }
    return hi * 4294967296 + lo;
  }

  // Our stamp from one SEI NAL unit (header byte included), or null.
  // Undoes emulation prevention (00 00 03 -> 00 00) the way stamp.rs does.
  function parseStampSei(nal) {
    const want = 2 + SEI_PAYLOAD_LEN;
    const rbsp = new Uint8Array(want);
    let n = 0;
    let zeros = 0;
    for (let i = 1; i < nal.length && n < want; i++) {
      const b = nal[i];
      if (zeros >= 2 && b === 3) {
        zeros = 0;
        continue;
      }
      rbsp[n++] = b;
      zeros = b === 0 ? zeros + 1 : 0;
    }
    if (n < want || rbsp[0] !== 5 || rbsp[1] !== SEI_PAYLOAD_LEN) {
      return null;
    }
    for (let i = 0; i < 16; i++) {
      if (rbsp[2 + i] !== STAMP_UUID[i]) {
        return null;
      }
    }
    return { seq: u64(rbsp, 18), micros: u64(rbsp, 26) };
  }

  class FlvTap {
    constructor(transport, url) {
      this.transport = transport;
      this.url = url;
      this.openedAt = Date.now();
      this.buf = new Uint8Array(0);
      this.off = 0;
      this.headerSkip = -1; // bytes to skip after the FLV signature; -1: not seen yet
      this.nalLengthSize = 4;
      this.bytes = 0;
      this.tags = 0;
      this.audioTags = 0;
      this.videoFrames = 0;
      this.firstByteAt = null;
      this.firstAudioTs = null;
      this.firstVideoTs = null;
      this.stamps = []; // {pts, dts, wallMs, seq, arrivedAt}
      this.lastStampSeq = null;
      this.stampGaps = 0;
      this.error = null;
    }

    // The timestamp mpegts.js maps to currentTime 0: the smaller of the first
    // audio and first video sample DTS (sequence headers are not samples).
    base() {
      const a = this.firstAudioTs;
      const v = this.firstVideoTs;
      if (a === null) return v;
      if (v === null) return a;
      return Math.min(a, v);
    }

    push(chunk) {
      if (this.error) return;
      if (this.firstByteAt === null) this.firstByteAt = Date.now();
      this.bytes += chunk.length;
      if (this.off < this.buf.length) {
        const rest = this.buf.subarray(this.off);
        const joined = new Uint8Array(rest.length + chunk.length);
        joined.set(rest, 0);
        joined.set(chunk, rest.length);
        this.buf = joined;
      } else {
        this.buf = chunk;
      }
      this.off = 0;
      try {
        this.parse();
      } catch (e) {
        this.error = 'flvtap: ' + (e && e.message ? e.message : String(e));
      }
    }

    parse() {
      const b = this.buf;
      for (;;) {
        const left = b.length - this.off;
        if (this.headerSkip < 0) {
          if (left < 9) return;
          const o = this.off;
          if (b[o] !== 0x46 || b[o + 1] !== 0x4c || b[o + 2] !== 0x56) {
            throw new Error('stream does not start with an FLV header');
          }
          const dataOffset =
            ((b[o + 5] << 24) | (b[o + 6] << 16) | (b[o + 7] << 8) | b[o + 8]) >>> 0;
          // The header, then PreviousTagSize0.
          this.headerSkip = dataOffset + 4;
          continue;
        }
        if (this.headerSkip > 0) {
          const n = Math.min(this.headerSkip, left);
          this.off += n;
          this.headerSkip -= n;
          if (this.headerSkip > 0) return;
          continue;
        }
        if (left < 11) return;
        const o = this.off;
        const type = b[o] & 0x1f;
        const size = u24(b, o + 1);
        const ts = (u24(b, o + 4) | (b[o + 7] << 24)) >>> 0;
        const total = 11 + size + 4;
        if (left < total) return;
        const data = b.subarray(o + 11, o + 11 + size);
        this.off += total;
        this.tags++;
        if (type === 8) this.onAudio(data, ts);
        else if (type === 9) this.onVideo(data, ts);
      }
    }

    onAudio(data, ts) {
      if (data.length < 1) return;
      const format = data[0] >> 4;
      // AAC packet type 0 is the AudioSpecificConfig, not a sample.
      if (format === 10 && data[1] === 0) return;
      this.audioTags++;
      if (this.firstAudioTs === null) this.firstAudioTs = ts;
    }

    onVideo(data, ts) {
      if (data.length < 5) return;
      const b0 = data[0];
      const frameType = (b0 >> 4) & 0x07;
      if (frameType === 5) return; // video info / command frame
      let record = -1;
      let nal = -1;
      let cts = 0;
      if (b0 & 0x80) {
        // Enhanced RTMP: only avc1 carries our SEI (hvc1 etc. are stamped
        // with a data message that mpegts.js drops).
        const fourcc = String.fromCharCode(data[1], data[2], data[3], data[4]);
        if (fourcc !== 'avc1') return;
        const packetType = b0 & 0x0f;
        if (packetType === 0) record = 5;
        else if (packetType === 1 && data.length >= 8) {
          cts = s24(data, 5);
          nal = 8;
        } else if (packetType === 3) nal = 5;
        else return;
      } else {
        if ((b0 & 0x0f) !== 7) return; // not H.264
        if (data[1] === 0) record = 5;
        else if (data[1] === 1) {
          cts = s24(data, 2);
          nal = 5;
        } else return;
      }
      if (record >= 0) {
        if (data.length > record + 4) this.nalLengthSize = (data[record + 4] & 0x03) + 1;
        return;
      }
      this.videoFrames++;
      if (this.firstVideoTs === null) this.firstVideoTs = ts;
      this.scanNals(data, nal, ts, cts);
    }

    scanNals(data, p, ts, cts) {
      const ls = this.nalLengthSize;
      while (p + ls <= data.length) {
        let len = 0;
        for (let i = 0; i < ls; i++) len = len * 256 + data[p + i];
        p += ls;
        if (len === 0 || p + len > data.length) return;
        if ((data[p] & 0x1f) === 6) {
          const stamp = parseStampSei(data.subarray(p, p + len));
          if (stamp) {
            this.addStamp(stamp, ts, cts);
            return; // one stamp per frame
          }
        }
        p += len;
      }
    }

    addStamp(stamp, ts, cts) {
      if (this.lastStampSeq !== null && stamp.seq !== this.lastStampSeq + 1) this.stampGaps++;
      this.lastStampSeq = stamp.seq;
      this.stamps.push({
        dts: ts,
        pts: ts + cts,
        wallMs: stamp.micros / 1000,
        seq: stamp.seq,
        arrivedAt: Date.now(),
      });
      if (this.stamps.length > MAX_STAMPS) this.stamps.splice(0, this.stamps.length - MAX_STAMPS);
    }

    // The stamp whose presentation time is nearest `pts` (stream ms).
    nearestStamp(pts) {
      let best = null;
      let bestDist = Infinity;
      for (let i = this.stamps.length - 1; i >= 0; i--) {
        const s = this.stamps[i];
        const d = Math.abs(s.pts - pts);
        if (d < bestDist) {
          best = s;
          bestDist = d;
        }
        // Stamps arrive in DTS order; a few frames of B-frame reordering
        // aside, once they are a second older than `pts` none is nearer.
        if (s.pts < pts - 1000) break;
      }
      return best;
    }

    // How far behind the publisher the frame at stream time `pts` is shown
    // at wall time `now`: the nearest stamp maps stream time to the
    // publisher's clock (it sent frames in real time, ms for ms).
    latencyAt(pts, now) {
      const s = this.nearestStamp(pts);
      if (!s) return null;
      return { latencyMs: now - (s.wallMs + (pts - s.pts)), stampDistMs: pts - s.pts };
    }

    summary() {
      const last = this.stamps[this.stamps.length - 1];
      return {
        transport: this.transport,
        bytes: this.bytes,
        tags: this.tags,
        audioTags: this.audioTags,
        videoFrames: this.videoFrames,
        firstAudioTs: this.firstAudioTs,
        firstVideoTs: this.firstVideoTs,
        base: this.base(),
        stamps: this.stamps.length,
        stampGaps: this.stampGaps,
        lastStampSeq: last ? last.seq : null,
        // Publisher clock to arrival here: the wire's share of the latency.
        lastArrivalMs: last ? Math.round(last.arrivedAt - last.wallMs) : null,
        firstByteMs: this.firstByteAt === null ? null : this.firstByteAt - this.openedAt,
        error: this.error,
      };
    }
  }

  const taps = [];
  function newTap(transport, url) {
    const tap = new FlvTap(transport, url);
    taps.push(tap);
    return tap;
  }

  function isMediaUrl(url) {
    return /\.flv(\?|$)/.test(url);
  }

  // HTTP-FLV: mpegts.js calls self.fetch and pumps res.body. The response
  // keeps its url, status and headers; only its body is swapped for one
  // branch of a tee, the other branch is read here.
  const realFetch = window.fetch.bind(window);
  window.fetch = async function (input, init) {
    const res = await realFetch(input, init);
    const url = typeof input === 'string' ? input : input && input.url;
    if (!url || !isMediaUrl(url) || !res.body) return res;
    const [player, ours] = res.body.tee();
    Object.defineProperty(res, 'body', { value: player, configurable: true });
    const tap = newTap('http', url);
    const reader = ours.getReader();
    (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          tap.push(value);
        }
      } catch (e) {
        // The player aborting its fetch ends our branch too: not an error.
      }
    })();
    return res;
  };

  // WebSocket-FLV: mpegts.js constructs `new self.WebSocket(url)` and sets
  // binaryType = 'arraybuffer' in the same task, before any message can be
  // delivered, so every frame reaches this listener as an ArrayBuffer.
  const RealWebSocket = window.WebSocket;
  class TapWebSocket extends RealWebSocket {
    constructor(url, protocols) {
      if (protocols === undefined) super(url);
      else super(url, protocols);
      const tap = newTap('ws', String(url));
      this.addEventListener('message', (ev) => {
        if (ev.data instanceof ArrayBuffer) tap.push(new Uint8Array(ev.data));
        else tap.error = tap.error || 'flvtap: a non-binary WebSocket message';
      });
    }
  }
  window.WebSocket = TapWebSocket;

  window.flvTap = {
    taps,
    // The connection the player is on: the newest one.
    current() {
      return taps.length ? taps[taps.length - 1] : null;
    },
    parseStampSei,
  };
})();
