# shellcheck shell=bash disable=SC2034,SC2154
# Shared by the scripts/netns-*.sh scripts (sourced, not run): hosts as network namespaces joined
# to one bridge by veth pairs, addresses in the benchmarking range 198.18.0.0/15, and a cleanup on
# exit of every namespace, link and process they started. Set `tag` (a short prefix, unique per run)
# before sourcing. Gives: $bridge, $logs (a temporary folder), the arrays `pids` (processes to
# stop) and `namespaces`; `host <index> <address>` (with `netns_delay` set, e.g. 500us, that
# latency is added both ways by tc netem; with `netns_rate` set, e.g. 250mbit, each direction of
# the host's link is held to that rate by tc tbf, or by netem beside a delay); `shape <index>` and
# `unshape <index>` add and remove that at any time; `wait_healthy <host index> <url>` (0 once
# GET <url> answers 200 from that host, 1 after 60 s).
bridge="${tag}br"
logs=$(mktemp -d)
pids=()
namespaces=()
netns_delay="${netns_delay:-}"
netns_rate="${netns_rate:-}"
netns_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    ip link del "$bridge" 2>/dev/null || true
}
trap netns_cleanup EXIT
ip link add "$bridge" type bridge
ip link set "$bridge" up

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
    if [ -n "$netns_delay$netns_rate" ]; then shape "$1"; fi
}

# The qdisc that gives a link `netns_delay` and `netns_rate`.
link_qdisc() {
    if [ -n "$netns_delay" ]; then
        echo "netem delay $netns_delay${netns_rate:+ rate $netns_rate}"
    else
        # A small bucket and a long queue: messages go at the rate, none are dropped.
        echo "tbf rate $netns_rate burst 8kb limit 8mb"
    fi
}

# Outgoing in the namespace and outgoing on the bridge side: both directions.
shape() {
    local qdisc
    qdisc=$(link_qdisc)
    # shellcheck disable=SC2086
    if ! ip netns exec "${tag}h$1" tc qdisc replace dev "${tag}p$1" root $qdisc \
        || ! tc qdisc replace dev "${tag}v$1" root $qdisc; then
        echo "netns: tc could not add '$qdisc' to host $1's link" >&2
        if [ -n "$netns_delay" ]; then
            echo "netns: a delay needs netem (CONFIG_NET_SCH_NETEM); without it give a rate alone (tbf)" >&2
        fi
        return 1
    fi
}

unshape() {
    ip netns exec "${tag}h$1" tc qdisc del dev "${tag}p$1" root 2>/dev/null || true
    tc qdisc del dev "${tag}v$1" root 2>/dev/null || true
}

wait_healthy() {
    for _ in $(seq 1 300); do
        if ip netns exec "${tag}h$1" python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('$2', timeout=1).status == 200 else 1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}
