#!/usr/bin/env bash
# Starts, stops, inspects and tails ExpertMesh expert-shard workers on many hosts over ssh.
#
# Usage: scripts/launch-workers.sh start|stop|status|logs --hosts FILE [options]
#
#   --hosts FILE          one host a line: `user@host [name] [extra worker flags]`; `#` starts a comment.
#                         The name defaults to the host; `--model DIR` among the flags overrides --model there.
#   --coordinator URL     the coordinator's ZeroMQ endpoint, e.g. tcp://10.0.0.1:5555 (start)
#   --model DIR           the model directory: this machine's copy is the reference, and the hosts hold
#                         theirs at the same path unless their line says otherwise (start)
#   --binary PATH         the expertmesh binary on the hosts (default: expertmesh on their PATH)
#   --server URL          the coordinator's HTTP URL: status adds its view of each worker
#   --state-dir DIR       where pid and log files live on the hosts (default: .expertmesh, under the home)
#   --ssh-config FILE     an ssh_config for every connection (ports, keys, jump hosts)
#   --timeout SECONDS     per-host limit for each action (default 30)
#   --lines N             log lines to show (logs; default 40)
#   --dry-run             print what would run on each host, run nothing
#
# Workers run detached (setsid + nohup, a pid file) so they outlive the ssh session. Hosts are handled
# in parallel; each gets a line saying what happened, and the exit status is 1 if any host failed (for
# status: if any worker is not running).
# Before starting, each host's binary and model copy are checked: the model's file names, sizes and
# config.json must match the local copy of --model (weights are not hashed: they may be hundreds of GB).
#
# Examples:
#   scripts/launch-workers.sh start --hosts hosts.txt --coordinator tcp://10.0.0.1:5555 --model /srv/models/mixtral
#   scripts/launch-workers.sh status --hosts hosts.txt --server http://10.0.0.1:8080
#   scripts/launch-workers.sh logs --hosts hosts.txt --lines 100
#   scripts/launch-workers.sh stop --hosts hosts.txt
#   scripts/launch-workers.sh start --hosts hosts.txt --coordinator tcp://10.0.0.1:5555 --model DIR --dry-run
# hosts.txt:
#   ubuntu@10.0.0.11 shard-1 --threads 16 --curve-secret-key keys/shard-1.key_secret --coordinator-key keys/coordinator.key
#   ubuntu@10.0.0.12 shard-2 --weights-dtype int8 --insecure --model /data/mixtral
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "launch-workers: $*" >&2; exit 2; }

[ $# -gt 0 ] || { usage; exit 2; }
case "$1" in
    -h|--help) usage; exit 0 ;;
    start|stop|status|logs) action=$1; shift ;;
    *) die "unknown action '$1': use start, stop, status or logs (see --help)" ;;
esac
hosts_file="" coordinator="" model="" binary="expertmesh" server="" state_dir=".expertmesh" ssh_config=""
timeout_seconds=30 lines=40 dry_run=false
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts|--coordinator|--model|--binary|--server|--state-dir|--ssh-config|--timeout|--lines)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --hosts) hosts_file=$2 ;; --coordinator) coordinator=$2 ;; --model) model=$2 ;;
                --binary) binary=$2 ;; --server) server=${2%/} ;; --state-dir) state_dir=$2 ;;
                --ssh-config) ssh_config=$2 ;; --timeout) timeout_seconds=$2 ;; --lines) lines=$2 ;;
            esac
            shift 2 ;;
        --dry-run) dry_run=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[ -n "$hosts_file" ] || die "--hosts FILE is required"
[ -r "$hosts_file" ] || die "cannot read the hosts file '$hosts_file'"
[[ "$timeout_seconds" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds"
[[ "$lines" =~ ^[1-9][0-9]*$ ]] || die "--lines must be a positive number"
[ -z "$ssh_config" ] || [ -r "$ssh_config" ] || die "cannot read the ssh config '$ssh_config'"
if [ "$action" = start ]; then
    [[ "$coordinator" =~ ^(tcp|ipc):// ]] || die "start needs --coordinator tcp://HOST:PORT (the coordinator's --listen)"
    [ -n "$model" ] || die "start needs --model DIR (the model's path on the hosts)"
fi


# The model's identity: file names and sizes and config.json's digest (the same code runs remotely).
# shellcheck disable=SC2016
manifest_function='model_manifest() {
    [ -f "$1/config.json" ] || return 1
    { find "$1" -maxdepth 1 -type f \( -name "*.safetensors" -o -name "*.json" \) -printf "%f %s\n" | sort
      sha256sum < "$1/config.json"; } | sha256sum | cut -c1-16
}'
eval "$manifest_function"
expected_manifest=""
if [ "$action" = start ]; then
    expected_manifest=$(model_manifest "$model") || die "--model $model has no config.json here: the local copy is the reference"
fi

# What runs on a host: `bash -s -- ACTION ARGS...` reads this script from stdin.
# shellcheck disable=SC2016
remote_script="$manifest_function"'
action=$1 state=$2 name=$3; shift 3
pid_file="$state/$name.pid" log_file="$state/$name.log"
running_pid() { [ -f "$pid_file" ] && pid=$(cat "$pid_file") && kill -0 "$pid" 2>/dev/null && echo "$pid"; }
case "$action" in
start)
    binary=$1 model=$2 coordinator=$3 expected=$4; shift 4
    resolved=$(command -v "$binary") || { echo "the binary $binary is missing here: copy expertmesh to this host or pass --binary PATH"; exit 3; }
    [ -d "$model" ] || { echo "the model directory $model is missing here: copy the model (e.g. rsync -a DIR host:DIR)"; exit 4; }
    actual=$(model_manifest "$model") || { echo "$model has no config.json: is it a model directory?"; exit 4; }
    [ "$actual" = "$expected" ] || { echo "the model copy at $model differs from the local one (file names, sizes or config.json): copy it again"; exit 5; }
    if pid=$(running_pid); then echo "already running (pid $pid)"; exit 0; fi
    mkdir -p "$state" || exit 6
    nohup setsid "$resolved" worker --coordinator "$coordinator" --model "$model" --name "$name" "$@" >> "$log_file" 2>&1 < /dev/null &
    echo $! > "$pid_file"
    sleep 1
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "the worker exited at once; the end of $log_file:"; tail -n 5 "$log_file"; rm -f "$pid_file"; exit 7
    fi
    echo "started (pid $(cat "$pid_file"), log $log_file)" ;;
stop)
    pid=$(running_pid) || { rm -f "$pid_file"; echo "not running"; exit 0; }
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "killed (pid $pid did not stop within 10 s)"; else echo "stopped (pid $pid)"; fi
    rm -f "$pid_file" ;;
status)
    if pid=$(running_pid); then echo "running (pid $pid, up $(ps -o etime= -p "$pid" | tr -d " "))"
    elif [ -s "$log_file" ]; then echo "not running; last log line: $(tail -n 1 "$log_file")"; exit 8
    else echo "not running"; exit 8; fi ;;
logs)
    [ -f "$log_file" ] || { echo "no log at $log_file"; exit 8; }
    tail -n "$1" "$log_file" ;;
esac'

ssh_command=(ssh -o BatchMode=yes -o ConnectTimeout="$timeout_seconds")
[ -n "$ssh_config" ] && ssh_command+=(-F "$ssh_config")

# Parse the hosts file into parallel arrays: target, name, model path, extra flags.
targets=() names=() models=() extras=()
line_number=0
while IFS= read -r line || [ -n "$line" ]; do
    line_number=$((line_number + 1))
    line=${line%%#*}
    read -r -a words <<< "$line"
    [ ${#words[@]} -gt 0 ] || continue
    target=${words[0]} name=${words[1]:-} host_model=$model flags=()
    if [ -z "$name" ] || [[ "$name" == -* ]]; then
        name=${target#*@}
        words=("${words[0]}" "$name" "${words[@]:1}")
    fi
    rest=("${words[@]:2}")
    for ((i = 0; i < ${#rest[@]}; i++)); do
        if [ "${rest[i]}" = --model ]; then host_model=${rest[i + 1]:-}; i=$((i + 1)); else flags+=("${rest[i]}"); fi
    done
    for existing in "${names[@]}"; do
        [ "$existing" != "$name" ] || die "$hosts_file:$line_number: the worker name '$name' is used twice; give each line its own name"
    done
    targets+=("$target") names+=("$name") models+=("$host_model") extras+=("${flags[*]}")
done < "$hosts_file"
[ ${#targets[@]} -gt 0 ] || die "$hosts_file lists no hosts"

# One host's action; prints its lines, returns its status.
run_host() {
    local index=$1 arguments=()
    local name=${names[index]}
    case "$action" in
        start)
            local flags=()
            read -r -a flags <<< "${extras[index]}"
            arguments=(start "$state_dir" "$name" "$binary" "${models[index]}" "$coordinator" "$expected_manifest"
                       "${flags[@]}") ;;
        logs) arguments=(logs "$state_dir" "$name" "$lines") ;;
        *) arguments=("$action" "$state_dir" "$name") ;;
    esac
    local remote_command
    remote_command="bash -s --$(printf ' %q' "${arguments[@]}")"
    if $dry_run; then
        echo "would run: ${ssh_command[*]} ${targets[index]} '$remote_command' < (this script's remote part)"
        [ "$action" != start ] || echo "which starts: ${binary} worker --coordinator $coordinator --model ${models[index]}" \
            "--name $name ${extras[index]} (detached; pid and log in $state_dir/$name.pid and .log)"
        return 0
    fi
    timeout --kill-after=5 "$timeout_seconds" "${ssh_command[@]}" "${targets[index]}" "$remote_command" <<< "$remote_script" 2>&1
    local status=$?
    case $status in
        124|137) echo "no answer within $timeout_seconds s (raise --timeout for slow hosts)" ;;
        255) echo "unreachable over ssh: check the address, the port, the key (ssh ${targets[index]} true)" ;;
    esac
    return $status
}

output_dir=$(mktemp -d)
trap 'rm -rf "$output_dir"' EXIT
for index in "${!targets[@]}"; do
    run_host "$index" > "$output_dir/$index.out" 2>&1 &
    echo $! > "$output_dir/$index.pid"
done

# The coordinator's view of each worker, for status.
coordinator_view() { :; }
if [ "$action" = status ] && [ -n "$server" ] && ! $dry_run; then
    health=$(curl -s --max-time "$timeout_seconds" "$server/health") || health=""
    coordinator_view() {
        [ -n "$health" ] || { echo "coordinator: no answer from $server/health"; return; }
        python3 -c 'import json, sys
workers = {w.get("name"): w for w in json.loads(sys.argv[1]).get("workers", [])}
w = workers.get(sys.argv[2])
print("coordinator: not connected" if w is None else "coordinator: %s, %s experts, %.0f MB resident" % (
    "ready" if w.get("ready") else ("alive, not ready" if w.get("alive") else "lost"), w.get("experts", 0),
    w.get("resident_bytes", 0) / 1e6))' "$health" "$1" 2>/dev/null || echo "coordinator: $server/health is not ExpertMesh's"
    }
fi

failed=0
for index in "${!targets[@]}"; do
    status=0
    wait "$(cat "$output_dir/$index.pid")" || status=$?
    [ $status -eq 0 ] || failed=1
    label="${names[index]} (${targets[index]})"
    if [ "$action" = logs ] || $dry_run; then
        echo "== $label"
        cat "$output_dir/$index.out"
    else
        printf '%-40s %s\n' "$label" "$(paste -s -d ';' "$output_dir/$index.out" | sed 's/;/; /g')"
        [ "$action" != status ] || [ -z "$server" ] || printf '%-40s %s\n' "" "$(coordinator_view "${names[index]}")"
    fi
done
exit $failed
