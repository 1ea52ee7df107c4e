//! Chunks -> messages, incrementally and without copying single-chunk
//! messages out of the read buffer.
//!
//! Each call parses a chunk by peeking; nothing is consumed and no state
//! changes until the whole chunk (header and payload) is in the buffer, so
//! feeding the stream byte by byte gives the same result as feeding it whole.

use bytes::{Buf, BytesMut};

use super::{
    ChunkError, ChunkLimits, RawMessage, DEFAULT_CHUNK_SIZE, EXTENDED_TS_MARKER, MAX_CHUNK_SIZE,
    TYPE_ABORT, TYPE_SET_CHUNK_SIZE,
};

/// Upper bound of the first allocation for a multi-chunk message. The
/// announced length is attacker-controlled: past this the buffer grows only
/// as payload really arrives.
const INITIAL_REASSEMBLY_CAPACITY: usize = 64 * 1024;

/// Largest command or data message accepted before the session allows
/// media: a real `connect` (with an Enhanced RTMP `fourCcList`) or an
/// `onMetaData` is a few hundred bytes to a few KB.
pub const SMALL_MESSAGE_MAX: u32 = 64 * 1024;

/// Which messages the session will take, decided at each message's first
/// chunk header so a refused message is never reassembled.
///
/// A peer gets no more than it has earned: before `connect` only protocol
/// control and small commands; media only after a publish was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Before `connect`: Set Chunk Size, Abort, Acknowledgement, Window
    /// Acknowledgement Size, Set Peer Bandwidth and small commands.
    PreConnect,
    /// Connected, not publishing: anything but audio, video and aggregates;
    /// commands and data messages stay small.
    Connected,
    /// A publish was accepted on this connection: everything, up to the
    /// message size limit.
    Publishing,
    /// No gate (the client side of an upstream session, tests, fuzzing).
    Open,
}

impl Admission {
    /// Ok if a message of `type_id` and `length` may start now.
    fn check(self, type_id: u8, length: u32) -> Result<(), &'static str> {
        // Protocol control (1-3, 5, 6): tiny, and needed before anything else.
        let control = matches!(type_id, 1 | 2 | 3 | 5 | 6);
        let command = matches!(type_id, 17 | 20);
        let data = matches!(type_id, 15 | 18);
        let media = matches!(type_id, 8 | 9 | 22);
        match self {
            Admission::Open | Admission::Publishing => Ok(()),
            Admission::PreConnect if control => Ok(()),
            Admission::PreConnect if command && length <= SMALL_MESSAGE_MAX => Ok(()),
            Admission::PreConnect if command => Err("command too large before connect"),
            Admission::PreConnect => Err("only connect is accepted before connect"),
            Admission::Connected if media => Err("media before an accepted publish"),
            Admission::Connected if (command || data) && length > SMALL_MESSAGE_MAX => {
                Err("command or data message too large before an accepted publish")
            }
            Admission::Connected => Ok(()),
        }
    }
}

/// Message header length by fmt.
const MESSAGE_HEADER_LEN: [usize; 4] = [11, 7, 3, 0];

/// Incremental chunk stream decoder for one direction of one connection.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: u32,
    /// At most `limits.max_chunk_streams` entries; a linear scan over a few
    /// entries beats hashing, and real peers use 3 to 6 chunk streams.
    streams: Vec<StreamState>,
    /// Capacity of every chunk stream's reassembly buffer, summed: what
    /// `limits.max_reassembly_bytes` bounds.
    held: usize,
    admission: Admission,
}

/// What a chunk stream remembers for header compression.
#[derive(Debug)]
struct StreamState {
    csid: u32,
    /// Absolute timestamp of the current (or last) message.
    timestamp: u32,
    /// Delta a type-3 chunk adds when it starts a new message.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The 4-byte extended field of the last fmt 0-2 header, when its 24-bit
    /// field was 0xFFFFFF; type-3 chunks may repeat it.
    extended: Option<u32>,
    /// Payload received so far of a message split over several chunks.
    partial: Option<BytesMut>,
}

/// Header values for the chunk being parsed, computed before committing.
#[derive(Clone, Copy)]
struct Header {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: Option<u32>,
}

enum Step {
    NeedMore,
    Progress,
    Message(RawMessage),
}

impl ChunkDecoder {
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            held: 0,
            admission: Admission::Open,
        }
    }

    /// Sets which messages may start from now on (see [`Admission`]).
    pub fn set_admission(&mut self, admission: Admission) {
        self.admission = admission;
    }

    /// Bytes reserved for messages not yet complete, over all chunk streams.
    pub fn reassembly_bytes(&self) -> usize {
        self.held
    }

    /// Current incoming chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the incoming chunk size; legal values are 1..=2^31-1 (the
    /// top bit is reserved), and at most `limits.max_chunk_size`.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        if size > self.limits.max_chunk_size {
            return Err(ChunkError::ChunkSizeTooLarge {
                size,
                max: self.limits.max_chunk_size,
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Drops the partially received message of `csid` (Abort Message); the
    /// header state stays, as later chunks may still compress against it.
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
            if let Some(p) = s.partial.take() {
                self.held = self.held.saturating_sub(p.capacity());
            }
        }
    }

    /// Consumes complete chunks from the front of `buf` and returns the next
    /// complete message, or `Ok(None)` when more bytes are needed (an
    /// incomplete chunk stays in `buf`). Set Chunk Size and Abort are applied
    /// as soon as they complete, then returned like any other message.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            match self.decode_chunk(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Progress => continue,
                Step::Message(msg) => {
                    self.apply_control(&msg)?;
                    return Ok(Some(msg));
                }
            }
        }
    }

    fn apply_control(&mut self, msg: &RawMessage) -> Result<(), ChunkError> {
        if msg.type_id != TYPE_SET_CHUNK_SIZE && msg.type_id != TYPE_ABORT {
            return Ok(());
        }
        let Some(value) = msg.payload.get(..4).map(read_u32_be) else {
            return Err(ChunkError::InvalidControlMessage {
                type_id: msg.type_id,
                len: msg.payload.len(),
            });
        };
        if msg.type_id == TYPE_SET_CHUNK_SIZE {
            // The top bit is reserved and must be 0: a peer that sets it is
            // broken or probing, and is refused like a chunk size of 0.
            self.set_chunk_size(value)
        } else {
            self.abort(value);
            Ok(())
        }
    }

    /// Parses and consumes at most one chunk.
    fn decode_chunk(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        let data: &[u8] = buf;
        let Some((fmt, csid, basic_len)) = parse_basic_header(data) else {
            return Ok(Step::NeedMore);
        };
        let index = self.find(csid);
        let state = index.and_then(|i| self.streams.get(i));
        let in_progress = state.is_some_and(|s| s.partial.is_some());

        if state.is_none() {
            if fmt >= 2 {
                return Err(ChunkError::NoPreviousHeader { csid });
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(ChunkError::TooManyChunkStreams {
                    csid,
                    max: self.limits.max_chunk_streams,
                });
            }
        }
        if in_progress && fmt != 3 {
            return Err(ChunkError::HeaderInsideMessage { csid, fmt });
        }

        let Some((header, pos)) = read_header(data, fmt, csid, basic_len, state)? else {
            return Ok(Step::NeedMore);
        };

        if header.length > self.limits.max_message_size {
            return Err(ChunkError::MessageTooLarge {
                csid,
                length: header.length,
                max: self.limits.max_message_size,
            });
        }
        if !in_progress {
            if let Err(why) = self.admission.check(header.type_id, header.length) {
                return Err(ChunkError::NotAdmitted {
                    type_id: header.type_id,
                    length: header.length,
                    why,
                });
            }
        }
        let partial = state.and_then(|s| s.partial.as_ref());
        let received = partial.map_or(0, BytesMut::len);
        let spare = partial.map_or(0, |p| p.capacity() - p.len());
        let remaining = (header.length as usize).saturating_sub(received);
        let take = remaining.min(self.chunk_size as usize);
        // The budget covers the chunk being waited for too: with a huge
        // chunk size it sits in the read buffer, not in a reassembly buffer.
        let needed = self.held.saturating_add(take.saturating_sub(spare));
        if needed > self.limits.max_reassembly_bytes {
            return Err(ChunkError::ReassemblyBudget {
                csid,
                needed,
                max: self.limits.max_reassembly_bytes,
            });
        }
        if data.len() < pos.saturating_add(take) {
            return Ok(Step::NeedMore);
        }

        // The whole chunk is here: commit.
        let index = match index {
            Some(i) => i,
            None => {
                self.streams.push(StreamState::new(csid));
                self.streams.len() - 1
            }
        };
        let Some(state) = self.streams.get_mut(index) else {
            return Ok(Step::NeedMore); // unreachable: index was just found or pushed
        };
        buf.advance(pos);
        state.set_header(&header);

        // What this stream's buffer may grow to without breaking the budget
        // (the check above guarantees it is at least what the chunk needs).
        let old_capacity = state.partial.as_ref().map_or(0, BytesMut::capacity);
        let others = self.held.saturating_sub(old_capacity);
        let room = self.limits.max_reassembly_bytes.saturating_sub(others);
        let mut partial = match state.partial.take() {
            Some(p) => p,
            None if take == remaining => {
                // Single-chunk message: hand out the read buffer's own memory.
                return Ok(Step::Message(
                    header.message(csid, buf.split_to(take).freeze()),
                ));
            }
            None => BytesMut::with_capacity(
                remaining
                    .min(INITIAL_REASSEMBLY_CAPACITY)
                    .min(room)
                    .max(take),
            ),
        };
        if partial.capacity() - partial.len() < take {
            partial = grow(partial, take, (header.length as usize).min(room));
        }
        partial.extend_from_slice(buf.get(..take).unwrap_or_default());
        buf.advance(take);
        if partial.len() >= header.length as usize {
            self.held = others;
            return Ok(Step::Message(header.message(csid, partial.freeze())));
        }
        self.held = others.saturating_add(partial.capacity());
        state.partial = Some(partial);
        Ok(Step::Progress)
    }

    fn find(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }
}

impl StreamState {
    fn new(csid: u32) -> Self {
        Self {
            csid,
            timestamp: 0,
            delta: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
            extended: None,
            partial: None,
        }
    }

    fn header(&self) -> Header {
        Header {
            timestamp: self.timestamp,
            delta: self.delta,
            length: self.length,
            type_id: self.type_id,
            stream_id: self.stream_id,
            extended: self.extended,
        }
    }

    fn set_header(&mut self, h: &Header) {
        self.timestamp = h.timestamp;
        self.delta = h.delta;
        self.length = h.length;
        self.type_id = h.type_id;
        self.stream_id = h.stream_id;
        self.extended = h.extended;
    }
}

impl Header {
    fn message(&self, csid: u32, payload: bytes::Bytes) -> RawMessage {
        RawMessage {
            csid,
            timestamp: self.timestamp,
            type_id: self.type_id,
            stream_id: self.stream_id,
            payload,
        }
    }
}

/// Moves a reassembly buffer into a larger one: at most 4x what has really
/// arrived (an announced length alone buys little memory), and exactly the
/// message length for the final step, so a frozen keyframe kept in a GOP
/// cache carries no slack (`BytesMut`'s own growth would double). `length`
/// is also lowered by the caller to what the reassembly budget leaves.
fn grow(partial: BytesMut, take: usize, length: usize) -> BytesMut {
    let needed = partial.len().saturating_add(take);
    let capacity = partial.capacity().saturating_mul(4).max(needed).min(length);
    let mut bigger = BytesMut::with_capacity(capacity.max(needed));
    bigger.extend_from_slice(&partial);
    bigger
}

enum Peek {
    Present,
    Absent,
    Undecided,
}

/// Decides whether a type-3 chunk carries a repeated extended timestamp by
/// comparing the next bytes with the values a sender could have written.
/// A partial prefix match with fewer than 4 bytes available waits for more;
/// a mismatch decides at once, so a short final chunk never stalls.
fn peek_extended(data: &[u8], field: u32, timestamp: u32) -> Peek {
    let mut undecided = false;
    for candidate in [field, timestamp] {
        let expected = candidate.to_be_bytes();
        let n = data.len().min(4);
        if data.get(..n) == expected.get(..n) {
            if n == 4 {
                return Peek::Present;
            }
            undecided = true;
        }
    }
    if undecided {
        Peek::Undecided
    } else {
        Peek::Absent
    }
}

/// Returns (fmt, csid, basic header length), or None when incomplete.
fn parse_basic_header(data: &[u8]) -> Option<(u8, u32, usize)> {
    let first = *data.first()?;
    let fmt = first >> 6;
    match first & 0x3F {
        0 => Some((fmt, 64 + u32::from(*data.get(1)?), 2)),
        1 => {
            let low = u32::from(*data.get(1)?);
            let high = u32::from(*data.get(2)?);
            Some((fmt, 64 + low + (high << 8), 3))
        }
        id => Some((fmt, u32::from(id), 1)),
    }
}

fn read_u24_be(b: &[u8]) -> u32 {
    match b {
        [a, b, c, ..] => u32::from_be_bytes([0, *a, *b, *c]),
        _ => 0,
    }
}

fn read_u32_be(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn read_u32_le(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// A chunk's message header after its basic header (`basic_len` bytes),
/// completed from the chunk stream's `state` for the compressed formats:
/// the header and where the chunk's payload starts, or None until more
/// bytes arrive.
#[inline]
fn read_header(
    data: &[u8],
    fmt: u8,
    csid: u32,
    basic_len: usize,
    state: Option<&StreamState>,
) -> Result<Option<(Header, usize)>, ChunkError> {
    let in_progress = state.is_some_and(|s| s.partial.is_some());
    let mh_len = MESSAGE_HEADER_LEN[usize::from(fmt & 3)];
    let Some(mh) = data.get(basic_len..basic_len + mh_len) else {
        return Ok(None);
    };
    let mut pos = basic_len + mh_len;

    // Extended timestamp of fmt 0-2: present exactly when announced.
    let mut ext_field = None;
    if fmt <= 2 && read_u24_be(mh) == EXTENDED_TS_MARKER {
        let Some(bytes) = data.get(pos..pos + 4) else {
            return Ok(None);
        };
        ext_field = Some(read_u32_be(bytes));
        pos += 4;
    }

    let header = match (fmt, state) {
        (0, _) => {
            let ts = ext_field.unwrap_or_else(|| read_u24_be(mh));
            Header {
                timestamp: ts,
                // A type-3 new message after type 0 adds this again.
                delta: ts,
                length: read_u24_be(mh.get(3..).unwrap_or_default()),
                type_id: mh.get(6).copied().unwrap_or_default(),
                stream_id: read_u32_le(mh.get(7..).unwrap_or_default()),
                extended: ext_field,
            }
        }
        (1, _) => {
            let delta = ext_field.unwrap_or_else(|| read_u24_be(mh));
            let (base, stream_id) = state.map_or((0, 0), |s| (s.timestamp, s.stream_id));
            Header {
                timestamp: base.wrapping_add(delta),
                delta,
                length: read_u24_be(mh.get(3..).unwrap_or_default()),
                type_id: mh.get(6).copied().unwrap_or_default(),
                stream_id,
                extended: ext_field,
            }
        }
        (2, Some(s)) => {
            let delta = ext_field.unwrap_or_else(|| read_u24_be(mh));
            Header {
                timestamp: s.timestamp.wrapping_add(delta),
                delta,
                extended: ext_field,
                ..s.header()
            }
        }
        (_, Some(s)) => {
            // fmt 3: everything comes from the chunk stream's state.
            let header = if in_progress {
                s.header()
            } else {
                Header {
                    timestamp: s.timestamp.wrapping_add(s.delta),
                    ..s.header()
                }
            };
            if let Some(field) = s.extended {
                // Senders repeat either the header's field or the
                // absolute timestamp; some repeat nothing.
                match peek_extended(data.get(pos..).unwrap_or_default(), field, header.timestamp) {
                    Peek::Present => pos += 4,
                    Peek::Absent => {}
                    Peek::Undecided => return Ok(None),
                }
            }
            header
        }
        (_, None) => return Err(ChunkError::NoPreviousHeader { csid }),
    };
    Ok(Some((header, pos)))
}

#[cfg(test)]
impl ChunkDecoder {
    /// Capacity reserved for `csid`'s partial message, for allocation tests.
    pub(super) fn partial_capacity(&self, csid: u32) -> Option<usize> {
        let state = self.streams.get(self.find(csid)?)?;
        state.partial.as_ref().map(BytesMut::capacity)
    }
}
