#!/usr/bin/env bash
# The quickstart: builds strata, starts a broker on the default data directory (./strata-data)
# and port (127.0.0.1:9700, or $STRATA_LISTEN), creates a topic, produces 100,000 keyed records
# through `strata produce`, reads some back with `strata consume`, describes the topic, and
# stops the broker cleanly. Run it again: the broker reopens the same data and appends.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release
strata="$PWD/target/release/strata"
export STRATA_LISTEN="${STRATA_LISTEN:-127.0.0.1:9700}"
export STRATA_BROKER="$STRATA_LISTEN"
log="$PWD/target/quickstart-broker.log"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "strata broker &    # data dir ./strata-data, listening on $STRATA_LISTEN (log: $log)"
"$strata" broker >"$log" 2>&1 &
broker=$!
stop_broker() {
    if kill -0 "$broker" 2>/dev/null; then
        kill -TERM "$broker"
        wait "$broker" || true
    fi
}
trap stop_broker EXIT
for _ in $(seq 1 600); do
    grep -q "strata broker ready" "$log" 2>/dev/null && break
    if ! kill -0 "$broker" 2>/dev/null; then
        cat "$log" >&2
        echo "quickstart: the broker did not start (see above)" >&2
        exit 1
    fi
    sleep 0.1
done
sed -n '/strata broker ready/,$p' "$log"

if ! "$strata" topic describe quickstart >/dev/null 2>&1; then
    step "strata topic create quickstart --partitions 3"
    "$strata" topic create quickstart --partitions 3
fi

step "seq 1 100000 | awk '{print \"user-\" \$1 % 10 \":event-\" \$1}' | strata produce quickstart --key-separator :"
start=$(date +%s.%N)
seq 1 100000 | awk '{print "user-" $1 % 10 ":event-" $1}' | "$strata" produce quickstart --key-separator :
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "produced 100000 records in %.2f s (%.0f records/s), every one acknowledged after fdatasync\n", e - s, 100000 / (e - s) }'

step "strata consume quickstart --from-beginning --partition 0 --max-messages 5 --format 'partition %p offset %o key %k value %v\n'"
"$strata" consume quickstart --from-beginning --partition 0 --max-messages 5 \
    --format 'partition %p offset %o key %k value %v\n'

step "strata consume quickstart --group quickstart-readers --from-beginning --max-messages 5"
"$strata" consume quickstart --group quickstart-readers --from-beginning --max-messages 5 \
    --format 'partition %p offset %o key %k value %v\n'

step "strata topic describe quickstart"
"$strata" topic describe quickstart

step "strata group describe quickstart-readers    # run the quickstart again: the group carries on"
"$strata" group describe quickstart-readers

step "kill -TERM <broker>    # graceful: finishes in-flight requests, flushes, exits 0"
stop_broker
tail -n 2 "$log"
