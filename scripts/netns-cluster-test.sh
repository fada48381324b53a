#!/usr/bin/env bash
# Multi-host test on one machine: the coordinator, N workers and a client each run in their own
# network namespace with their own address in the benchmarking range 198.18.0.0/15, joined by
# veth pairs to a bridge. Checks that the cluster's greedy output equals local generation.
# Needs root and iproute2. Cleans up namespaces, links and processes on exit.
#
# Usage: scripts/netns-cluster-test.sh [--model DIR] [--workers N] [--binary PATH] [--tokens 1,2,3]
# Example: sudo scripts/netns-cluster-test.sh --model Tests/Fixtures/models/qwen3_moe --workers 3
set -euo pipefail
cd "$(dirname "$0")/.."
model=Tests/Fixtures/models/mixtral
workers=3
binary=""
tokens=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --tokens) tokens="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "netns: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "netns: needs root (network namespaces)" >&2; exit 77; }
command -v ip >/dev/null || { echo "netns: needs iproute2 (ip)" >&2; exit 77; }
[ -n "$binary" ] || binary="$(swift build -c release --show-bin-path)/expertmesh"
[ -x "$binary" ] || { echo "netns: $binary not built; run swift build -c release" >&2; exit 1; }
if [ -z "$tokens" ]; then
    tokens=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open('$model/expected.json'))['prompt_tokens'])))")
fi

tag="em$$"
bridge="${tag}br"
logs=$(mktemp -d)
pids=()
namespaces=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    ip link del "$bridge" 2>/dev/null || true
}
trap cleanup EXIT

ip link add "$bridge" type bridge
ip link set "$bridge" up
# host <index> <address>: a namespace with one veth end, the other end on the bridge.
host() {
    local ns="${tag}h$1"
    ip netns add "$ns"
    namespaces+=("$ns")
    ip link add "${tag}v$1" type veth peer name "${tag}p$1"
    ip link set "${tag}p$1" netns "$ns"
    ip link set "${tag}v$1" master "$bridge" up
    ip -n "$ns" addr add "$2/24" dev "${tag}p$1"
    ip -n "$ns" link set "${tag}p$1" up
    ip -n "$ns" link set lo up
}
coordinator_ip=198.18.0.1
host 0 "$coordinator_ip"
for i in $(seq 1 "$workers"); do host "$i" "198.18.0.$((i + 1))"; done
client=$((workers + 1))
host "$client" 198.18.0.100

ip netns exec "${tag}h0" "$binary" coordinator --model "$model" --listen "tcp://$coordinator_ip:5555" \
    --http "$coordinator_ip:8080" --min-workers "$workers" --start-timeout 60 --insecure > "$logs/coordinator.log" 2>&1 &
pids+=($!)
for i in $(seq 1 "$workers"); do
    ip netns exec "${tag}h$i" "$binary" worker --coordinator "tcp://$coordinator_ip:5555" --model "$model" \
        --name "host-$i" --insecure > "$logs/worker-$i.log" 2>&1 &
    pids+=($!)
done

healthy=no
for _ in $(seq 1 300); do
    if ip netns exec "${tag}h$client" python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://$coordinator_ip:8080/health', timeout=1).status == 200 else 1)" 2>/dev/null; then
        healthy=yes; break
    fi
    sleep 0.2
done
if [ "$healthy" != yes ]; then
    echo "netns: cluster never became healthy"; cat "$logs"/*.log; exit 1
fi
remote=$(ip netns exec "${tag}h$client" "$binary" generate --server "http://$coordinator_ip:8080" --tokens "$tokens" --max-tokens 6 --temperature 0 --ignore-eos --json)
local_result=$("$binary" generate --model "$model" --tokens "$tokens" --max-tokens 6 --temperature 0 --ignore-eos --json)
remote_tokens=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens'])" "$remote")
local_tokens=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens'])" "$local_result")
grep -h "placement\|: .* experts across\|ready:" "$logs/coordinator.log" || true
echo "netns: cluster over $workers namespaces: $remote_tokens"
echo "netns: single process:                $local_tokens"
if [ "$remote_tokens" = "$local_tokens" ]; then
    echo "netns: MATCH"
else
    echo "netns: MISMATCH"; cat "$logs"/*.log; exit 1
fi
