//! The HLS player's HTTP/1.1: the request it writes, and the answer read
//! as its bytes come (head, then a body by length, chunked or to the
//! close), with media bodies fed to their readers as they arrive.

use super::*;

/// A GET, with `Range: bytes=start-` for a byte-range fetch. No
/// `Connection` header: HTTP/1.1 keeps the connection, as browsers'
/// players do.
pub(super) fn request(target: &str, authority: &str, range: Option<u64>) -> String {
    let range = match range {
        Some(start) => format!("Range: bytes={start}-\r\n"),
        None => String::new(),
    };
    format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: cascade-loadtest\r\nAccept: */*\r\n{range}\r\n"
    )
}

/// Where a media body's findings go.
pub(super) struct Sink<'a> {
    pub(super) state: &'a mut PlayerState,
    pub(super) stats: &'a mut ThreadStats,
    pub(super) last_video: &'a mut Option<Instant>,
    pub(super) stalled: &'a mut bool,
    pub(super) now: Instant,
}

impl Sink<'_> {
    fn event(&mut self, e: Event) {
        match e {
            Event::Frame { key } => {
                *self.last_video = Some(self.now);
                *self.stalled = false;
                self.state.on_frame(key, self.stats);
            }
            Event::Stamp(s) => self.state.on_stamp(s, self.stats),
        }
    }

    /// Opaque (MPEG-TS) media bytes arrived: progress, though no frame.
    fn opaque(&mut self) {
        *self.last_video = Some(self.now);
        *self.stalled = false;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
}

impl ResponseError {
    /// A short stable label for counting failures by reason.
    pub fn reason(&self) -> String {
        match self {
            ResponseError::Http(e) => e.reason(),
            ResponseError::TooLarge(_) => "http-body-size".into(),
        }
    }
}

/// Feeds bytes to the response in flight; true once it is complete. A
/// media body goes through its [`FragmentReader`] as it comes; a playlist
/// or init body is collected; the body of a failed request is dropped.
pub(super) fn read_response(
    f: &mut Inflight,
    mut data: &[u8],
    sink: &mut Sink<'_>,
) -> Result<bool, ResponseError> {
    if f.status.is_none() {
        let Some((head, used)) = f.head.push(data)? else {
            return Ok(false);
        };
        data = &data[used..];
        let body = match head.framing {
            Framing::Close => Body::Close,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Dechunker::default()),
        };
        if let (200, Req::Media { range: Some(r), .. }) = (head.status, &mut f.req) {
            r.skip = r.at.offset;
        }
        f.status = Some((head.status, head.close, body));
        f.head = HeadReader::default();
    }
    let Some((status, close, body)) = f.status.as_mut() else {
        return Ok(false);
    };
    let ok = (200..300).contains(status);
    let mut too_large = None;
    let mut piece = |bytes: &[u8]| {
        if !ok || bytes.is_empty() {
            return;
        }
        let cap = match &mut f.req {
            Req::Playlist { .. } => MAX_PLAYLIST,
            Req::Init { .. } => MAX_INIT,
            Req::Media { reader, range, .. } => {
                let mut bytes = bytes;
                if let Some(r) = range {
                    let n = r.skip.min(bytes.len() as u64);
                    r.skip -= n;
                    bytes = &bytes[n as usize..];
                    r.got += bytes.len() as u64;
                }
                let ok = match reader {
                    Some(MediaReader::Fmp4(r)) => r.push(bytes, &mut |e| sink.event(e)).is_ok(),
                    Some(MediaReader::Ts(r)) => {
                        let ok = r.push(bytes).is_ok();
                        if ok {
                            sink.opaque();
                        }
                        ok
                    }
                    None => true,
                };
                if !ok {
                    *reader = None;
                }
                return;
            }
        };
        if f.buf.len() + bytes.len() > cap {
            too_large = Some(cap);
        } else {
            f.buf.extend_from_slice(bytes);
        }
    };
    let done = match body {
        Body::Close => {
            piece(data);
            false
        }
        Body::Length(left) => {
            let n = (*left).min(data.len() as u64) as usize;
            piece(&data[..n]);
            *left -= n as u64;
            if n < data.len() {
                // Bytes nobody asked for: the connection is out of step.
                *close = true;
            }
            *left == 0
        }
        Body::Chunked(d) => d.push(data, &mut piece)?,
    };
    match too_large {
        Some(cap) => Err(ResponseError::TooLarge(cap)),
        None => Ok(done),
    }
}
