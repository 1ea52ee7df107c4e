#!/usr/bin/env bash
# Side-by-side cost of cascade, nginx-rtmp and the kernel floor under the
# same load: each server pinned to one core, the harness to another, the
# same stream and player counts in turn. Prints one table row per server
# and player count, with cascade's cost as a ratio to nginx-rtmp and to the
# floor measured in the same run, and (for HTTP-FLV or WebSocket-FLV
# players) to cascade's own RTMP players in the same run.
#
# Players speak RTMP, HTTP-FLV, WebSocket-FLV or Low-Latency HLS: PROTO
# sets it for every server, a suffix on a server's name sets it for that
# server alone (cascade-rtmp, cascade-httpflv, cascade-wsflv,
# cascade-llhls, cascade-llhlsbr; also with @W and for baseline). So SERVERS="cascade cascade-httpflv" measures cascade with RTMP
# players and with HTTP-FLV players side by side, and the "vs rtmp" column
# gives the second's core-s/Gbit over the first's (with PROTO=http-flv the
# same pair is SERVERS="cascade-rtmp cascade"). The publisher always
# speaks RTMP. A cascade whose players use HTTP gets --http 127.0.0.1:HTTP_PORT
# and they play http://127.0.0.1:HTTP_PORT/live/bench.flv (ws:// for
# WebSocket-FLV; http://127.0.0.1:HTTP_PORT/live/bench/index.m3u8 for LL-HLS,
# each player on two keep-alive connections: blocking playlist reloads and
# preload-hinted parts; LL-HLS with byte-range parts adds ?parts=byterange,
# and its players stream each segment in one range request with one
# blocking reload per segment). nginx-rtmp and the floor have no HTTP players: their
# players always use RTMP, whatever PROTO says (the "proto" column shows
# it), so their ratios to an HTTP cascade compare across protocols.
#
# nginx-hls is nginx-rtmp's ordinary HLS: the same nginx takes the RTMP
# publish and writes MPEG-TS segments (hls_fragment 2s,
# hls_playlist_length 10s) to a directory under OUT, and serves that
# directory on HTTP_PORT (sendfile on, tcp_nopush on). Its players (proto
# "hls") poll http://127.0.0.1:HTTP_PORT/hls/bench.m3u8 and fetch whole
# segments; the harness reads TS as opaque bytes, so these rows have bytes
# and request counts but no latency and no first frame. "vs httpflv" is a
# row's core-s per Gbit over cascade's own HTTP-FLV players in the same run
# (same family and players), "vs nginx-hls" over nginx-hls's.
#
# "drops" adds up lost frames, disconnects and failed connects, and for
# LL-HLS players also stalls (no new video for 1 s, or a jump to the live
# edge) and requests that failed while playing; "stalls" and "req err"
# show those two alone. "harness%" is the harness's CPU over the same
# steady window as the server's: near 100% its core is the bottleneck.
#
# Environment (all optional):
#   PLAYERS="100 500 1000 2000"  player counts
#   DURATION=30                  seconds per run (must exceed ramp + 8 s)
#   RAMP=500                     new players per second
#   SERVERS="cascade nginx floor"  also nginx-hls; cascade@W runs cascade with a W ms
#                                write-coalescing window (player.write_coalesce_ms);
#                                baseline (and baseline@W) runs $BASELINE instead;
#                                -rtmp, -httpflv, -wsflv, -llhls, -llhlsbr after cascade or
#                                baseline pick the players' protocol for that server
#   PROTO=rtmp                   players' protocol where the name has no suffix:
#                                rtmp, http-flv, ws-flv, ll-hls or ll-hls-br
#   HTTP_PORT=PORT+1             cascade's HTTP listener, for HTTP-FLV/WS-FLV/LL-HLS players
#   BASELINE=path/to/cascade     an older cascade binary, for before/after in one run
#   CLIP=path.flv                loop this file (default: synthetic stream)
#   BITRATE=2500k FPS=30 GOP=60  synthetic stream parameters
#   SERVER_CORE=0 HARNESS_CORE=1
#   PORT=19735                   port every server listens on (one at a time)
#   CASCADE_ARGS="--workers 1"   extra cascade arguments
#   BUILD=1                      cargo build --release first (0 to skip)
#   OUT=target/bench-compare     reports, plots and logs
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PLAYERS=${PLAYERS:-"100 500 1000 2000"}
DURATION=${DURATION:-30}
RAMP=${RAMP:-500}
SERVERS=${SERVERS:-"cascade nginx floor"}
BITRATE=${BITRATE:-2500k}
FPS=${FPS:-30}
GOP=${GOP:-60}
SERVER_CORE=${SERVER_CORE:-0}
HARNESS_CORE=${HARNESS_CORE:-1}
PORT=${PORT:-19735}
HTTP_PORT=${HTTP_PORT:-$((PORT + 1))}
PROTO=${PROTO:-rtmp}
CASCADE_ARGS=${CASCADE_ARGS:-"--workers 1"}
BUILD=${BUILD:-1}
OUT=${OUT:-$ROOT/target/bench-compare}
CLK_TCK=$(getconf CLK_TCK)

case $PROTO in
rtmp | http-flv | ws-flv | ll-hls | ll-hls-br) ;;
*)
    echo "PROTO=$PROTO: use rtmp, http-flv, ws-flv, ll-hls or ll-hls-br" >&2
    exit 2
    ;;
esac

mkdir -p "$OUT"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n "${CLIP:-}" ]]; then
    SOURCE=(--file "$CLIP")
else
    SOURCE=(--generate --bitrate "$BITRATE" --fps "$FPS" --gop "$GOP")
fi

if [[ "$BUILD" == 1 ]]; then
    cargo build --release -p cascade -p cascade-loadtest
fi
LOADTEST=$ROOT/target/release/cascade-loadtest
CASCADE=$ROOT/target/release/cascade

NGINX_MODULE=/usr/lib/nginx/modules/ngx_rtmp_module.so
if [[ " $SERVERS " == *" nginx "* || " $SERVERS " == *" nginx-hls "* ]] &&
    { ! command -v nginx >/dev/null || [[ ! -f $NGINX_MODULE ]]; }; then
    echo "installing nginx and libnginx-mod-rtmp" >&2
    apt-get update -qq && apt-get install -y -qq nginx libnginx-mod-rtmp >/dev/null
fi

# A server name without its protocol suffix: cascade-httpflv@5 -> cascade@5.
family_of() {
    local base=${1%%@*} at=""
    [[ $1 == *@* ]] && at=@${1#*@}
    case $base in
    *-rtmp | *-httpflv | *-wsflv | *-llhls | *-llhlsbr) base=${base%-*} ;;
    esac
    echo "$base$at"
}

# The players' protocol for server $1: its suffix, else PROTO; always rtmp
# for servers that only speak RTMP.
proto_of() {
    case ${1%%@*} in
    *-rtmp) echo rtmp ;;
    *-httpflv) echo http-flv ;;
    *-wsflv) echo ws-flv ;;
    *-llhls) echo ll-hls ;;
    *-llhlsbr) echo ll-hls-br ;;
    nginx-hls) echo hls ;;
    cascade | baseline) echo "$PROTO" ;;
    *) echo rtmp ;;
    esac
}

# Returns once 127.0.0.1:$1 accepts connections; fails after 5 s.
wait_listening() {
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Starts server $1 pinned to SERVER_CORE; sets SERVER_PID.
start_server() {
    local name=$1 log=$OUT/$1.log proto
    proto=$(proto_of "$name")
    case $(family_of "$name") in
    cascade | cascade@* | baseline | baseline@*)
        local window=0 bin=$CASCADE http=()
        [[ $name == *@* ]] && window=${name#*@}
        if [[ $name == baseline* ]]; then
            bin=${BASELINE:?BASELINE=path/to/an/older/cascade is needed for $name}
        fi
        # Only when its players need it: an older cascade may not serve HTTP.
        [[ $proto != rtmp ]] && http=(--http "127.0.0.1:$HTTP_PORT")
        # Every player comes from 127.0.0.1: lift the per-address limit.
        # shellcheck disable=SC2086
        CASCADE_PLAYER_WRITE_COALESCE_MS=$window CASCADE_LIMITS_MAX_CONNECTIONS_PER_IP=1000000 \
            taskset -c "$SERVER_CORE" "$bin" --listen "127.0.0.1:$PORT" "${http[@]}" $CASCADE_ARGS >"$log" 2>&1 &
        ;;
    nginx)
        local prefix=$OUT/nginx
        mkdir -p "$prefix/logs"
        cat >"$prefix/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $prefix/logs/error.log warn;
pid $prefix/nginx.pid;
load_module $NGINX_MODULE;
events { worker_connections 20000; }
rtmp { server { listen 127.0.0.1:$PORT; application live { live on; } } }
EOF
        taskset -c "$SERVER_CORE" nginx -p "$prefix" -c "$prefix/nginx.conf" >"$log" 2>&1 &
        ;;
    nginx-hls)
        # nginx-rtmp writes MPEG-TS segments and the playlist to hls/; the
        # same nginx (one process) serves them as files.
        local prefix=$OUT/nginx-hls
        rm -rf "$prefix"
        mkdir -p "$prefix/logs" "$prefix/hls" "$prefix/tmp"
        cat >"$prefix/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $prefix/logs/error.log warn;
pid $prefix/nginx.pid;
load_module $NGINX_MODULE;
events { worker_connections 20000; }
rtmp {
    server {
        listen 127.0.0.1:$PORT;
        application live {
            live on;
            hls on;
            hls_path $prefix/hls;
            hls_fragment 2s;
            hls_playlist_length 10s;
        }
    }
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    types {
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }
    server {
        listen 127.0.0.1:$HTTP_PORT;
        location /hls/ {
            root $prefix;
            add_header Cache-Control no-cache;
        }
    }
}
EOF
        taskset -c "$SERVER_CORE" nginx -p "$prefix" -c "$prefix/nginx.conf" >"$log" 2>&1 &
        ;;
    floor)
        taskset -c "$SERVER_CORE" "$LOADTEST" floor --listen "127.0.0.1:$PORT" "${SOURCE[@]}" >"$log" 2>&1 &
        ;;
    *)
        echo "unknown server $name" >&2
        exit 2
        ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    if ! wait_listening "$PORT"; then
        echo "$name did not start listening on $PORT; see $log" >&2
        exit 1
    fi
    if [[ $proto != rtmp ]] && ! wait_listening "$HTTP_PORT"; then
        echo "$name did not start listening on $HTTP_PORT (HTTP); see $log" >&2
        exit 1
    fi
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    local keep=()
    for pid in "${PIDS[@]}"; do
        [[ "$pid" != "$SERVER_PID" ]] && keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# One run: server $1 with $2 players. Appends a JSON line to $OUT/rows.jsonl.
run_one() {
    local name=$1 n=$2 report=$OUT/$1-$2.json proto family
    proto=$(proto_of "$name")
    family=$(family_of "$name")
    if [[ $PROTO != rtmp && $proto == rtmp && $family != cascade* && $family != baseline* ]]; then
        echo "$name has no HTTP-FLV, WebSocket-FLV or LL-HLS: its players use RTMP" >&2
    fi
    start_server "$name"
    local pid=$SERVER_PID
    local rss_idle
    rss_idle=$(rss_kb "$pid")
    # The floor publishes itself; the others get a publisher from the
    # harness, which speaks RTMP whatever the players do.
    local rtmp_url="rtmp://127.0.0.1:$PORT/live/bench" url
    local mode=(run "${SOURCE[@]}" --publish-url "$rtmp_url")
    [[ $name == floor ]] && mode=(play)
    case $proto in
    http-flv) url="http://127.0.0.1:$HTTP_PORT/live/bench.flv" ;;
    ws-flv) url="ws://127.0.0.1:$HTTP_PORT/live/bench.flv" ;;
    ll-hls) url="http://127.0.0.1:$HTTP_PORT/live/bench/index.m3u8" ;;
    ll-hls-br) url="http://127.0.0.1:$HTTP_PORT/live/bench/index.m3u8?parts=byterange" ;;
    hls) url="http://127.0.0.1:$HTTP_PORT/hls/bench.m3u8" ;;
    *) url=$rtmp_url ;;
    esac
    taskset -c "$HARNESS_CORE" "$LOADTEST" "${mode[@]}" --url "$url" \
        --players "$n" --ramp "$RAMP" --duration "$DURATION" --quiet \
        --report "$report" --plot "$OUT/$name-$n.svg" 2>"$OUT/$name-$n.harness.log" &
    local harness=$!
    PIDS+=("$harness")
    # Steady window: after the ramp and the players' first GOP, until 1 s before the end.
    local ramp_s steady_from steady_to
    ramp_s=$(awk -v n="$n" -v r="$RAMP" 'BEGIN { printf "%d", n / r + 0.999 }')
    steady_from=$((ramp_s + 4))
    steady_to=$((DURATION - 1))
    if ((steady_to - steady_from < 3)); then
        echo "DURATION=$DURATION is too short for $n players at RAMP=$RAMP" >&2
        exit 2
    fi
    local t=0 cpu0=0 cpu1=0 hcpu0=0 hcpu1=0 rss_peak=$rss_idle rss
    while ((t < steady_to)); do
        sleep 1
        t=$((t + 1))
        rss=$(rss_kb "$pid" 2>/dev/null || echo 0)
        ((rss > rss_peak)) && rss_peak=$rss
        if ((t == steady_from)); then
            cpu0=$(cpu_ticks "$pid")
            hcpu0=$(cpu_ticks "$harness" 2>/dev/null || echo 0)
        fi
    done
    cpu1=$(cpu_ticks "$pid")
    hcpu1=$(cpu_ticks "$harness" 2>/dev/null || echo 0)
    wait "$harness" || true
    PIDS=("${PIDS[@]/$harness/}")
    stop_server
    local window=$((steady_to - steady_from))
    jq -c --arg s "$name" --arg proto "$proto" --arg family "$family" --argjson n "$n" \
        --argjson cpu "$(((cpu1 - cpu0)))" --argjson hcpu "$(((hcpu1 - hcpu0)))" --argjson tck "$CLK_TCK" \
        --argjson win "$window" --argjson idle "$rss_idle" --argjson peak "$rss_peak" '{
        server: $s, proto: $proto, family: $family, players: $n,
        gbit: (.mbit_s_steady / 1000),
        cpu_pct: ($cpu / $tck / $win * 100), harness_cpu_pct: ($hcpu / $tck / $win * 100),
        core_s_per_gbit: (if .mbit_s_steady > 0 then ($cpu / $tck / $win) / (.mbit_s_steady / 1000) else null end),
        rss_kb_per_player: (($peak - $idle) / $n), rss_mb_peak: ($peak / 1024),
        lat_p50: .latency_ms.p50, lat_p99: .latency_ms.p99, lat_max: .latency_ms.max,
        ff_p50: (if .video_frames > 0 then .first_frame_ms.p50 else null end),
        ff_p99: (if .video_frames > 0 then .first_frame_ms.p99 else null end),
        drops: (.lost_frames + ([.disconnects[]] | add // 0) + ([.connect_failures[]] | add // 0)
                + (.hls.stalls // 0) + (.hls.request_errors_playing // 0)),
        lost: .lost_frames, stalls: .hls.stalls, req_errors: .hls.request_errors_playing,
        requests: .hls.requests, ts_segments: .hls.ts_segments,
        up: .players_up_at_end
    }' "$report" >>"$OUT/rows.jsonl"
    tail -n 1 "$OUT/rows.jsonl" >&2
}

: >"$OUT/rows.jsonl"
for n in $PLAYERS; do
    for s in $SERVERS; do
        echo "== $s, $n players" >&2
        run_one "$s" "$n"
        sleep 2
    done
done

# The table: one row per run; ratios compare cascade's core-seconds per Gbit.
# "vs rtmp": an HTTP-FLV, WebSocket-FLV or LL-HLS row over the same server's RTMP
# row (same family, same players) from this run; the issue's goal for
# HTTP-FLV is at most 1.05. "vs httpflv": likewise over its HTTP-FLV row
# (LL-HLS's bound: at most 1.5); "vs nginx-hls": a cascade row over
# nginx-rtmp's ordinary HLS (LL-HLS's bound: at most 1). With several runs
# of one server, the ratios use its last.
jq -rs '
  def r(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
  (map(select(.server == "nginx") | {key: (.players | tostring), value: .core_s_per_gbit}) | from_entries) as $ng
  | (map(select(.server == "floor") | {key: (.players | tostring), value: .core_s_per_gbit}) | from_entries) as $fl
  | (map(select(.proto == "rtmp") | {key: "\(.family)/\(.players)", value: .core_s_per_gbit}) | from_entries) as $rt
  | (map(select(.proto == "http-flv") | {key: "\(.family)/\(.players)", value: .core_s_per_gbit}) | from_entries) as $hf
  | (map(select(.server == "nginx-hls") | {key: (.players | tostring), value: .core_s_per_gbit}) | from_entries) as $nh
  | ["server", "proto", "players", "up", "Gbit/s", "cpu%", "harness%", "core-s/Gbit", "KB/player", "RSS MB", "lat p50", "p99", "max", "ff p50", "ff p99", "drops", "stalls", "req err", "vs nginx", "vs floor", "vs rtmp", "vs httpflv", "vs nginx-hls"],
    (.[] | [ .server, .proto, .players, .up, r(.gbit), r(.cpu_pct), r(.harness_cpu_pct), r(.core_s_per_gbit), r(.rss_kb_per_player), r(.rss_mb_peak),
             r(.lat_p50), r(.lat_p99), r(.lat_max), r(.ff_p50), r(.ff_p99), .drops, (.stalls // "-"), (.req_errors // "-"),
             (if (.server | startswith("cascade")) and $ng[.players | tostring] and .core_s_per_gbit then r(.core_s_per_gbit / $ng[.players | tostring]) else "" end),
             (if (.server | startswith("cascade")) and $fl[.players | tostring] and .core_s_per_gbit then r(.core_s_per_gbit / $fl[.players | tostring]) else "" end),
             (if .proto != "rtmp" and $rt["\(.family)/\(.players)"] and .core_s_per_gbit then r(.core_s_per_gbit / $rt["\(.family)/\(.players)"]) else "" end),
             (if .proto != "http-flv" and $hf["\(.family)/\(.players)"] and .core_s_per_gbit then r(.core_s_per_gbit / $hf["\(.family)/\(.players)"]) else "" end),
             (if (.server | startswith("cascade")) and $nh[.players | tostring] and .core_s_per_gbit then r(.core_s_per_gbit / $nh[.players | tostring]) else "" end) ])
  | @tsv' "$OUT/rows.jsonl" | column -t -s $'\t' | tee "$OUT/table.txt"
# The windows plot reads cascade and cascade@W rows as RTMP ones.
if [[ $PROTO == rtmp ]] && grep -q '"server":"cascade@' "$OUT/rows.jsonl"; then
    python3 "$ROOT/scripts/plot-windows.py" "$OUT/rows.jsonl" "$OUT/windows.svg"
fi
echo "reports, plots and logs: $OUT" >&2
