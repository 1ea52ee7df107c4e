//! In-process relay: one publisher's messages fanned out to 1,000
//! in-memory players (serialize once, queue the shared bytes to every
//! player, drain every queue), beside a baseline that copies the same
//! payload once per player.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cascade::egress::{Fanout, Outbox, QueueLimits, RtmpPlayer};
use cascade::hub::{Directory, GopLimits, Hub, HubConfig, StreamMsg};
use cascade::metrics::CoreStats;
use cascade::protocol::session::MediaKind;
use cascade::xcore;

const PLAYERS: usize = 1000;
const FRAME: usize = 4096;

fn setup() -> (Hub, Vec<Rc<Outbox>>) {
    let (mesh, _boxes) = xcore::build::<StreamMsg>(1);
    let config = HubConfig {
        chunk_size: 4096,
        gop: GopLimits::default(),
        publisher_grace: Duration::ZERO,
        max_streams: 16,
    };
    let stats = Rc::new(CoreStats::default());
    let egress = Fanout::new(stats.clone());
    let mut hub = Hub::new(0, config, Arc::new(Directory::new(16)), mesh, stats);
    hub.set_delivery(egress.clone());
    let now = Instant::now();
    hub.publish("live/bench", 1, now).expect("publish");
    let limits = QueueLimits {
        max_bytes: 1 << 30,
        max_duration_ms: u32::MAX,
        disconnect_after: Duration::from_secs(3600),
        coalesce: Duration::ZERO,
        max_control_bytes: 1 << 20,
    };
    let outboxes: Vec<Rc<Outbox>> = (0..PLAYERS)
        .map(|_| Rc::new(Outbox::new(limits.clone())))
        .collect();
    for (i, o) in outboxes.iter().enumerate() {
        let player = RtmpPlayer::new(o.clone(), egress.clone(), "live/bench");
        hub.subscribe("live/bench", 100 + i as u64, player)
            .expect("subscribe");
    }
    // A keyframe opens the GOP so inter frames flow.
    let mut key = vec![0u8; FRAME];
    key[0] = 0x17;
    key[1] = 1;
    hub.ingest("live/bench", MediaKind::Video, 0, Bytes::from(key), now);
    for o in &outboxes {
        while o.try_batch(64, 1 << 20).is_some() {}
    }
    (hub, outboxes)
}

fn relay(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay_1000_players");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes((FRAME * PLAYERS) as u64));
    let mut inter = vec![0u8; FRAME];
    inter[0] = 0x27;
    inter[1] = 1;
    let payload = Bytes::from(inter);

    let (mut hub, outboxes) = setup();
    let mut ts = 0u32;
    group.bench_function(BenchmarkId::new("cascade_fanout", "4KB"), |b| {
        b.iter(|| {
            ts = ts.wrapping_add(33);
            hub.ingest(
                "live/bench",
                MediaKind::Video,
                ts,
                payload.clone(),
                Instant::now(),
            );
            let mut n = 0;
            for o in &outboxes {
                if let Some(batch) = o.try_batch(64, 1 << 20) {
                    n += batch.bufs.len();
                }
            }
            n
        })
    });
    group.bench_function(BenchmarkId::new("baseline_memcpy_per_player", "4KB"), |b| {
        b.iter(|| {
            let mut total = 0;
            for _ in 0..PLAYERS {
                let copy = Bytes::copy_from_slice(&payload);
                total += copy.len();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
