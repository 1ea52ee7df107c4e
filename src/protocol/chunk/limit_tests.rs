//! The decoder's memory limits: Set Chunk Size bounds and the per-connection
//! reassembly budget, checked before anything is allocated.

use bytes::BytesMut;
use proptest::prelude::*;

use super::encoder::ChunkWriter;
use super::*;

/// A type-0 header on a one-byte basic header (csid 2..=63).
fn t0(csid: u32, len: u32, type_id: u8) -> Vec<u8> {
    let mut v = vec![csid as u8];
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&len.to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&1u32.to_le_bytes());
    v
}

fn set_chunk_size_msg(size: u32) -> BytesMut {
    let mut b = BytesMut::from(&t0(2, 4, TYPE_SET_CHUNK_SIZE)[..]);
    b.extend_from_slice(&size.to_be_bytes());
    b
}

fn limits(max_reassembly_bytes: usize) -> ChunkLimits {
    ChunkLimits {
        max_reassembly_bytes,
        ..ChunkLimits::default()
    }
}

#[test]
fn set_chunk_size_with_the_top_bit_is_refused() {
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = set_chunk_size_msg(0x8000_0000);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::InvalidChunkSize(0x8000_0000))
    ));
    let mut buf = set_chunk_size_msg(0xFFFF_FFFF);
    assert!(matches!(
        ChunkDecoder::new(ChunkLimits::default()).decode(&mut buf),
        Err(ChunkError::InvalidChunkSize(0xFFFF_FFFF))
    ));
}

#[test]
fn chunk_size_above_the_configured_limit_is_refused() {
    let mut dec = ChunkDecoder::new(ChunkLimits {
        max_chunk_size: 65_536,
        ..ChunkLimits::default()
    });
    let mut ok = set_chunk_size_msg(65_536);
    assert!(dec.decode(&mut ok).unwrap().is_some());
    assert_eq!(dec.chunk_size(), 65_536);
    let mut buf = set_chunk_size_msg(65_537);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::ChunkSizeTooLarge {
            size: 65_537,
            max: 65_536
        })
    ));
    assert_eq!(dec.chunk_size(), 65_536, "a refused size is not applied");
}

#[test]
fn huge_chunk_size_allocates_nothing_for_an_announced_length() {
    // The largest chunk size and the largest encodable message length, with
    // only a few payload bytes: the chunk waits in the read buffer and the
    // decoder reserves nothing.
    let mut dec = ChunkDecoder::new(ChunkLimits {
        max_message_size: 16 << 20,
        max_reassembly_bytes: 32 << 20,
        ..ChunkLimits::default()
    });
    let mut buf = set_chunk_size_msg(MAX_CHUNK_SIZE);
    assert!(dec.decode(&mut buf).unwrap().is_some());
    let mut buf = BytesMut::from(&t0(6, 0xFF_FFFF, 9)[..]);
    buf.extend_from_slice(&[0; 1000]);
    // 16 MiB - 1 is under this 16 MiB message limit.
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert_eq!(dec.reassembly_bytes(), 0);
    assert_eq!(dec.partial_capacity(6), None);
}

#[test]
fn a_chunk_larger_than_the_budget_is_refused_before_it_is_buffered() {
    let mut dec = ChunkDecoder::new(limits(1 << 20));
    let mut buf = set_chunk_size_msg(MAX_CHUNK_SIZE);
    assert!(dec.decode(&mut buf).unwrap().is_some());
    // The header alone (no payload yet) is refused: the peer would make us
    // buffer 2 MiB in the read buffer.
    let mut buf = BytesMut::from(&t0(6, 2 << 20, 9)[..]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::ReassemblyBudget {
            csid: 6,
            needed: 2_097_152,
            max: 1_048_576
        })
    ));
}

#[test]
fn partial_messages_on_many_streams_stop_at_the_budget() {
    // A first 128-byte chunk of a 1 MiB message on ever new chunk streams:
    // each reserves up to 64 KiB, the last one what the budget leaves, and
    // the next one is refused.
    let budget = 300 * 1024;
    let mut dec = ChunkDecoder::new(limits(budget));
    let mut refused_at = None;
    for csid in 3..40u32 {
        let mut buf = BytesMut::from(&t0(csid, 1 << 20, 9)[..]);
        buf.extend_from_slice(&[7; 128]);
        match dec.decode(&mut buf) {
            Ok(None) => assert!(dec.reassembly_bytes() <= budget),
            Ok(Some(m)) => panic!("unexpected message {m:?}"),
            Err(ChunkError::ReassemblyBudget { csid: c, max, .. }) => {
                assert_eq!((c, max), (csid, budget));
                refused_at = Some(csid);
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let at = refused_at.expect("the budget never refused a stream");
    assert!(at > 5, "refused too early, at csid {at}");
    assert!(dec.reassembly_bytes() <= budget);
}

#[test]
fn completed_and_aborted_messages_give_their_budget_back() {
    let mut dec = ChunkDecoder::new(limits(200_000));
    let payload = vec![5u8; 150_000];
    for _ in 0..5 {
        // Each 150 kB message alone fits; five in a row only if each
        // returns its bytes when it completes.
        let mut buf = BytesMut::new();
        encode_message(6, 0, 9, 1, &payload, 128, &mut buf);
        let m = dec.decode(&mut buf).unwrap().expect("message");
        assert_eq!(m.payload.len(), payload.len());
        assert_eq!(dec.reassembly_bytes(), 0);
    }
    let mut buf = BytesMut::from(&t0(7, 150_000, 9)[..]);
    buf.extend_from_slice(&[1; 128]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert!(dec.reassembly_bytes() > 0);
    dec.abort(7);
    assert_eq!(dec.reassembly_bytes(), 0);
}

#[test]
fn a_message_as_large_as_the_budget_still_fits() {
    let budget = 300_000;
    let mut dec = ChunkDecoder::new(ChunkLimits {
        max_message_size: budget as u32,
        max_reassembly_bytes: budget,
        ..ChunkLimits::default()
    });
    let payload: Vec<u8> = (0..budget).map(|i| i as u8).collect();
    let mut buf = set_chunk_size_msg(1000);
    encode_message(6, 0, 9, 1, &payload, 1000, &mut buf);
    let mut fed = BytesMut::new();
    let mut got = None;
    for piece in buf.chunks(777) {
        fed.extend_from_slice(piece);
        while let Some(m) = dec.decode(&mut fed).unwrap() {
            got = Some(m);
        }
        assert!(dec.reassembly_bytes() <= budget);
    }
    assert_eq!(got.expect("message").payload, payload);
}

/// One chunk stream's message, fed chunk by chunk, maybe not to the end.
#[derive(Debug, Clone)]
struct Partial {
    len: usize,
    /// Chunks of it that are sent (all of them when larger than the count).
    chunks_sent: usize,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the interleaving, the reserved bytes never pass the budget,
    /// and a peer whose messages in flight add up to no more than the
    /// budget is never refused.
    #[test]
    fn reassembly_stays_within_the_budget(
        msgs in prop::collection::vec(
            (1usize..60_000, 0usize..200).prop_map(|(len, chunks_sent)| Partial { len, chunks_sent }),
            1..12,
        ),
        chunk_size in prop_oneof![1u32..600, 1u32..70_000],
        budget in 1usize..400_000,
    ) {
        let mut dec = ChunkDecoder::new(limits(budget));
        let mut wire = set_chunk_size_msg(chunk_size);
        let mut queues: Vec<Vec<BytesMut>> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let data = vec![i as u8; m.len];
                let mut w = ChunkWriter::new(3 + i as u32, 0, 9, 1, &data, chunk_size);
                let mut chunks = Vec::new();
                while !w.is_done() && chunks.len() < m.chunks_sent.max(1) {
                    let mut c = BytesMut::new();
                    w.write_chunk(&mut c);
                    chunks.push(c);
                }
                chunks.reverse();
                chunks
            })
            .collect();
        // Round robin, one chunk per stream per turn.
        while queues.iter().any(|q| !q.is_empty()) {
            for q in &mut queues {
                if let Some(c) = q.pop() {
                    wire.extend_from_slice(&c);
                }
            }
        }
        let in_flight: usize = msgs.iter().map(|m| m.len).sum();
        loop {
            match dec.decode(&mut wire) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(ChunkError::ReassemblyBudget { .. }) => {
                    prop_assert!(in_flight > budget, "refused with {in_flight} of {budget} in flight");
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
            prop_assert!(dec.reassembly_bytes() <= budget);
        }
        prop_assert!(dec.reassembly_bytes() <= budget);
    }
}

#[test]
fn admission_refuses_at_the_header_before_any_payload() {
    use crate::protocol::chunk::Admission;
    // Before connect: a 16 MiB video header is refused with no payload sent.
    let mut dec = ChunkDecoder::new(ChunkLimits {
        max_message_size: 16 << 20,
        max_reassembly_bytes: 32 << 20,
        ..ChunkLimits::default()
    });
    dec.set_admission(Admission::PreConnect);
    let mut buf = BytesMut::from(&t0(6, 0xFF_FFFF, 9)[..]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::NotAdmitted { type_id: 9, .. })
    ));
    // A user control message (a ping) before connect is refused too.
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    dec.set_admission(Admission::PreConnect);
    let mut buf = BytesMut::from(&t0(2, 6, 4)[..]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::NotAdmitted { type_id: 4, .. })
    ));
    // A small command is admitted; a huge one is not.
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    dec.set_admission(Admission::PreConnect);
    let mut buf = BytesMut::from(&t0(3, 200, 20)[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    let mut buf = BytesMut::from(&t0(4, 1 << 20, 20)[..]);
    assert!(dec.decode(&mut buf).is_err());
    // Connected, not publishing: media refused, commands fine.
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    dec.set_admission(Admission::Connected);
    let mut buf = BytesMut::from(&t0(6, 1000, 8)[..]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::NotAdmitted { type_id: 8, .. })
    ));
    // Publishing: media up to the size limit.
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    dec.set_admission(Admission::Publishing);
    let mut buf = BytesMut::from(&t0(6, 1000, 9)[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
}
