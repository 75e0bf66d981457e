#!/usr/bin/env bash
# Browser tests of the dashboard: headless Chromium (Debian's `chromium`)
# driven by playwright-core against a `timeline serve` built from this tree.
# Screenshots land in target/dashboard/. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "test-dashboard: need root to run: $*" >&2
        return 1
    fi
}

if [ ! -x /usr/bin/chromium ]; then
    echo "test-dashboard: installing chromium"
    as_root apt-get install -y -q chromium >/dev/null 2>&1 || {
        as_root apt-get update -q >/dev/null
        as_root apt-get install -y -q chromium >/dev/null
    }
fi
command -v node >/dev/null || { echo "test-dashboard: needs Node.js 20 or later" >&2; exit 1; }
(cd tests/dashboard && npm ci --no-audit --no-fund --loglevel=error)

cargo build --locked -p timeline-local --bin timeline
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
export TIMELINE_BIN="$target_dir/debug/timeline"
cd tests/dashboard
node --test --test-concurrency=1 --test-reporter=spec
