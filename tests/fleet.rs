//! A fleet, not a node: 2 origins, 2 mid-tier nodes and 4 edges (release
//! builds), each in its own network namespace with its own address on a
//! bridge, `edge.mode = "hash"` and `forward_publish` at every tier below
//! the origins; load-tester and ffmpeg publishers and load-tester players
//! (RTMP and HTTP-FLV) on a clients' host. One test walks it through
//! routing, scale-out and faults and prints what every node and every
//! group of players saw. See README "Running a fleet".
//!
//! Needs root (namespaces, iptables); fails, never skips, without them.

mod common;

#[path = "fleet/clients.rs"]
mod clients;
#[path = "fleet/faults.rs"]
mod faults;
#[path = "fleet/link.rs"]
mod link;
#[path = "fleet/net.rs"]
mod net;
#[path = "fleet/node.rs"]
mod node;
#[path = "fleet/routing.rs"]
mod routing;

use std::time::{Duration, Instant};

use cascade::upstream::select::{order, Mode, Sticky};
use clients::{Clients, Publisher};
use common::ChildGuard;
use net::Net;
use node::{Node, Tier};

/// Streams published at each edge by the load tester.
const PER_EDGE: usize = 12;
/// Streams published at the edges by ffmpeg (one each on two edges).
const FFMPEG: usize = 2;
/// Streams published straight at their origin (an origin-tier ingest).
const AT_ORIGIN: usize = 4;

/// Where a stream was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// The load tester at edge `nodes[i]`.
    Edge(usize),
    /// ffmpeg at edge `nodes[i]`.
    Ffmpeg(usize),
    /// The load tester at origin `nodes[i]`.
    Origin(usize),
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub name: String,
    pub home: Home,
}

impl Stream {
    pub fn key(&self) -> String {
        format!("live/{}", self.name)
    }

    /// Published by the load tester (stamped, and it moves when asked).
    pub fn stamped(&self) -> bool {
        !matches!(self.home, Home::Ffmpeg(_))
    }
}

pub struct Fleet {
    // Fields drop in order: the clients first, then the nodes.
    pub publishers: Vec<Publisher>,
    pub ffmpeg: Vec<ChildGuard>,
    pub clients: Clients,
    /// Origins, then the mid tier, then the edges.
    pub nodes: Vec<Node>,
    pub streams: Vec<Stream>,
    pub started: Instant,
    _dir: tempfile::TempDir,
    // Last: the namespaces go once every process in them is gone.
    _net: Net,
}

pub const ORIGINS: [usize; 2] = [0, 1];
pub const MIDS: [usize; 2] = [2, 3];
pub const EDGES: [usize; 4] = [4, 5, 6, 7];

impl Fleet {
    fn build() -> Fleet {
        let started = Instant::now();
        let bin = common::abuse::release_cascade();
        let loadtest = common::abuse::release_loadtest();
        let dir = common::temp_dir("fleet");
        let mut net = Net::new();
        let cli = net.host("cli", 100);
        let mut nodes: Vec<Node> = Vec::new();
        let tiers = [
            (Tier::Origin, "origin", 11u8, 2usize),
            (Tier::Mid, "mid", 21, 2),
            (Tier::Edge, "edge", 31, 4),
        ];
        let site = node::Site {
            dir: dir.path().to_path_buf(),
            bin,
            probe_ns: cli.clone(),
        };
        let mut above: Vec<String> = Vec::new();
        for (tier, name, first, count) in tiers {
            let mut this = Vec::new();
            for i in 0..count {
                let octet = first + i as u8;
                let name = format!("{name}{}", i + 1);
                let ns = net.host(&name, octet);
                let n = Node::new(&name, tier, ns, octet, &above, &site);
                this.push(n.origin_url());
                nodes.push(n);
            }
            above = this;
        }
        for n in &mut nodes {
            n.start();
        }
        let clients = Clients {
            ns: cli,
            loadtest,
            dir: dir.path().to_path_buf(),
        };
        let mut fleet = Fleet {
            nodes,
            streams: Vec::new(),
            clients,
            publishers: Vec::new(),
            ffmpeg: Vec::new(),
            started,
            _dir: dir,
            _net: net,
        };
        fleet.publish_all();
        fleet
    }

    /// 48 load-tester streams and 2 ffmpeg streams on the edges, and 4
    /// load-tester streams at the origin their key hashes to.
    fn publish_all(&mut self) {
        for (k, &e) in EDGES.iter().enumerate() {
            let names: Vec<String> = (0..PER_EDGE).map(|j| format!("e{}s{j}", k + 1)).collect();
            let urls: Vec<String> = names.iter().map(|n| self.nodes[e].rtmp(n)).collect();
            // Moving on: the next edges in turn (a load balancer's choice).
            let move_to: Vec<String> = (1..EDGES.len())
                .map(|d| self.nodes[EDGES[(k + d) % EDGES.len()]].authority())
                .collect();
            self.publishers.push(self.clients.publish(&urls, &move_to));
            for n in names {
                self.streams.push(Stream {
                    name: n,
                    home: Home::Edge(e),
                });
            }
        }
        for f in 0..FFMPEG {
            let e = EDGES[f * 2];
            let name = format!("ff{}", f + 1);
            self.ffmpeg
                .push(self.clients.ffmpeg(&self.nodes[e].rtmp(&name)));
            self.streams.push(Stream {
                name,
                home: Home::Ffmpeg(e),
            });
        }
        for &o in &ORIGINS {
            let names: Vec<String> = (0..64)
                .map(|j| format!("o{j}"))
                .filter(|n| self.origin_for(&format!("live/{n}")) == o)
                .take(AT_ORIGIN / ORIGINS.len())
                .collect();
            let urls: Vec<String> = names.iter().map(|n| self.nodes[o].rtmp(n)).collect();
            let other = ORIGINS
                .iter()
                .find(|&&x| x != o)
                .copied()
                .expect("two origins");
            let move_to = vec![self.nodes[other].authority()];
            self.publishers.push(self.clients.publish(&urls, &move_to));
            for n in names {
                self.streams.push(Stream {
                    name: n,
                    home: Home::Origin(o),
                });
            }
        }
    }

    /// The clients' host: publishers and players connect from here.
    pub fn clients_ip(&self) -> String {
        format!("{}.100", net::SUBNET)
    }

    fn urls(&self, tier: &[usize]) -> Vec<String> {
        tier.iter().map(|&i| self.nodes[i].origin_url()).collect()
    }

    /// The mid node every edge asks for (and forwards) `key`.
    pub fn mid_for(&self, key: &str) -> usize {
        MIDS[order(Mode::Hash, &self.urls(&MIDS), key, &Sticky::default())[0]]
    }

    /// The origin every mid node asks for (and forwards) `key`.
    pub fn origin_for(&self, key: &str) -> usize {
        ORIGINS[order(Mode::Hash, &self.urls(&ORIGINS), key, &Sticky::default())[0]]
    }

    /// Player URLs on edge `e` for `streams`: RTMP and HTTP-FLV in turn.
    pub fn play_urls(&self, e: usize, streams: &[&Stream]) -> Vec<String> {
        streams
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i % 2 == 0 {
                    self.nodes[e].rtmp(&s.name)
                } else {
                    self.nodes[e].flv(&s.name)
                }
            })
            .collect()
    }

    pub fn assert_publishers_alive(&mut self) {
        for p in &mut self.publishers {
            p.assert_alive();
        }
    }

    /// The per-node table: streams, players, pulls, bytes in and out.
    pub fn print_nodes(&self, title: &str) {
        println!(
            "\n--- {title} (t = {:.0} s) ---",
            self.started.elapsed().as_secs_f64()
        );
        println!(
            "{:<8} {:>7} {:>7} {:>5} {:>12} {:>12} {:>12}",
            "node", "streams", "players", "pulls", "bytes in", "bytes out", "forwarded"
        );
        for n in &self.nodes {
            if n.proc.is_none() {
                println!("{:<8} (down)", n.name);
                continue;
            }
            let m = n.metrics();
            println!(
                "{:<8} {:>7} {:>7} {:>5} {:>12} {:>12} {:>12}",
                n.name,
                m.get("cascade_streams"),
                m.get("cascade_players"),
                m.get("cascade_edge_pulls"),
                m.get("cascade_bytes_in_total"),
                m.get("cascade_bytes_out_total"),
                m.get("cascade_forwarded_bytes_total"),
            );
        }
    }

    /// Polls `check` (which returns why it is not yet true) until it holds.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&Fleet) -> Option<String>) {
        let deadline = Instant::now() + limit;
        loop {
            let Some(why) = check(self) else { return };
            if Instant::now() >= deadline {
                panic!("{what}: still {why} after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Fleet {
    /// On a failure (or with `FLEET_KEEP_LOGS` set), every node's whole
    /// log (the guards print only tails).
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("FLEET_KEEP_LOGS").is_none() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("cascade-fleet-logs-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        for n in &self.nodes {
            let _ = std::fs::write(dir.join(format!("{}.log", n.name)), n.full_log());
        }
        eprintln!("fleet: node logs in {}", dir.display());
    }
}

#[test]
fn a_fleet_of_eight_nodes_routes_scales_out_and_rides_through_faults() {
    let mut fleet = Fleet::build();
    println!(
        "fleet up: {} nodes, {} streams, in {:.1} s",
        fleet.nodes.len(),
        fleet.streams.len(),
        fleet.started.elapsed().as_secs_f64()
    );
    routing::every_node_agrees_where_each_stream_lives(&mut fleet);
    routing::origin_egress_is_one_copy_per_mid_pull(&mut fleet);
    faults::origin_killed(&mut fleet);
    faults::mid_killed(&mut fleet);
    faults::edge_drained(&mut fleet);
    faults::bad_link(&mut fleet);
    faults::rolling_restart_of_every_edge(&mut fleet);
    fleet.print_nodes("end");
    println!(
        "\nfleet run: {:.0} s",
        fleet.started.elapsed().as_secs_f64()
    );
}
