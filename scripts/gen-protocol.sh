#!/usr/bin/env bash
# Regenerates src/protocol/strata_generated.rs from schema/strata.fbs with the flatc that the
# `flatc` crate builds from source (Debian's flatc 2.0.8 emits code the flatbuffers 25 crate
# rejects). The protocol_schema test fails until the result is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cmake >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq cmake >/dev/null; }
# Build the test binary (and with it flatc), then find flatc in the build output.
cargo test --release --test protocol_schema --no-run >/dev/null 2>&1 || true
flatc=$(ls -t target/release/build/flatc-*/out/bin/flatc 2>/dev/null | head -1)
[[ -x "$flatc" ]] || { echo "flatc was not built (is cmake installed?)" >&2; exit 1; }
"$flatc" --rust -o src/protocol schema/strata.fbs
echo "regenerated src/protocol/strata_generated.rs with $("$flatc" --version)"
