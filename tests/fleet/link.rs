//! A bad link into one host: packets from some peers arrive late and some
//! never arrive.
//!
//! This is `tc netem`'s job, but the kernels we run on are built without
//! `sch_netem` (and without `sch_fq`, which rules out timestamped eBPF
//! delay too). What they do have is netfilter: the loss is an iptables
//! `statistic` rule that drops a random share of the packets, and the
//! delay is an NFQUEUE whose packets a thread of this test holds for the
//! delay before letting them through (a netlink socket, no library). Both
//! act on the receiving host's INPUT chain, for packets from the given
//! peers only, so the host's own players are untouched by the rules.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::net::run;

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
/// The queue number the rules send packets to.
const QUEUE: u16 = 7;

/// An impaired link; the rules go and the held packets are released on drop.
pub struct BadLink {
    ns: String,
    rules: Vec<Vec<String>>,
    stop: Arc<AtomicBool>,
    pub delayed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl BadLink {
    /// Packets into namespace `ns` from `peers` wait `delay` and `loss_pct`
    /// percent of them are dropped.
    pub fn start(ns: &str, peers: &[String], delay: Duration, loss_pct: f64) -> BadLink {
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (ns, stop, delayed) = (ns.to_string(), stop.clone(), delayed.clone());
            std::thread::spawn(move || hold(&ns, delay, &stop, &delayed, ready_tx))
        };
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the NFQUEUE thread did not bind its queue");
        let mut link = BadLink {
            ns: ns.to_string(),
            rules: Vec::new(),
            stop,
            delayed,
            thread: Some(thread),
        };
        let prob = format!("{:.4}", loss_pct / 100.0);
        let queue = QUEUE.to_string();
        for peer in peers {
            let peer = peer.as_str();
            link.rule(
                &["-s", peer, "-m", "statistic", "--mode", "random"]
                    .into_iter()
                    .chain(["--probability", &prob, "-j", "DROP"])
                    .collect::<Vec<_>>(),
            );
            link.rule(&[
                "-s",
                peer,
                "-j",
                "NFQUEUE",
                "--queue-num",
                &queue,
                "--queue-bypass",
            ]);
        }
        link
    }

    fn rule(&mut self, spec: &[&str]) {
        let spec: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
        let mut args = vec!["netns", "exec", &self.ns, "iptables", "-A", "INPUT"];
        args.extend(spec.iter().map(String::as_str));
        run("ip", &args);
        self.rules.push(spec);
    }
}

impl Drop for BadLink {
    fn drop(&mut self) {
        for spec in std::mem::take(&mut self.rules) {
            let mut args = vec!["netns", "exec", &self.ns, "iptables", "-D", "INPUT"];
            args.extend(spec.iter().map(String::as_str));
            let _ = std::process::Command::new("ip").args(&args).status();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The queue's reader: binds queue [`QUEUE`] in namespace `ns`, then
/// gives each packet its verdict (accept) `delay` after it arrived, in
/// arrival order, until `stop`.
fn hold(
    ns: &str,
    delay: Duration,
    stop: &AtomicBool,
    delayed: &AtomicU64,
    ready: std::sync::mpsc::Sender<()>,
) {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: plain syscalls on descriptors this thread owns.
    let fd = unsafe {
        assert_eq!(
            libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET),
            0,
            "setns"
        );
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER)
    };
    assert!(
        fd >= 0,
        "netlink socket: {}",
        std::io::Error::last_os_error()
    );
    let sock = Sock(fd);
    sock.set_timeout(Duration::from_millis(5));
    // Bind the queue, metadata only (the verdict needs just the id), and
    // room for everything a delay keeps in flight.
    let mut cmd = vec![NFQNL_CFG_CMD_BIND, 0];
    cmd.extend_from_slice(&0u16.to_be_bytes());
    sock.send(NFQNL_MSG_CONFIG, &[(NFQA_CFG_CMD, cmd)]);
    let mut params = 0xffffu32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    sock.send(
        NFQNL_MSG_CONFIG,
        &[
            (NFQA_CFG_PARAMS, params),
            (NFQA_CFG_QUEUE_MAXLEN, 65_536u32.to_be_bytes().to_vec()),
        ],
    );
    let _ = ready.send(());
    let mut held: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, id) = held.pop_front().expect("front");
            let mut v = NF_ACCEPT.to_be_bytes().to_vec();
            v.extend_from_slice(&id.to_be_bytes());
            sock.send(NFQNL_MSG_VERDICT, &[(NFQA_VERDICT_HDR, v)]);
        }
        let n = sock.recv(&mut buf);
        for id in packet_ids(&buf[..n]) {
            held.push_back((Instant::now() + delay, id));
            delayed.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Release what is still held, at once.
    for (_, id) in held {
        let mut v = NF_ACCEPT.to_be_bytes().to_vec();
        v.extend_from_slice(&id.to_be_bytes());
        sock.send(NFQNL_MSG_VERDICT, &[(NFQA_VERDICT_HDR, v)]);
    }
}

struct Sock(i32);

impl Sock {
    fn set_timeout(&self, d: Duration) {
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: d.as_micros() as libc::suseconds_t,
        };
        // SAFETY: a valid timeval for our own socket.
        unsafe {
            libc::setsockopt(
                self.0,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
    }

    /// One nfnetlink message to the kernel: header, nfgenmsg (queue in
    /// res_id), attributes.
    fn send(&self, msg: u16, attrs: &[(u16, Vec<u8>)]) {
        let mut body = vec![libc::AF_UNSPEC as u8, 0];
        body.extend_from_slice(&QUEUE.to_be_bytes());
        for (kind, data) in attrs {
            let len = 4 + data.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(data);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut m = Vec::with_capacity(16 + body.len());
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
        m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&body);
        // SAFETY: sending our own buffer on our own socket (to the kernel:
        // a zeroed sockaddr_nl is pid 0).
        let rc = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.0,
                m.as_ptr() as *const libc::c_void,
                m.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        assert!(
            rc == m.len() as isize,
            "netlink send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Bytes of one datagram (0 on timeout).
    fn recv(&self, buf: &mut [u8]) -> usize {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        n.max(0) as usize
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(self.0) };
    }
}

/// The packet ids of the queued-packet messages in one datagram.
fn packet_ids(mut data: &[u8]) -> Vec<u32> {
    let mut ids = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        if len < 16 || len > data.len() {
            break;
        }
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            // Attributes follow the 16-byte header and 4-byte nfgenmsg.
            let mut attrs = &data[20..len];
            while attrs.len() >= 4 {
                let alen = u16::from_ne_bytes(attrs[0..2].try_into().unwrap()) as usize;
                let akind = u16::from_ne_bytes(attrs[2..4].try_into().unwrap()) & 0x3fff;
                if alen < 4 || alen > attrs.len() {
                    break;
                }
                if akind == NFQA_PACKET_HDR && alen >= 8 {
                    ids.push(u32::from_be_bytes(attrs[4..8].try_into().unwrap()));
                }
                attrs = &attrs[alen.next_multiple_of(4).min(attrs.len())..];
            }
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    ids
}
