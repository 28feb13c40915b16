#!/usr/bin/env bash
# Storage benchmark: strata's partition log next to fio on the same directory, in one run.
# Usage: scripts/bench-storage.sh [DIR] [--seconds S] [--pairs N] [--depth N] [--appenders N]
# DIR defaults to target/bench-data (on the disk the data directory would use).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v fio >/dev/null 2>&1; then
    echo "installing fio (apt-get install -y fio)" >&2
    apt-get update -qq && apt-get install -y -qq fio >/dev/null
fi
dir_args=()
if [[ $# -gt 0 && "$1" != --* ]]; then
    dir_args=(--dir "$1")
    shift
fi
exec cargo bench --bench storage -- "${dir_args[@]}" "$@"
