#!/usr/bin/env bash
# Serves the built Golem components on the test Golem host (golem-host/), as a
# local Golem would after `golem deploy`: builds the components and the host
# if needed, then runs it and prints the address once it serves.
#
#   scripts/golem-host.sh [--listen 127.0.0.1:9006] [other golem-host options]
#
# GOLEM_HOST_PROFILE=dev runs a debug build of the host (much quicker to build;
# the components themselves run compiled by Cranelift either way).
# GOLEM_HOST_BIN=PATH runs that host binary instead of building one (the test
# command passes the one `cargo test --workspace` has just built).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-components.sh --build-only >&2
[ -n "${GOLEM_HOST_BIN:-}" ] && exec "$GOLEM_HOST_BIN" "$@"
profile=${GOLEM_HOST_PROFILE:-release}
cargo build --locked --profile "$profile" -p golem-host >&2
case "$profile" in
  dev) dir=debug ;;
  *) dir=$profile ;;
esac
exec "target/$dir/golem-host" "$@"
