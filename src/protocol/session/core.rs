//! What every RTMP session does whichever side of the connection it is:
//! decode chunks, count the bytes read and acknowledge each window the
//! peer announced, answer pings, serialize what goes out into one output
//! buffer, queue events, and turn an inbound message into what the role
//! (server or client) has to act on, with aggregates split and metadata
//! unwrapped.
//!
//! It owns no stream state and makes no decisions: the server and client
//! sessions each own one and delegate to it, so both count, acknowledge
//! and frame the same way.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::protocol::amf::{Amf0Value, AmfLimits};
use crate::protocol::chunk::{ChunkDecoder, ChunkError, ChunkLimits, RawMessage};
use crate::protocol::message::{
    type_id, Command, Message, MessageError, MessageWriter, UserControl,
};

use super::aggregate::{split_aggregate, SubMessage};
use super::data::{classify_data, DataMessage};
use super::server::MediaKind;

/// The part of a session both roles share; `E` is the role's event type.
pub(super) struct SessionCore<E> {
    pub(super) decoder: ChunkDecoder,
    /// Serializes our control and command messages at our chunk size.
    pub(super) writer: MessageWriter,
    /// Bytes queued for the peer until [`SessionCore::take_output`].
    pub(super) out: BytesMut,
    events: VecDeque<E>,
    /// Bytes read from the peer, modulo 2^32 (the acknowledgement's
    /// sequence number is defined that way).
    received: u32,
    /// `received` when we last acknowledged.
    last_ack: u32,
    /// The peer's Window Acknowledgement Size; 0 means do not acknowledge.
    peer_window: u32,
}

/// What an inbound message leaves for the role after the core handled
/// what is the same on both sides.
pub(super) enum Inbound {
    /// Nothing: chunk control, acknowledgements, window size, pings and
    /// message types nobody acts on.
    Done,
    /// Audio, video or data content, one piece unless it was an aggregate.
    Media(MediaPieces),
    Command(Command),
    /// Set Peer Bandwidth and user control events other than ping.
    Control(Message),
}

/// One piece of stream content.
#[derive(Debug)]
pub(super) struct MediaPiece {
    pub(super) kind: MediaKind,
    pub(super) timestamp: u32,
    pub(super) payload: Bytes,
}

/// The content of one inbound message: a single piece, or the pieces of an
/// aggregate. Data pieces are classified on the way out (`@setDataFrame`
/// stripped, session chatter dropped).
pub(super) struct MediaPieces {
    single: Option<SubMessage>,
    split: std::vec::IntoIter<SubMessage>,
}

impl MediaPieces {
    fn single(type_id: u8, timestamp: u32, payload: Bytes) -> Self {
        MediaPieces {
            single: Some(SubMessage {
                type_id,
                timestamp,
                payload,
            }),
            split: Vec::new().into_iter(),
        }
    }

    fn aggregate(payload: &Bytes, timestamp: u32) -> Self {
        MediaPieces {
            single: None,
            split: split_aggregate(payload, timestamp).into_iter(),
        }
    }
}

impl Iterator for MediaPieces {
    type Item = MediaPiece;

    fn next(&mut self) -> Option<MediaPiece> {
        loop {
            let m = self.single.take().or_else(|| self.split.next())?;
            let (kind, payload) = match m.type_id {
                type_id::AUDIO => (MediaKind::Audio, m.payload),
                type_id::VIDEO => (MediaKind::Video, m.payload),
                type_id::DATA_AMF0 => match classify_data(m.payload) {
                    DataMessage::Media(kind, body) => (kind, body),
                    DataMessage::Chatter | DataMessage::Clear => continue,
                },
                _ => continue,
            };
            return Some(MediaPiece {
                kind,
                timestamp: m.timestamp,
                payload,
            });
        }
    }
}

impl<E> SessionCore<E> {
    /// `peer_window` is the window to acknowledge at before the peer
    /// announces its own (0: none until then).
    pub(super) fn new(chunk_limits: ChunkLimits, peer_window: u32) -> Self {
        SessionCore {
            decoder: ChunkDecoder::new(chunk_limits),
            writer: MessageWriter::default(),
            out: BytesMut::with_capacity(4096),
            events: VecDeque::new(),
            received: 0,
            last_ack: 0,
            peer_window,
        }
    }

    /// Counts `n` bytes read from the peer and queues an Acknowledgement
    /// each time a full window has arrived since the last one. The counter
    /// wraps at 2^32, and so does the distance to the last acknowledgement.
    pub(super) fn received(&mut self, n: usize) {
        // Truncating is the modulo 2^32 the sequence number is defined by.
        self.received = self.received.wrapping_add(n as u32);
        let window = self.peer_window;
        if window > 0 && self.received.wrapping_sub(self.last_ack) >= window {
            self.last_ack = self.received;
            self.writer.acknowledgement(self.received, &mut self.out);
        }
    }

    /// Pretends `n` bytes were read and acknowledged, to test the wrap.
    #[cfg(test)]
    pub(super) fn skip_to(&mut self, n: u32) {
        self.received = n;
        self.last_ack = n;
    }

    /// One complete message from `buf`, or `None` until more bytes arrive.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        self.decoder.decode(buf)
    }

    /// Parses `raw` and handles what is the same for both roles; the rest
    /// is returned for the role.
    pub(super) fn inbound(
        &mut self,
        raw: &RawMessage,
        limits: &AmfLimits,
    ) -> Result<Inbound, MessageError> {
        let ts = raw.timestamp;
        Ok(match Message::parse(raw, limits)? {
            // The chunk decoder applied Set Chunk Size and Abort already.
            Message::SetChunkSize(_)
            | Message::Abort(_)
            | Message::Acknowledgement(_)
            | Message::Ignored { .. } => Inbound::Done,
            Message::WindowAckSize(w) => {
                self.peer_window = w;
                Inbound::Done
            }
            Message::UserControl(UserControl::PingRequest(t)) => {
                let pong = UserControl::PingResponse(t);
                self.writer.user_control(pong, &mut self.out);
                Inbound::Done
            }
            Message::Audio(p) => Inbound::Media(MediaPieces::single(type_id::AUDIO, ts, p)),
            Message::Video(p) => Inbound::Media(MediaPieces::single(type_id::VIDEO, ts, p)),
            Message::Data(p) => Inbound::Media(MediaPieces::single(type_id::DATA_AMF0, ts, p)),
            Message::Aggregate(p) => Inbound::Media(MediaPieces::aggregate(&p, ts)),
            Message::Command(c) => Inbound::Command(c),
            other => Inbound::Control(other),
        })
    }

    /// An AMF0 command `values` on message stream `stream_id`.
    pub(super) fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        self.writer.command(stream_id, values, &mut self.out);
    }

    pub(super) fn push_event(&mut self, event: E) {
        self.events.push_back(event);
    }

    pub(super) fn poll_event(&mut self) -> Option<E> {
        self.events.pop_front()
    }

    /// Everything queued for the peer since the last call, if anything.
    pub(super) fn take_output(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// The chunk size our output uses.
    pub(super) fn out_chunk_size(&self) -> u32 {
        self.writer.chunk_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(core: &mut SessionCore<()>) -> Vec<u32> {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut buf = BytesMut::from(&core.take_output().unwrap_or_default()[..]);
        let mut seqs = Vec::new();
        while let Some(raw) = dec.decode(&mut buf).unwrap() {
            if let Ok(Message::Acknowledgement(s)) = Message::parse(&raw, &AmfLimits::default()) {
                seqs.push(s);
            }
        }
        seqs
    }

    #[test]
    fn acknowledges_once_per_window_across_the_wrap() {
        let mut core = SessionCore::<()>::new(ChunkLimits::default(), 100);
        core.skip_to(u32::MAX - 49);
        core.received(99);
        assert!(acks(&mut core).is_empty());
        core.received(1);
        assert_eq!(acks(&mut core), vec![50]);
        core.received(250);
        assert_eq!(acks(&mut core), vec![300]);
    }

    #[test]
    fn no_window_no_acknowledgement() {
        let mut core = SessionCore::<()>::new(ChunkLimits::default(), 0);
        core.received(10_000_000);
        assert!(core.take_output().is_none());
    }

    #[test]
    fn aggregates_split_and_chatter_is_dropped() {
        let mut agg = BytesMut::new();
        for (t, ts, body) in [(9u8, 1000u32, &b"\x17v"[..]), (8, 1010, b"\xafa")] {
            agg.extend_from_slice(&[t, 0, 0, body.len() as u8]);
            agg.extend_from_slice(&(ts & 0xFF_FFFF).to_be_bytes()[1..]);
            agg.extend_from_slice(&[0, 0, 0, 0]);
            agg.extend_from_slice(body);
            agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        }
        let pieces: Vec<_> = MediaPieces::aggregate(&agg.freeze(), 40)
            .map(|p| (p.kind, p.timestamp))
            .collect();
        assert_eq!(pieces, vec![(MediaKind::Video, 40), (MediaKind::Audio, 50)]);
        let chatter = Bytes::from_static(b"\x02\x00\x11|RtmpSampleAccess");
        assert_eq!(
            MediaPieces::single(type_id::DATA_AMF0, 0, chatter).count(),
            0
        );
    }
}
