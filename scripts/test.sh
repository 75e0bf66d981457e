#!/usr/bin/env bash
# The project's test command: formatting, lints, every test.
# Installs what it needs (rust components and targets, protoc, jq, the Pulsar
# test brokers' Python packages, Schemathesis, wasm-tools, Chromium) on a
# fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A clean build compiles everything once: incremental caches would only cost
# disk (several GB). Developers who rerun the suite may set it to 1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version
df -h . | tail -1 | awk '{print "disk free here: " $4}'

step "setup"
scripts/setup.sh

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Before the tests: the Golem host's tests run the built components.
step "Golem components (wasm32-wasip2)"
scripts/build-components.sh

step "test"
cargo test --workspace --locked

step "HTTP API fuzz (Schemathesis against the served OpenAPI)"
scripts/test-api-fuzz.sh

step "dashboard in headless Chromium"
scripts/test-dashboard.sh

step "the Golem walkthrough of docs/golem.md on the test Golem host"
# The host the tests just ran (built with the tests' features: no second build).
GOLEM_HOST_BIN="${CARGO_TARGET_DIR:-target}/debug/golem-host-under-test" scripts/test-golem-walkthrough.sh

step "done"
du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null | awk '{print "target directory: " $1}'
