#!/usr/bin/env bash
# Measures every figure of BENCHMARKS.md in one run (about 10 minutes on 2 cores): the disk and
# loopback limits, produce and consume throughput for 100 B, 1 KiB and 16 KiB records, and e2e
# latency at 50% and 80% of the saturated rate with the broker's --fsync never and always, the
# first beside the machine's latency floors at the same request rate and size (loopback alone, then
# with an O_DIRECT write per request), and a light --fsync always load beside the floor of a
# durable write of the same shape.
# Usage: scripts/bench-page.sh [DATA_DIR] [OUT_DIR]   (JSON reports land in OUT_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-target/bench-page-data}
OUT=${2:-target/bench-page}
SECS=${SECS:-5}
WARM=${WARM:-1}
PORT=${PORT:-19900}
E2E_BATCH=${E2E_BATCH:-64}   # records per request in the e2e runs (64 KiB requests of 1 KiB records)
PAIRS=${PAIRS:-3}            # alternated (disk floor, e2e at 50%) pairs under --fsync never
BROKER=127.0.0.1:$PORT
BIN=target/release/strata
command -v fio >/dev/null || apt-get install -y fio >/dev/null || echo "fio not installed: disk figures without it"
cargo build --release --bin strata
mkdir -p "$OUT"
pid=
stop() { if [ -n "$pid" ]; then kill "$pid"; wait "$pid" || true; pid=; fi; }
trap stop EXIT
start() { # start FSYNC
    stop; rm -rf "$DATA"; mkdir -p "$DATA"
    "$BIN" broker --data-dir "$DATA/data" --listen "$BROKER" --fsync "$1" > "$OUT/broker-$1.out" 2> "$OUT/broker-$1.err" &
    pid=$!
    for _ in $(seq 100); do grep -q "strata broker ready" "$OUT/broker-$1.out" 2>/dev/null && return; sleep 0.1; done
    echo "broker did not start"; exit 1
}
b() { "$BIN" bench "$@" --broker "$BROKER" -q; }
rate_of() { python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['records_per_sec']))" "$1"; }

"$BIN" bench disk --dir "$(dirname "$DATA")" --duration "$SECS" --json "$OUT/disk.json"
"$BIN" bench net --duration "$SECS" --json "$OUT/net.json"

start never
for size in 100 1024 16384; do
    b produce --create-topic --record-bytes $size --duration "$SECS" --warmup "$WARM" --json "$OUT/produce-never-$size.json"
    b consume --duration "$SECS" --warmup 0 --json "$OUT/consume-never-$size.json"
done
for fsync in never always; do
    start $fsync
    if [ $fsync = always ]; then
        b produce --create-topic --record-bytes 1024 --duration "$SECS" --warmup "$WARM" --json "$OUT/produce-always-1024.json"
        # Light load: 1000 requests/s of 4 x 1 KiB (4.2 KB on the wire), beside the machine's floor
        # for that shape: one connection, each request written over written blocks with O_DIRECT
        # and fdatasync'd before its ack (no broker).
        "$BIN" bench net --rate 1000 --request-bytes 4200 --disk-dir "$DATA" --fsync \
            --duration "$SECS" --warmup "$WARM" -q --json "$OUT/net-latency-fsync.json"
        b produce --create-topic --record-bytes 1024 --batch-records 4 --rate 4000 \
            --duration "$SECS" --warmup "$WARM" --json "$OUT/produce-always-light.json"
    fi
    b e2e --create-topic --record-bytes 1024 --batch-records $E2E_BATCH --duration "$SECS" --warmup "$WARM" --json "$OUT/e2e-$fsync-saturated.json"
    sat=$(rate_of "$OUT/e2e-$fsync-saturated.json")
    if [ $fsync = never ]; then
        # The machine's latency floor for the 50% run's shape: the same requests/s and request
        # size over one loopback connection, acked on arrival (no broker).
        "$BIN" bench net --rate $((sat * 50 / 100 / E2E_BATCH)) --request-bytes $((E2E_BATCH * 1024)) \
            --duration "$SECS" --warmup "$WARM" -q --json "$OUT/net-latency-50.json"
        # The same with each request written (O_DIRECT, into a fallocated file) before its ack,
        # up to 4 writes in flight as the engine keeps 4 rounds: the floor under --fsync never.
        # Alternated with the e2e run at 50% in PAIRS pairs: one run of either is at the mercy
        # of this machine's stalls, the median of a few is not.
        for i in $(seq "$PAIRS"); do
            "$BIN" bench net --rate $((sat * 50 / 100 / E2E_BATCH)) --request-bytes $((E2E_BATCH * 1024)) \
                --disk-dir "$DATA" --disk-writers 4 --duration "$SECS" --warmup "$WARM" -q \
                --json "$OUT/net-latency-50-disk-$i.json"
            b e2e --create-topic --record-bytes 1024 --batch-records $E2E_BATCH --rate $((sat * 50 / 100)) \
                --duration "$SECS" --warmup "$WARM" --json "$OUT/e2e-never-50-$i.json" \
                --hdr-log "$OUT/e2e-never-50-$i.hlog"
        done
        python3 - "$OUT" "$PAIRS" <<'PY'
import json, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
def p99(path, key="latency_us"):
    return json.load(open(path))[key]["p99"] / 1e3
floor = [p99(f"{out}/net-latency-50-disk-{i}.json") for i in range(1, pairs + 1)]
e2e = [p99(f"{out}/e2e-never-50-{i}.json") for i in range(1, pairs + 1)]
lag = [p99(f"{out}/e2e-never-50-{i}.json", "send_lag_us") for i in range(1, pairs + 1)]
fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
print(f"50% never, p99 in ms: disk floor {fmt(floor)}; e2e {fmt(e2e)} (send lag {fmt(lag)}); "
      f"median e2e / median floor = {statistics.median(e2e):.2f} / {statistics.median(floor):.2f}"
      f" = {statistics.median(e2e) / statistics.median(floor):.2f}")
PY
    fi
    for pct in 50 80; do
        if [ $fsync = never ] && [ $pct = 50 ]; then continue; fi  # the pairs above
        b e2e --create-topic --record-bytes 1024 --batch-records $E2E_BATCH --rate $((sat * pct / 100)) \
            --duration "$SECS" --warmup "$WARM" --json "$OUT/e2e-$fsync-$pct.json" --hdr-log "$OUT/e2e-$fsync-$pct.hlog"
    done
done
stop
rm -rf "$DATA"
echo "reports in $OUT"
