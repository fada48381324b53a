#!/usr/bin/env bash
# Throughput of a pipeline of coordinators by steps in flight and micro-batches per step, each process in its own network
# namespace (198.18.0.0/15): stage 0 (`coordinator --stages N`), stages 1…N-1 (`expertmesh stage`),
# worker hosts (every worker serves every stage) and a client running `expertmesh bench-serve`.
# Per round and per pair of --steps-in-flight S and --micro-batches M values it restarts stage 0 with
# them (the later stages and the workers reconnect by themselves) and prints output tokens per second
# at --concurrency. --delay adds
# that latency (tc netem) on every host's link, both ways. Needs root and iproute2; cleans up on exit.
#
# Usage: scripts/netns-pipeline-bench.sh [--model DIR] [--stages N] [--workers W] [--concurrency C]
#            [--steps-in-flight 1,2] [--micro-batches 1,2] [--delay 500us] [--rounds R] [--binary PATH]
# Example: sudo scripts/netns-pipeline-bench.sh --model bench-models/mixtral-640m-bf16 --stages 2 --steps-in-flight 1,2
set -euo pipefail
cd "$(dirname "$0")/.."
model=Tests/Fixtures/models/llama4_text-behemoth
stages=4
workers=2
concurrency=16
micro_batches=1
steps_in_flight=1,4
delay=""
rounds=2
binary=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --stages) stages="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --concurrency) concurrency="$2"; shift 2 ;;
        --micro-batches) micro_batches="$2"; shift 2 ;;
        --steps-in-flight) steps_in_flight="$2"; shift 2 ;;
        --delay) delay="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "netns-pipeline: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "netns-pipeline: needs root (network namespaces)" >&2; exit 77; }
[ -n "$binary" ] || binary="$(swift build -c release --show-bin-path)/expertmesh"
[ -x "$binary" ] || { echo "netns-pipeline: $binary not built; run swift build -c release" >&2; exit 1; }
[ "$stages" -ge 2 ] || { echo "netns-pipeline: --stages must be at least 2" >&2; exit 2; }
vocab=$(python3 -c "import json; print(json.load(open('$model/config.json'))['vocab_size'])")

tag="np$$"
netns_delay="$delay"
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
source scripts/netns-lib.sh
endpoints=()
for k in $(seq 0 $((stages - 1))); do
    host "$k" "198.18.0.$((k + 1))"
    endpoints+=(--coordinator "tcp://198.18.0.$((k + 1)):5555")
done
for w in $(seq 1 "$workers"); do host "$((stages + w))" "198.18.0.$((100 + w))"; done
client=$((stages + workers + 1))
host "$client" 198.18.0.200

start_stage0() {
    ip netns exec "${tag}h0" "$binary" coordinator --model "$model" --listen tcp://198.18.0.1:5555 \
        --http 198.18.0.1:8080 --min-workers "$workers" --stages "$stages" --stage-listen tcp://198.18.0.1:5556 \
        --steps-in-flight "$1" --micro-batches "$2" --insecure > "$logs/stage-0-s$1-m$2.log" 2>&1 &
    stage0=$!
    pids+=("$stage0")
    wait_healthy "$client" http://198.18.0.1:8080/health && return 0
    echo "netns-pipeline: the pipeline never became healthy"; tail -n 30 "$logs"/*.log; exit 1
}
stop_stage0() {
    kill "$stage0" 2>/dev/null || true
    wait "$stage0" 2>/dev/null || true
    stage0=""
}
for k in $(seq 1 $((stages - 1))); do
    ip netns exec "${tag}h$k" "$binary" stage --model "$model" --stage "$k/$stages" --join tcp://198.18.0.1:5556 \
        --listen "tcp://198.18.0.$((k + 1)):5555" --min-workers "$workers" --insecure > "$logs/stage-$k.log" 2>&1 &
    pids+=($!)
done
for w in $(seq 1 "$workers"); do
    ip netns exec "${tag}h$((stages + w))" "$binary" worker "${endpoints[@]}" --model "$model" --name "host-$w" \
        --insecure > "$logs/worker-$w.log" 2>&1 &
    pids+=($!)
done
echo "netns-pipeline: $stages stages, $workers worker hosts, ${delay:-no} added latency per link direction," \
     "concurrency $concurrency, 64 prompt + 64 output tokens per request"
for round in $(seq 1 "$rounds"); do
    for pair in $(for s in ${steps_in_flight//,/ }; do for m in ${micro_batches//,/ }; do echo "$s:$m"; done; done); do
        start_stage0 "${pair%%:*}" "${pair##*:}"
        ip netns exec "${tag}h$client" "$binary" bench-serve --server http://198.18.0.1:8080 \
            --concurrency "$concurrency" --prompt-tokens 64 --max-tokens 64 --vocab "$vocab" --requests 48 --json \
            > "$logs/bench.json" 2>/dev/null
        rate=$(python3 -c "import json; print(round(json.load(open('$logs/bench.json'))['output_tokens_per_second'], 1))")
        echo "round $round: --steps-in-flight ${pair%%:*} --micro-batches ${pair##*:}: $rate out tok/s"
        stop_stage0
    done
done
