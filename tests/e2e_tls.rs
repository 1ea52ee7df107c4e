//! RTMPS end to end: ffmpeg 9 publishes and plays over `rtmps://` (verifying
//! cascade's certificate against a CA file), plain and TLS clients share
//! streams, SIGHUP swaps the certificate (checked with `openssl s_client`),
//! a slow TLS player is cut off by the slow-player policy, and an edge pulls
//! from an `rtmps://` origin. Certificates are made per test with the
//! openssl CLI. Every step is bounded; the tests run one at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::ops::OpsServer;
use common::{
    decoded_frames, ffmpeg9, free_port, run_with_timeout, tail, temp_dir, tool, wait_playable,
    ChildGuard, Clip, RunOutput,
};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a test node presents: a leaf certificate for 127.0.0.1 and
/// localhost, its key, and the private CA that signed it (what clients
/// trust), as files `<stem>.{crt,key,ca}` in `dir`.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn openssl(args: &[&str]) {
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(args);
    let out = run_with_timeout("openssl", cmd, Duration::from_secs(30));
    assert!(
        out.success(),
        "openssl {args:?}: {}\n{}",
        out.describe(),
        out.stderr
    );
}

fn make_cert(dir: &Path, stem: &str) -> Cert {
    let p = |ext: &str| dir.join(format!("{stem}.{ext}")).display().to_string();
    let (ca, ca_key, csr, cert, key, ext) =
        (p("ca"), p("ca-key"), p("csr"), p("crt"), p("key"), p("ext"));
    let curve = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_subject = format!("/CN=cascade test CA {stem}");
    openssl(
        &[
            &["req", "-x509"][..],
            &curve,
            &[
                "-days",
                "2",
                "-subj",
                &ca_subject,
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
        ]
        .concat(),
    );
    let leaf_subject = format!("/CN=cascade test {stem}");
    openssl(
        &[
            &["req", "-new"][..],
            &curve,
            &["-subj", &leaf_subject, "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    Cert {
        cert: cert.into(),
        key: key.into(),
        ca: ca.into(),
    }
}

/// The base64 body of the first PEM certificate in `text`.
fn pem_body(text: &str) -> Option<String> {
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    let body: String = text[start + 27..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Some(body)
}

/// The certificate the TLS listener on `port` presents, as PEM body.
fn served_cert(port: u16) -> Option<String> {
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost"]);
    let out = run_with_timeout("openssl-s_client", cmd, Duration::from_secs(15));
    pem_body(&out.stdout)
}

fn cert_body(path: &Path) -> String {
    pem_body(&std::fs::read_to_string(path).expect("read cert")).expect("PEM in cert file")
}

/// cascade with an RTMPS listener on a free port (and `--workers 2`).
struct TlsNode {
    ops: OpsServer,
    tls_port: u16,
}

impl TlsNode {
    fn start(cert: &Path, key: &Path, env: &[(&str, &str)]) -> TlsNode {
        let tls_port = free_port();
        let tls_listen = format!("127.0.0.1:{tls_port}");
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut args = vec!["--workers", "2", "--tls-listen", &tls_listen];
        args.extend(["--tls-cert", &cert, "--tls-key", &key]);
        let ops = OpsServer::start(&args, env);
        wait_tcp(tls_port, Duration::from_secs(10));
        TlsNode { ops, tls_port }
    }

    fn rtmps(&self, name: &str) -> String {
        format!("rtmps://127.0.0.1:{}/live/{name}", self.tls_port)
    }

    fn rtmp(&self, name: &str) -> String {
        self.ops.server.url(name)
    }

    fn tls_handshakes(&self, result: &str) -> f64 {
        self.ops
            .metric(&format!(
                "cascade_tls_handshakes_total{{result=\"{result}\"}}"
            ))
            .unwrap_or(0.0)
    }
}

fn wait_tcp(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr = ([127, 0, 0, 1], port).into();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never accepted");
        thread::sleep(Duration::from_millis(50));
    }
}

/// ffmpeg 9 publishing the H.264/AAC clip in a loop to an rtmp:// or
/// rtmps:// URL, trusting `ca` for TLS.
fn publish9(url: &str, ca: &Path) -> ChildGuard {
    let mut cmd = Command::new(ffmpeg9());
    cmd.args(["-hide_banner", "-nostdin", "-v", "info", "-re"])
        .args(["-stream_loop", "-1", "-i"])
        .arg(Clip::H264Aac.path())
        .args(["-c", "copy", "-ca_file"])
        .arg(ca)
        .args(["-f", "flv", url]);
    ChildGuard::spawn("ffmpeg9-publisher", cmd)
}

/// One bounded play of `url` with `ffmpeg` (TLS checked against `ca`),
/// decoding `secs` of media.
fn play(ffmpeg: &Path, url: &str, ca: Option<&Path>, secs: f64) -> RunOutput {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-nostdin", "-nostats", "-v", "info"])
        .args(["-rw_timeout", "5000000"]);
    if let Some(ca) = ca {
        cmd.arg("-ca_file").arg(ca);
    }
    cmd.args(["-i", url, "-t", &secs.to_string()])
        .args(["-progress", "pipe:1", "-f", "null", "-"]);
    run_with_timeout("ffmpeg-player", cmd, Duration::from_secs(30))
}

/// Retries a 2-second play until it decodes video; panics at the deadline.
fn wait_decodes(ffmpeg: &Path, url: &str, ca: Option<&Path>, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let out = play(ffmpeg, url, ca, 2.0);
        let frames = decoded_frames(&out);
        if out.success() && frames > 0 {
            return frames;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never decoded: {}\n{}",
            out.describe(),
            tail(&out.stderr, 30)
        );
        thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn ffmpeg9_publishes_and_plays_over_rtmps_and_plain_players_share_it() {
    let _s = serial();
    let dir = temp_dir("cascade-tls-");
    let c = make_cert(dir.path(), "a");
    let mut node = TlsNode::start(&c.cert, &c.key, &[]);
    let cert = c.ca;

    // TLS publisher; TLS and plain players.
    let mut publisher = publish9(&node.rtmps("tlspub"), &cert);
    let frames = wait_decodes(
        &ffmpeg9(),
        &node.rtmps("tlspub"),
        Some(&cert),
        Duration::from_secs(30),
    );
    assert!(
        frames >= 10,
        "ffmpeg 9 decoded only {frames} frames over rtmps"
    );
    let streams = wait_playable(&node.rtmp("tlspub"), Duration::from_secs(20));
    assert!(
        streams.iter().any(|(k, c)| k == "video" && c == "h264"),
        "{streams:?}"
    );
    let plain = wait_decodes(
        &tool("ffmpeg"),
        &node.rtmp("tlspub"),
        None,
        Duration::from_secs(20),
    );
    assert!(plain > 0);
    assert!(
        publisher.try_status().is_none(),
        "the rtmps publisher stopped: {}",
        tail(&publisher.stderr_text(), 20)
    );
    drop(publisher);

    // Plain publisher; TLS player.
    let _plain_pub = common::publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &node.rtmp("plainpub"),
    );
    let frames = wait_decodes(
        &ffmpeg9(),
        &node.rtmps("plainpub"),
        Some(&cert),
        Duration::from_secs(30),
    );
    assert!(frames > 0);

    // A plain RTMP client on the TLS port is a failed TLS handshake, and
    // hurts nobody.
    let failed_before = node.tls_handshakes("failed");
    let out = play(
        &tool("ffmpeg"),
        &format!("rtmp://127.0.0.1:{}/live/plainpub", node.tls_port),
        None,
        1.0,
    );
    assert!(
        !out.success() || decoded_frames(&out) == 0,
        "plain RTMP played on the TLS port"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.tls_handshakes("failed") <= failed_before {
        assert!(Instant::now() < deadline, "no failed TLS handshake counted");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        node.tls_handshakes("ok") >= 3.0,
        "{}",
        node.ops.get("/metrics")
    );
    node.ops.server.assert_alive();
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_it_when_the_new_one_is_bad() {
    let _s = serial();
    let dir = temp_dir("cascade-tls-");
    let a_certs = make_cert(dir.path(), "a");
    let b_certs = make_cert(dir.path(), "b");
    let (a_cert, a_key, a_ca) = (&a_certs.cert, &a_certs.key, &a_certs.ca);
    let (b_cert, b_key, b_ca) = (&b_certs.cert, &b_certs.key, &b_certs.ca);
    // The node reads these paths; the test swaps their contents.
    let cert = dir.path().join("live.crt");
    let key = dir.path().join("live.key");
    std::fs::copy(a_cert, &cert).unwrap();
    std::fs::copy(a_key, &key).unwrap();
    let mut node = TlsNode::start(&cert, &key, &[]);
    let (a, b) = (cert_body(a_cert), cert_body(b_cert));
    assert_ne!(a, b);
    assert_eq!(served_cert(node.tls_port).as_deref(), Some(a.as_str()));

    // A connection made before the reload keeps working after it.
    let _publisher = publish9(&node.rtmps("reload"), a_ca);
    wait_decodes(
        &ffmpeg9(),
        &node.rtmps("reload"),
        Some(a_ca),
        Duration::from_secs(30),
    );

    std::fs::copy(b_cert, &cert).unwrap();
    std::fs::copy(b_key, &key).unwrap();
    node.ops.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served = served_cert(node.tls_port);
        if served.as_deref() == Some(b.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still serving the old certificate after SIGHUP; log:\n{}",
            tail(&node.ops.server.log(), 20)
        );
        thread::sleep(Duration::from_millis(200));
    }
    // New players verify against the new certificate; the old publisher
    // still feeds the stream.
    wait_decodes(
        &ffmpeg9(),
        &node.rtmps("reload"),
        Some(b_ca),
        Duration::from_secs(20),
    );

    // A broken certificate file: logged, and the good one stays in use.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    node.ops.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.ops.server.log().contains("keeping the old one") {
        assert!(
            Instant::now() < deadline,
            "no error logged for a bad certificate; log:\n{}",
            tail(&node.ops.server.log(), 20)
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(served_cert(node.tls_port).as_deref(), Some(b.as_str()));
    wait_decodes(
        &ffmpeg9(),
        &node.rtmps("reload"),
        Some(b_ca),
        Duration::from_secs(20),
    );
    node.ops.server.assert_alive();
}

/// A TLS player that stops reading is cut off by the slow-player policy
/// (its writes go through the writer task, never the direct send path).
#[test]
fn slow_tls_player_is_disconnected() {
    let _s = serial();
    let dir = temp_dir("cascade-tls-");
    let c = make_cert(dir.path(), "a");
    let env = [
        ("CASCADE_PLAYER_QUEUE_MAX_MS", "1000"),
        ("CASCADE_PLAYER_SLOW_DISCONNECT_MS", "2000"),
    ];
    let node = TlsNode::start(&c.cert, &c.key, &env);
    let _publisher =
        common::publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &node.rtmp("slow"));
    wait_playable(&node.rtmp("slow"), Duration::from_secs(20));

    // ffmpeg 9 remuxes the TLS stream to a pipe nobody reads: it blocks on
    // its stdout and stops reading the socket (with a small receive buffer).
    let mut cmd = Command::new(ffmpeg9());
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-recv_buffer_size", "16384", "-ca_file"])
        .arg(&c.ca)
        .args([
            "-i",
            &node.rtmps("slow"),
            "-c",
            "copy",
            "-f",
            "flv",
            "pipe:1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut stalled = cmd.spawn().expect("start ffmpeg 9");
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut disconnected = false;
    while Instant::now() < deadline {
        let n = node
            .ops
            .metric("cascade_slow_player_disconnects_total")
            .unwrap_or(0.0);
        if n >= 1.0 {
            disconnected = true;
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    let _ = stalled.kill();
    let _ = stalled.wait();
    assert!(
        disconnected,
        "the stalled TLS player was never disconnected; log:\n{}",
        tail(&node.ops.server.log(), 30)
    );
    assert!(node.ops.server.log().contains("slow player disconnected"));
    // The stream itself is fine.
    wait_playable(&node.rtmp("slow"), Duration::from_secs(20));
}

/// A cascade edge pulls from a cascade origin over rtmps://: verified with
/// a private CA file, refused with the bundled roots, accepted unverified with
/// `edge.tls_verify = false`.
#[test]
fn edge_pulls_from_an_rtmps_origin() {
    let _s = serial();
    let dir = temp_dir("cascade-tls-");
    let c = make_cert(dir.path(), "origin");
    let origin = TlsNode::start(&c.cert, &c.key, &[]);
    let cert = c.ca;
    let _publisher = publish9(&origin.rtmps("pulled"), &cert);
    wait_decodes(
        &ffmpeg9(),
        &origin.rtmps("pulled"),
        Some(&cert),
        Duration::from_secs(30),
    );
    let url = format!("rtmps://127.0.0.1:{}/live", origin.tls_port);
    let ca = cert.display().to_string();

    // Verified against the origin's private CA.
    let edge = OpsServer::start(
        &["--workers", "2", "--origin", &url],
        &[("CASCADE_EDGE_TLS_CA_FILE", &ca)],
    );
    let frames = wait_decodes(
        &tool("ffmpeg"),
        &edge.server.url("pulled"),
        None,
        Duration::from_secs(30),
    );
    assert!(frames > 0);
    drop(edge);

    // Bundled roots do not know a self-signed certificate: the pull fails
    // its TLS handshake and the player gets no stream.
    let strict = OpsServer::start(&["--workers", "2", "--origin", &url], &[]);
    let out = play(&tool("ffmpeg"), &strict.server.url("pulled"), None, 1.0);
    assert!(
        !out.success() || decoded_frames(&out) == 0,
        "played through an unverified origin"
    );
    let failures = strict
        .metric("cascade_edge_pull_failures_total{reason=\"tls\"}")
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "{}", strict.get("/metrics"));
    drop(strict);

    // Verification off (a test origin): plays.
    let lax = OpsServer::start(
        &["--workers", "2", "--origin", &url],
        &[("CASCADE_EDGE_TLS_VERIFY", "false")],
    );
    let frames = wait_decodes(
        &tool("ffmpeg"),
        &lax.server.url("pulled"),
        None,
        Duration::from_secs(30),
    );
    assert!(frames > 0);
}

#[test]
fn https_serves_http_flv_and_probes_on_the_same_certificate() {
    let _s = serial();
    let dir = temp_dir("cascade-https-");
    let c = make_cert(dir.path(), "h");
    let https_port = free_port();
    let https = format!("127.0.0.1:{https_port}");
    // The file and environment are checked before the flags apply: the
    // certificate comes by environment too.
    let (cert, key) = (c.cert.display().to_string(), c.key.display().to_string());
    let env = [
        ("CASCADE_TLS_HTTP_LISTEN", https.as_str()),
        ("CASCADE_TLS_CERT", cert.as_str()),
        ("CASCADE_TLS_KEY", key.as_str()),
    ];
    let node = TlsNode::start(&c.cert, &c.key, &env);
    wait_tcp(https_port, Duration::from_secs(10));
    let _publisher = common::publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &node.rtmp("overhttps"),
    );
    let url = format!("https://127.0.0.1:{https_port}/live/overhttps.flv");
    let frames = wait_decodes(&ffmpeg9(), &url, Some(&c.ca), Duration::from_secs(30));
    assert!(
        frames >= 10,
        "ffmpeg 9 decoded only {frames} frames over HTTPS"
    );
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "5", "--cacert"])
        .arg(&c.ca)
        .arg(format!("https://127.0.0.1:{https_port}/healthz"));
    let out = run_with_timeout("curl", cmd, Duration::from_secs(10));
    assert_eq!(out.stdout.trim(), "ok", "{}", out.describe());
    assert!(node.tls_handshakes("ok") >= 2.0);
}
