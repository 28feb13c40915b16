#!/usr/bin/env bash
# The whole test suite. Installs what the tests need first: cmake, to build the flatc that
# checks src/protocol/strata_generated.rs against schema/strata.fbs.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
    echo "installing cmake (apt-get install -y cmake)" >&2
    apt-get update -qq && apt-get install -y -qq cmake >/dev/null
fi
exec cargo test --release "$@"
