//! Faults, each judged by what the players on the edges see: a node
//! killed in each upper tier, an edge drained, a bad link into an edge,
//! and every edge restarted in turn. The players are load-tester groups,
//! one per edge, one player per stream (RTMP and HTTP-FLV in turn); they
//! count lost frames from the publisher's stamps, the longest wait between
//! two frames, and timestamps that go backwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::clients::{Players, Seen};
use crate::link::BadLink;
use crate::node::EDGE_DRAIN_MS;
use crate::{Fleet, Home, Stream, EDGES, MIDS, ORIGINS};

/// Players must be back within this after a fault upstream of them.
const GAP_MS: f64 = 3000.0;

/// One group of players per edge in `edges`, one per stream of `pick`.
fn watch(
    fleet: &Fleet,
    what: &str,
    edges: &[usize],
    secs: f64,
    pick: impl Fn(&Stream, usize) -> bool,
) -> Vec<(Players, u64)> {
    edges
        .iter()
        .map(|&e| {
            let streams: Vec<&Stream> = fleet
                .streams
                .iter()
                .filter(|s| s.stamped() && pick(s, e))
                .collect();
            let urls = fleet.play_urls(e, &streams);
            let label = format!("{what} {}", fleet.nodes[e].name);
            let n = urls.len() as u64;
            (fleet.clients.play(&label, &urls, n, secs), n)
        })
        .collect()
}

/// Every stamped stream.
fn all(_: &Stream, _: usize) -> bool {
    true
}

/// Waits for each group; each must have kept every player, seen time go
/// forward only, and never waited `GAP_MS` for a frame.
fn judge(groups: Vec<(Players, u64)>) -> Vec<Seen> {
    groups
        .into_iter()
        .map(|(g, n)| {
            let seen = g.finish();
            println!("{}", seen.line());
            seen.assert_clean(n);
            assert!(seen.max_gap_ms < GAP_MS, "gap: {}", seen.line());
            seen
        })
        .collect()
}

fn secs(s: f64) {
    std::thread::sleep(Duration::from_secs_f64(s));
}

/// Where each stamped stream is published, per tier: key -> publishers'
/// addresses at that tier. Down nodes are skipped.
fn publishers(fleet: &Fleet, tier: &[usize]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &i in tier {
        if fleet.nodes[i].proc.is_none() {
            continue;
        }
        for (key, (publisher, _)) in fleet.nodes[i].streams() {
            if let Some(p) = publisher {
                out.entry(key)
                    .or_default()
                    .push(format!("{}<-{p}", fleet.nodes[i].name));
            }
        }
    }
    out
}

/// Why the fleet is not whole, or None: every stamped stream is
/// published once at the origin tier, once at the mid tier when it came
/// in at an edge (never when it came in at an origin), and once at the
/// edge tier when it came in at an edge.
fn not_whole(fleet: &Fleet) -> Option<String> {
    let (o, m, e) = (
        publishers(fleet, &ORIGINS),
        publishers(fleet, &MIDS),
        publishers(fleet, &EDGES),
    );
    for s in fleet.streams.iter().filter(|s| s.stamped()) {
        let key = s.key();
        let count = |t: &BTreeMap<String, Vec<String>>| t.get(&key).map_or(0, Vec::len);
        let at_edge = usize::from(matches!(s.home, Home::Edge(_)));
        let got = (count(&e), count(&m), count(&o));
        if got != (at_edge, at_edge, 1) {
            return Some(format!(
                "{key} published (edges, mid tier, origins) {got:?}: {:?} {:?} {:?}",
                e.get(&key),
                m.get(&key),
                o.get(&key)
            ));
        }
    }
    None
}

/// Why some node pulls a stream twice, or None: at each tier, each
/// stream has at most one player per node of the tier below (one pull).
fn duplicate_pulls(fleet: &Fleet) -> Option<String> {
    for tier in [&ORIGINS[..], &MIDS[..]] {
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for &i in tier {
            if fleet.nodes[i].proc.is_none() {
                continue;
            }
            for (key, peers) in fleet.nodes[i].players() {
                for p in peers {
                    *seen.entry((key.clone(), p)).or_default() += 1;
                }
            }
        }
        if let Some(((key, peer), n)) = seen.into_iter().find(|(_, n)| *n > 1) {
            return Some(format!("{peer} pulls {key} {n} times"));
        }
    }
    None
}

/// The synthetic streams run at about 55 kbit/s; a copy that circles
/// between nodes (a forward feeding the origin its own pull reads from)
/// runs as fast as the links carry it. So no stream may have taken in
/// more than twice its rate over the whole run (each publisher change
/// replays a GOP, a few kB), on any node.
pub fn assert_no_loops(fleet: &Fleet) {
    let bound = 2.0 * 60_000.0 / 8.0 * fleet.started.elapsed().as_secs_f64() + 100_000.0;
    for n in fleet.nodes.iter().filter(|n| n.proc.is_some()) {
        let m = n.metrics();
        for ((name, stream), bytes) in &m.0 {
            if name == "cascade_stream_bytes_in_total" && *bytes > bound {
                panic!(
                    "{stream} took in {bytes} bytes on {} (bound {bound:.0}): a loop",
                    n.name
                );
            }
        }
    }
}

/// An origin killed (SIGKILL): the forwards it took move to the other
/// origin, its publishers too, and the mid node pulling those streams
/// follows them; players on every edge keep going.
pub fn origin_killed(fleet: &mut Fleet) {
    // The faults play the load tester's streams; ffmpeg's end here.
    fleet.ffmpeg.clear();
    let victim = ORIGINS[0];
    let groups = watch(fleet, "origin kill", &EDGES, 9.0, all);
    secs(3.0);
    fleet.nodes[victim].kill();
    let t0 = Instant::now();
    judge(groups);
    fleet.wait_for(
        "every stream whole without origin1",
        Duration::from_secs(10),
        not_whole,
    );
    println!(
        "origin killed: every stream at origin2 {:.1} s after the kill",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(duplicate_pulls(fleet), None);
    fleet.print_nodes("origin1 killed");
    assert_no_loops(fleet);
    fleet.nodes[victim].start();
}

/// A mid-tier node killed: the edges pulling from it fail over to the
/// other, and the edges' forwards it took move there too.
pub fn mid_killed(fleet: &mut Fleet) {
    let victim = MIDS[0];
    let groups = watch(fleet, "mid kill", &EDGES, 10.0, all);
    secs(3.0);
    fleet.nodes[victim].kill();
    judge(groups);
    fleet.wait_for(
        "every stream whole without mid1",
        Duration::from_secs(10),
        not_whole,
    );
    assert_eq!(duplicate_pulls(fleet), None);
    fleet.print_nodes("mid1 killed");
    assert_no_loops(fleet);
    fleet.nodes[victim].start();
}

/// An edge drained (SIGTERM): its publishers get the reconnect request
/// and move to the next edge, its players are done within the drain
/// time, and the players elsewhere keep going.
pub fn edge_drained(fleet: &mut Fleet) {
    let (k, victim) = (3, EDGES[3]);
    let others: Vec<usize> = EDGES.iter().copied().filter(|&e| e != victim).collect();
    let groups = watch(fleet, "drain", &others, 9.0, all);
    let on_victim = watch(fleet, "drain", &[victim], 9.0, all);
    secs(3.0);
    let moves_before = fleet.publishers[k].moves().len();
    let limit = Duration::from_millis(EDGE_DRAIN_MS + 3000);
    let (took, status) = fleet.nodes[victim].drain(limit);
    println!(
        "drain: edge4 exited {status:?} after {:.2} s",
        took.as_secs_f64()
    );
    assert_eq!(
        status,
        Some(0),
        "edge4's drain:\n{}",
        fleet.nodes[victim].log_tail()
    );
    assert!(
        took <= Duration::from_millis(EDGE_DRAIN_MS + 1000),
        "edge4 took {took:?} to drain"
    );
    judge(groups);
    for (g, n) in on_victim {
        let seen = g.finish();
        println!("{}", seen.line());
        assert_eq!(seen.connected, n, "{}", seen.line());
        assert_eq!(
            seen.up_at_end,
            0,
            "edge4's players outlived its drain: {}",
            seen.line()
        );
    }
    let moves: Vec<String> = fleet.publishers[k].moves()[moves_before..].to_vec();
    let per_edge = fleet.publishers[k].streams.len();
    assert_eq!(
        moves.len(),
        per_edge,
        "edge4's publishers' moves: {moves:#?}"
    );
    assert!(
        moves.iter().all(|m| m.contains("ReconnectRequest")),
        "moved without being asked: {moves:#?}"
    );
    fleet.wait_for(
        "every stream whole without edge4",
        Duration::from_secs(10),
        not_whole,
    );
    assert_no_loops(fleet);
    fleet.nodes[victim].start();
}

/// 200 ms more and 2% of the packets lost on the link from the mid tier
/// into edge2: edge2's players of streams it pulls see the delay, and
/// TCP's retransmissions keep them from seeing loss.
pub fn bad_link(fleet: &mut Fleet) {
    let victim = EDGES[1];
    let mids: Vec<String> = MIDS.iter().map(|&m| fleet.nodes[m].ip.clone()).collect();
    let pulled = |s: &Stream, _: usize| !matches!(s.home, Home::Edge(e) if e == victim);
    let link = BadLink::start(
        &fleet.nodes[victim].ns,
        &mids,
        Duration::from_millis(200),
        2.0,
    );
    let groups = watch(fleet, "bad link", &[victim, EDGES[2]], 10.0, pulled);
    let seen = judge(groups);
    let delayed = link.delayed.load(std::sync::atomic::Ordering::Relaxed);
    drop(link);
    println!("bad link: {delayed} packets held 200 ms, 2% dropped");
    assert!(delayed > 1000, "the link held only {delayed} packets");
    let (slow, normal) = (&seen[0], &seen[1]);
    assert_eq!(slow.lost, 0, "{}", slow.line());
    assert!(slow.p50_ms >= 200.0, "no added latency: {}", slow.line());
    assert!(
        normal.p50_ms < 200.0,
        "the other edge is slow too: {}",
        normal.line()
    );
}

/// Every edge drained and restarted, one at a time: its publishers move
/// on each time, players on the next edge keep going, and at the end
/// every stream is published once per tier and plays on every edge.
pub fn rolling_restart_of_every_edge(fleet: &mut Fleet) {
    let limit = Duration::from_millis(EDGE_DRAIN_MS + 3000);
    for (k, &e) in EDGES.iter().enumerate() {
        let next = EDGES[(k + 1) % EDGES.len()];
        let groups = watch(fleet, "rolling", &[next], 6.0, all);
        secs(1.0);
        let (took, status) = fleet.nodes[e].drain(limit);
        assert_eq!(
            status,
            Some(0),
            "{}:\n{}",
            fleet.nodes[e].name,
            fleet.nodes[e].log_tail()
        );
        fleet.nodes[e].start();
        println!(
            "rolling: {} drained in {:.2} s and back",
            fleet.nodes[e].name,
            took.as_secs_f64()
        );
        judge(groups);
    }
    fleet.wait_for(
        "every stream whole after the roll",
        Duration::from_secs(10),
        not_whole,
    );
    assert_no_loops(fleet);
    assert_eq!(duplicate_pulls(fleet), None);
    let groups = watch(fleet, "after the roll", &EDGES, 5.0, all);
    for seen in judge(groups) {
        assert_eq!(seen.lost, 0, "{}", seen.line());
    }
    fleet.assert_publishers_alive();
}
