#!/usr/bin/env bash
# Multi-host test on one machine: the coordinator, N workers and a client each run in their own
# network namespace with their own address in the benchmarking range 198.18.0.0/15, joined by
# veth pairs to a bridge. Checks that the cluster's greedy output equals local generation.
# With --cut-worker I, worker I's network link goes down (ip link set … down) while requests run
# back to back (for S seconds after the cut, 6 by default): with --replicas 2 every request must
# still finish with the single-process tokens, and the coordinator must declare the worker lost.
# Needs root and iproute2. Cleans up namespaces, links and processes on exit.
#
# --clients C runs C of those request loops at once (their steps batch several sequences).
# --offload-dense runs the coordinator with it (shared experts and dense FFN layers on the workers);
# --overlap-exchanges too (each step in two micro-batches that take turns). --rate R holds every
# link to R each way (tc tbf, e.g. 100mbit); --delay D adds D each way (tc netem, if the kernel has it).
# --stages N splits the layers over N coordinator hosts: the coordinator is stage 0, stages 1…N-1
# (`expertmesh stage`) run in hosts of their own, and every worker serves every stage.
#
# Usage: scripts/netns-cluster-test.sh [--model DIR] [--workers N] [--binary PATH] [--tokens 1,2,3]
#            [--replicas R] [--cut-worker I] [--seconds-after-cut S] [--clients C] [--offload-dense]
#            [--overlap-exchanges] [--rate R] [--delay D] [--stages N]
# Example: sudo scripts/netns-cluster-test.sh --model Tests/Fixtures/models/qwen3_moe --workers 3
#          sudo scripts/netns-cluster-test.sh --replicas 2 --cut-worker 2
#          sudo scripts/netns-cluster-test.sh --replicas 2 --cut-worker 2 --clients 3 --overlap-exchanges \
#              --rate 100mbit
#          sudo scripts/netns-cluster-test.sh --model Tests/Fixtures/models/llama4_text-behemoth --workers 32 --offload-dense
#          sudo scripts/netns-cluster-test.sh --model Tests/Fixtures/models/llama4_text-behemoth --workers 32 --stages 4
set -euo pipefail
cd "$(dirname "$0")/.."
model=Tests/Fixtures/models/mixtral
workers=3
binary=""
tokens=""
replicas=1
cut_worker=""
seconds_after_cut=6
offload=()
overlap=()
clients=1
stages=1
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --tokens) tokens="$2"; shift 2 ;;
        --replicas) replicas="$2"; shift 2 ;;
        --cut-worker) cut_worker="$2"; shift 2 ;;
        --seconds-after-cut) seconds_after_cut="$2"; shift 2 ;;
        --offload-dense) offload=(--offload-dense); shift ;;
        --overlap-exchanges) overlap=(--overlap-exchanges on); shift ;;
        --clients) clients="$2"; shift 2 ;;
        --rate) netns_rate="$2"; shift 2 ;;
        --delay) netns_delay="$2"; shift 2 ;;
        --stages) stages="$2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
source scripts/netns-lib.sh
coordinator_ip=198.18.0.1
host 0 "$coordinator_ip"
for i in $(seq 1 "$workers"); do host "$i" "198.18.0.$((i + 1))"; done
client=$((workers + 1))
host "$client" 198.18.0.100
# Pipeline stages 1…N-1 on hosts 198.18.0.201…; every worker serves every stage.
stage_arguments=()
worker_endpoints=(--coordinator "tcp://$coordinator_ip:5555")
if [ "$stages" -gt 1 ]; then
    stage_arguments=(--stages "$stages" --stage-listen "tcp://$coordinator_ip:5556")
    for k in $(seq 1 $((stages - 1))); do
        host "$((client + k))" "198.18.0.$((200 + k))"
        worker_endpoints+=(--coordinator "tcp://198.18.0.$((200 + k)):5555")
    done
fi

ip netns exec "${tag}h0" "$binary" coordinator --model "$model" --listen "tcp://$coordinator_ip:5555" \
    --http "$coordinator_ip:8080" --min-workers "$workers" --start-timeout 60 --insecure \
    --replicas "$replicas" "${offload[@]}" "${overlap[@]}" "${stage_arguments[@]}" > "$logs/coordinator.log" 2>&1 &
pids+=($!)
for k in $(seq 1 $((stages - 1))); do
    ip netns exec "${tag}h$((client + k))" "$binary" stage --stage "$k/$stages" --model "$model" \
        --join "tcp://$coordinator_ip:5556" --listen "tcp://198.18.0.$((200 + k)):5555" --min-workers "$workers" \
        --start-timeout 60 --insecure --replicas "$replicas" "${offload[@]}" "${overlap[@]}" --name "stage-host-$k" \
        > "$logs/stage-$k.log" 2>&1 &
    pids+=($!)
done
for i in $(seq 1 "$workers"); do
    ip netns exec "${tag}h$i" "$binary" worker "${worker_endpoints[@]}" --model "$model" \
        --name "host-$i" --insecure > "$logs/worker-$i.log" 2>&1 &
    pids+=($!)
done

if ! wait_healthy "$client" "http://$coordinator_ip:8080/health"; then
    echo "netns: cluster never became healthy"; cat "$logs"/*.log; exit 1
fi
# With --overlap-exchanges: exchanges were sent while another was in flight, or the test proves nothing.
check_overlap() {
    [ ${#overlap[@]} -gt 0 ] || return 0
    local count
    count=$(ip netns exec "${tag}h$client" python3 -c "import urllib.request; print(next((l.split()[-1] for l in \
        urllib.request.urlopen('http://$coordinator_ip:8080/metrics', timeout=5).read().decode().splitlines() \
        if l.startswith('expertmesh_overlapped_exchanges_total ')), 0))")
    echo "netns: $count exchanges overlapped another"
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)" "$count" \
        || { echo "netns: --overlap-exchanges never overlapped an exchange"; exit 1; }
}
if [ -n "$cut_worker" ]; then
    # Requests back to back from the client's host; worker $cut_worker's link goes down during them.
    max_tokens=40
    expected=$("$binary" generate --model "$model" --tokens "$tokens" --max-tokens $max_tokens --temperature 0 \
        --ignore-eos --json | python3 -c "import json,sys; print(json.load(sys.stdin)['tokens'])")
    client_pids=()
    for c in $(seq 1 "$clients"); do
        (
            n=0
            while [ ! -e "$logs/stop" ]; do
                n=$((n + 1))
                start=$(date +%s.%N)
                out=$(ip netns exec "${tag}h$client" "$binary" generate --server "http://$coordinator_ip:8080" \
                    --tokens "$tokens" --max-tokens $max_tokens --temperature 0 --ignore-eos --json 2>&1) || true
                got=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens'])" "$out" 2>/dev/null \
                    || echo "failed: $out")
                echo "$n $(python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" \
                    "$start" "$(date +%s.%N)") $got"
            done
        ) > "$logs/requests-$c.txt" &
        client_pids+=($!)
    done
    sleep 1
    ip link set "${tag}v$cut_worker" down
    echo "netns: link of worker host-$cut_worker is down"
    sleep "$seconds_after_cut"
    touch "$logs/stop"
    wait "${client_pids[@]}"
    cat "$logs"/requests-*.txt > "$logs/requests.txt"
    lost_line=$(grep -m1 "worker 'host-$cut_worker' lost" "$logs/coordinator.log" || true)
    cat "$logs/requests.txt"
    grep -h "replicas\|lost\|degraded" "$logs/coordinator.log" || true
    bad=$(awk -v want="$expected" '{ line=$0; sub(/^[0-9]+ [0-9.]+ /, "", line); if (line != want) print }' "$logs/requests.txt")
    done_count=$(wc -l < "$logs/requests.txt")
    slowest=$(awk '{ if ($2 > max) max = $2 } END { print max }' "$logs/requests.txt")
    echo "netns: $done_count requests across the cut, slowest $slowest s; expected $expected"
    if [ -n "$bad" ] || [ "$done_count" -lt 3 ]; then
        echo "netns: MISMATCH after the cut: $bad"; cat "$logs"/*.log; exit 1
    fi
    if [ -z "$lost_line" ]; then
        echo "netns: the coordinator never noticed the cut link"; cat "$logs/coordinator.log"; exit 1
    fi
    echo "netns: detected: $lost_line"
    check_overlap
    echo "netns: MATCH"
    exit 0
fi
remote=$(ip netns exec "${tag}h$client" "$binary" generate --server "http://$coordinator_ip:8080" --tokens "$tokens" --max-tokens 6 --temperature 0 --ignore-eos --json)
local_result=$("$binary" generate --model "$model" --tokens "$tokens" --max-tokens 6 --temperature 0 --ignore-eos --json)
remote_tokens=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens'])" "$remote")
local_tokens=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens'])" "$local_result")
grep -h "placement\|: .* experts across\|ready:\|pipeline" "$logs/coordinator.log" || true
echo "netns: cluster over $workers worker namespaces and $stages stage(s): $remote_tokens"
echo "netns: single process:                $local_tokens"
if [ "$remote_tokens" = "$local_tokens" ]; then
    check_overlap
    echo "netns: MATCH"
else
    echo "netns: MISMATCH"; cat "$logs"/*.log; exit 1
fi
