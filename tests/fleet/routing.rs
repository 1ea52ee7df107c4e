//! Routing and scale-out: where each stream lives, and how many copies of
//! it cross each tier, read from the nodes themselves (the streams and
//! clients APIs and `/metrics`), with 1,000 players on the edges.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Fleet, Home, EDGES, MIDS, ORIGINS};

/// Why the published streams are not (yet) where hashing puts them, or
/// None: each stream published at an edge is published (by that edge's
/// forward) at exactly the mid node its key hashes to, and from there (by
/// that node's forward) at exactly the origin it hashes to; a stream
/// published at an origin is there only.
fn misplaced(fleet: &Fleet) -> Option<String> {
    let tier = |ids: &[usize]| -> Vec<BTreeMap<String, (Option<String>, bool)>> {
        ids.iter().map(|&i| fleet.nodes[i].streams()).collect()
    };
    let (origins, mids) = (tier(&ORIGINS), tier(&MIDS));
    for s in &fleet.streams {
        let key = s.key();
        let (want_mid, want_origin) = (fleet.mid_for(&key), fleet.origin_for(&key));
        // (publisher at the hashed mid node, publisher at the hashed origin)
        let (mid_from, origin_from) = match s.home {
            Home::Edge(e) | Home::Ffmpeg(e) => (
                Some(Some(fleet.nodes[e].ip.clone())),
                fleet.nodes[want_mid].ip.clone(),
            ),
            Home::Origin(_) => (None, fleet.clients_ip()),
        };
        for (k, &m) in MIDS.iter().enumerate() {
            let got = mids[k].get(&key).map(|(p, _)| p.clone());
            let want = if m == want_mid {
                mid_from.clone()
            } else {
                None
            };
            if got != want {
                return Some(format!(
                    "{key} at {}: publisher {got:?}, want {want:?}",
                    fleet.nodes[m].name
                ));
            }
        }
        for (k, &o) in ORIGINS.iter().enumerate() {
            let got = origins[k].get(&key).and_then(|(p, _)| p.clone());
            let want = (o == want_origin).then(|| origin_from.clone());
            if got != want {
                return Some(format!(
                    "{key} at {}: publisher {got:?}, want {want:?}",
                    fleet.nodes[o].name
                ));
            }
        }
    }
    None
}

/// Part 2: with hashing at every tier, a publish at any edge reaches the
/// mid node and the origin that every node's pulls hash to.
pub fn every_node_agrees_where_each_stream_lives(fleet: &mut Fleet) {
    fleet.wait_for(
        "every stream published where its key hashes",
        Duration::from_secs(20),
        misplaced,
    );
    fleet.assert_publishers_alive();
    let mut per_mid = BTreeMap::new();
    for s in &fleet.streams {
        *per_mid
            .entry(fleet.nodes[fleet.mid_for(&s.key())].name.clone())
            .or_insert(0) += 1;
    }
    println!(
        "routing: {} streams, each published at exactly the mid node and origin its key hashes to (per mid node: {per_mid:?})",
        fleet.streams.len()
    );
}

/// Part 3: 1,000 players over every stream on every edge. Each edge pulls
/// a stream once, from the mid node its key hashes to; each mid node pulls
/// once from the origin; so an origin's egress per stream is the number of
/// mid nodes pulling it, and a mid node's the number of edges pulling it,
/// whatever the number of players. A few players on the mid nodes
/// themselves, of the streams published at the origins, make both mid
/// nodes pull those: their origin's egress is then 2, still not 4 (edges)
/// nor hundreds (players).
pub fn origin_egress_is_one_copy_per_mid_pull(fleet: &mut Fleet) {
    const PER_EDGE: u64 = 250;
    /// Players on each mid node, over the streams published at origins.
    const DIRECT: u64 = 8;
    let all: Vec<&crate::Stream> = fleet.streams.iter().collect();
    let groups: Vec<_> = EDGES
        .iter()
        .map(|&e| {
            let urls = fleet.play_urls(e, &all);
            let label = format!("scale {}", fleet.nodes[e].name);
            fleet.clients.play(&label, &urls, PER_EDGE, 14.0)
        })
        .collect();
    let at_origin: Vec<&crate::Stream> = fleet
        .streams
        .iter()
        .filter(|s| matches!(s.home, Home::Origin(_)))
        .collect();
    let direct: Vec<_> = MIDS
        .iter()
        .map(|&m| {
            let urls: Vec<String> = at_origin
                .iter()
                .map(|s| fleet.nodes[m].rtmp(&s.name))
                .collect();
            let label = format!("scale {} direct", fleet.nodes[m].name);
            fleet.clients.play(&label, &urls, DIRECT, 14.0)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(8));
    let cli = fleet.clients_ip();

    // Who pulls what, from whom: the upstream's clients are the pulls.
    let mid_players: Vec<_> = MIDS.iter().map(|&m| fleet.nodes[m].players()).collect();
    let origin_players: Vec<_> = ORIGINS.iter().map(|&o| fleet.nodes[o].players()).collect();
    let mid_streams: Vec<_> = MIDS.iter().map(|&m| fleet.nodes[m].streams()).collect();
    let origin_metrics: Vec<_> = ORIGINS.iter().map(|&o| fleet.nodes[o].metrics()).collect();
    let mid_metrics: Vec<_> = MIDS.iter().map(|&m| fleet.nodes[m].metrics()).collect();
    let edge_metrics: Vec<_> = EDGES.iter().map(|&e| fleet.nodes[e].metrics()).collect();
    fleet.print_nodes("1,000 players on the edges");
    crate::faults::assert_no_loops(fleet);

    let mut edge_pulls_total = 0;
    let mut mid_pulls_total = 0;
    for s in &fleet.streams {
        let key = s.key();
        let want_mid = fleet.mid_for(&key);
        let home_edge = match s.home {
            Home::Edge(e) | Home::Ffmpeg(e) => Some(e),
            Home::Origin(_) => None,
        };
        // Every edge but the publishing one pulls it, once, from want_mid.
        let mut want_edges: Vec<String> = EDGES
            .iter()
            .filter(|&&e| Some(e) != home_edge)
            .map(|&e| fleet.nodes[e].ip.clone())
            .collect();
        want_edges.sort();
        for (k, &m) in MIDS.iter().enumerate() {
            let mut got = mid_players[k].get(&key).cloned().unwrap_or_default();
            let direct_here = got.iter().filter(|p| **p == cli).count();
            got.retain(|p| *p != cli);
            got.sort();
            let want = if m == want_mid {
                want_edges.clone()
            } else {
                Vec::new()
            };
            assert_eq!(
                got, want,
                "{key}: players at {} (the edges' pulls)",
                fleet.nodes[m].name
            );
            // Egress from /metrics agrees with the connections.
            let egress = mid_metrics[k].stream("cascade_stream_players", &key);
            assert_eq!(
                egress as usize,
                want.len() + direct_here,
                "{key}: egress of {}",
                fleet.nodes[m].name
            );
        }
        edge_pulls_total += want_edges.len();
        // Mid nodes pulling it: those where it is not published but pulled.
        let mut pulling: Vec<String> = MIDS
            .iter()
            .enumerate()
            .filter(|(k, _)| mid_streams[*k].get(&key).is_some_and(|(_, pulled)| *pulled))
            .map(|(_, &m)| fleet.nodes[m].ip.clone())
            .collect();
        pulling.sort();
        mid_pulls_total += pulling.len();
        let origin_egress: f64 = origin_metrics
            .iter()
            .map(|m| m.stream("cascade_stream_players", &key))
            .sum();
        assert_eq!(
            origin_egress as usize,
            pulling.len(),
            "{key}: origin egress per stream vs mid nodes pulling it"
        );
        for (k, &o) in ORIGINS.iter().enumerate() {
            let mut got = origin_players[k].get(&key).cloned().unwrap_or_default();
            got.sort();
            let want = if o == fleet.origin_for(&key) {
                pulling.clone()
            } else {
                Vec::new()
            };
            assert_eq!(got, want, "{key}: pulls at {}", fleet.nodes[o].name);
        }
        match s.home {
            // Published at a mid node by a forward: no mid node pulls it.
            Home::Edge(_) | Home::Ffmpeg(_) => assert!(pulling.is_empty(), "{key}: {pulling:?}"),
            // Played at both mid nodes: each pulls it once.
            Home::Origin(_) => {
                let mut both: Vec<String> =
                    MIDS.iter().map(|&m| fleet.nodes[m].ip.clone()).collect();
                both.sort();
                assert_eq!(pulling, both, "{key}");
            }
        }
    }
    let players: f64 = edge_metrics.iter().map(|m| m.get("cascade_players")).sum();
    let out = |ms: &[crate::node::Metrics]| -> f64 {
        ms.iter().map(|m| m.get("cascade_bytes_out_total")).sum()
    };
    println!(
        "scale-out: {players} players on the edges; {edge_pulls_total} edge pulls at the mid tier, {mid_pulls_total} mid pulls at the origins (both mid nodes pull each of the {} streams published at an origin); bytes out: edges {:.0}, mid tier {:.0}, origins {:.0}",
        at_origin.len(),
        out(&edge_metrics),
        out(&mid_metrics),
        out(&origin_metrics)
    );
    assert_eq!(
        players as u64,
        PER_EDGE * EDGES.len() as u64,
        "players on the edges"
    );
    for (g, n) in groups
        .into_iter()
        .map(|g| (g, PER_EDGE))
        .chain(direct.into_iter().map(|g| (g, DIRECT)))
    {
        let seen = g.finish();
        println!("{}", seen.line());
        seen.assert_clean(n);
        assert_eq!(seen.lost, 0, "{}", seen.line());
    }
    fleet.assert_publishers_alive();
}
