#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine, and
# nothing that is already there:
#   protoc             (Debian protobuf-compiler): the `pulsar` crate's build script
#   jq, curl           (Debian): the Golem walkthrough of docs/golem.md, run as a test
#   pulsar-lite        (PyPI): an independent Pulsar-protocol broker for the feeder's tests
#   pulsar-client      (PyPI): the official Python Pulsar client, the tests' producer
#   schemathesis       (PyPI, in a venv): the property-based API test (scripts/test-api-fuzz.sh)
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup: need root to run: $*" >&2
        return 1
    fi
}

if ! command -v protoc >/dev/null; then
    echo "setup: installing protobuf-compiler (protoc)"
    as_root apt-get install -y -q protobuf-compiler >/dev/null 2>&1 || {
        as_root apt-get update -q >/dev/null
        as_root apt-get install -y -q protobuf-compiler >/dev/null
    }
fi
protoc --version

for tool in jq curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "setup: installing $tool"
        as_root apt-get install -y -q "$tool" >/dev/null 2>&1 || {
            as_root apt-get update -q >/dev/null
            as_root apt-get install -y -q "$tool" >/dev/null
        }
    fi
done

if ! python3 -c "import pulsar_lite, pulsar" >/dev/null 2>&1; then
    echo "setup: installing pulsar-lite and pulsar-client from PyPI"
    python3 -m pip install -q --disable-pip-version-check "pulsar-lite==0.2.0" "pulsar-client>=3.5,<4"
fi
python3 -c "import pulsar_lite, pulsar; print('pulsar-lite and pulsar-client: ok')"

# Schemathesis has many dependencies: its own venv keeps them apart.
API_FUZZ_VENV="${API_FUZZ_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/golem-timeline/api-fuzz-venv}"
SCHEMATHESIS_VERSION=4.32.5
if ! "$API_FUZZ_VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "setup: installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $API_FUZZ_VENV"
    python3 -m venv "$API_FUZZ_VENV"
    "$API_FUZZ_VENV/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$API_FUZZ_VENV/bin/st" --version
