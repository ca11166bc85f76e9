#!/usr/bin/env bash
# CPU per request of the edge and the agent on the 1 KiB keep-alive load,
# edge and agent as separate processes (issue 13; benches/README.md, "CPU per
# request").
#
#   benches/cpu.sh proc       # /proc CPU us per request under wrk -t2 -c64 (noisy)
#   benches/cpu.sh callgrind  # instructions per request under valgrind (stable)
#   benches/cpu.sh hold       # start everything, print the pids and a wrk line, wait
#
# Build first: cargo bench --profile profiling --bench e2e --no-run
# (the origin is the e2e bench binary re-executed; BERTH picks the binary).
# Environment: BERTH (default target/profiling/berth), SECS (wrk seconds, 10),
# N (requests counted under callgrind, 4000), H2=1 (HTTP/2 load: h2load -c64 -m10),
# BERTH_EXTRA_AGENT_ARGS (extra `berth agent` flags).
set -euo pipefail
mode=${1:-proc}
cd "$(dirname "$0")/.."
BERTH=${BERTH:-target/profiling/berth}
SECS=${SECS:-10}
N=${N:-4000}
origin_bin=$(ls -t target/profiling/deps/e2e-* target/release/deps/e2e-* 2>/dev/null | grep -v '\.d$' | head -1)
[ -x "$BERTH" ] && [ -n "$origin_bin" ] || { echo "build first: cargo bench --profile profiling --bench e2e --no-run" >&2; exit 1; }
dir=$(mktemp -d /tmp/berth-cpu.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wrap=()
if [ "$mode" = callgrind ]; then
  wrap=(valgrind --tool=callgrind --instr-atstart=no --dump-instr=no --dump-line=no)
fi

# The origin: prints "listening ADDR", exits when its stdin closes.
mkfifo "$dir/origin.in"
sleep 100000 >"$dir/origin.in" & pids+=($!)
BERTH_BENCH_ROLE=origin "$origin_bin" <"$dir/origin.in" >"$dir/origin.out" & pids+=($!)
origin_pid=$!
until grep -q listening "$dir/origin.out" 2>/dev/null; do sleep 0.1; done
app_port=$(sed -n 's/listening 127.0.0.1://p' "$dir/origin.out")

port=$(free_port)
RUST_LOG=${RUST_LOG:-info} "${wrap[@]}" ${wrap:+--callgrind-out-file=$dir/edge.cg} "$BERTH" dev \
  --data-dir "$dir/data" --listen "127.0.0.1:$port" --admin-listen off >"$dir/edge.log" 2>&1 & pids+=($!)
edge_pid=$!
for _ in $(seq 600); do
  [ -s "$dir/data/admin-token" ] && [ -s "$dir/data/ca.pem" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done
token=$(cat "$dir/data/admin-token")
api() { curl -sf --cacert "$dir/data/ca.pem" --resolve "berth.localhost:$port:127.0.0.1" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "https://berth.localhost:$port$1" -d "$2"; }
api /api/v1/workspaces '{"name":"bench"}' >/dev/null
agent_token=$(api /api/v1/workspaces/admin/bench/agents '{"name":"main"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["agent_token"])')
echo "$agent_token" >"$dir/agent-token"
RUST_LOG=${RUST_LOG:-info} "${wrap[@]}" ${wrap:+--callgrind-out-file=$dir/agent.cg} "$BERTH" agent \
  --url "https://berth.localhost:$port" --token-file "$dir/agent-token" --ca-file "$dir/data/ca.pem" \
  ${BERTH_EXTRA_AGENT_ARGS:-} >"$dir/agent.log" 2>&1 & pids+=($!)
agent_pid=$!
host="$app_port--main--bench--admin.berth.localhost"
url="https://127.0.0.1:$port/1k"
for _ in $(seq 600); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/data/ca.pem" --resolve "$host:$port:127.0.0.1" \
    -H "Authorization: Bearer $token" "https://$host:$port/1k" || true)
  [ "$code" = 200 ] && break
  sleep 0.2
done
[ "$code" = 200 ] || { echo "no 200 through the agent ($code)"; tail "$dir/edge.log" "$dir/agent.log"; exit 1; }

load() { # $1: requests (or 0 for SECS seconds); prints the request count
  if [ "${H2:-}" = 1 ]; then
    local args=(-c64 -m10 -t2); [ "$1" = 0 ] && args+=(-D "$SECS") || args+=(-n "$1")
    h2load "${args[@]}" --connect-to "127.0.0.1:$port" -H "Authorization: Bearer $token" "https://$host:$port/1k" \
      | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p'
  elif [ "$1" = 0 ]; then
    wrk -t2 -c64 -d"${SECS}s" -H "Host: $host" -H "Authorization: Bearer $token" "$url" \
      | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p'
  else
    oha --no-tui -n "$1" -c 64 --insecure -H "Host: $host" -H "Authorization: Bearer $token" "$url" >/dev/null
    echo "$1"
  fi
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
case "$mode" in
  hold)
    echo "edge $edge_pid agent $agent_pid origin $origin_pid"
    echo "wrk -t2 -c64 -d10s -H 'Host: $host' -H 'Authorization: Bearer $token' $url"
    sleep 100000 ;;
  proc)
    load 0 >/dev/null  # warm-up
    hz=$(getconf CLK_TCK)
    e0=$(ticks $edge_pid); a0=$(ticks $agent_pid); o0=$(ticks $origin_pid)
    n=$(load 0)
    e1=$(ticks $edge_pid); a1=$(ticks $agent_pid); o1=$(ticks $origin_pid)
    awk -v n="$n" -v s="$SECS" -v hz="$hz" -v e=$((e1-e0)) -v a=$((a1-a0)) -v o=$((o1-o0)) 'BEGIN {
      printf "requests %d (%.0f/s)  CPU us/request: edge %.1f  agent %.1f  origin %.1f\n",
        n, n/s, e*1e6/hz/n, a*1e6/hz/n, o*1e6/hz/n }' ;;
  callgrind)
    # Two measured loads, of N and 2N requests, each on 64 new connections:
    # their difference is N requests without the TLS handshakes.
    load 1000 >/dev/null  # warm-up, not instrumented
    for p in $edge_pid $agent_pid; do callgrind_control -i on "$p" >/dev/null; done
    load "$N" >/dev/null
    for p in $edge_pid $agent_pid; do callgrind_control -d "$p" >/dev/null; done
    load $((2 * N)) >/dev/null
    for p in $edge_pid $agent_pid; do callgrind_control -d "$p" >/dev/null; done
    for p in $edge_pid $agent_pid; do callgrind_control -i off "$p" >/dev/null; done
    for who in edge agent; do
      one=$(ls -v "$dir/$who.cg".* | tail -2 | head -1)
      two=$(ls -v "$dir/$who.cg".* | tail -1)
      a=$(sed -n 's/^summary: //p;s/^totals: //p' "$one" | head -1)
      b=$(sed -n 's/^summary: //p;s/^totals: //p' "$two" | head -1)
      awk -v w=$who -v a="$a" -v b="$b" -v n="$N" 'BEGIN {
        printf "%s: %.0f instructions per request (%.0f with 64 handshakes per %d)\n", w, (b-a)/n, a/n, n }'
      if [ -n "${KEEP:-}" ]; then cp "$one" "$KEEP.$who.n"; cp "$two" "$KEEP.$who.2n"; fi
    done ;;
esac
