#!/usr/bin/env bash
# Real-browser end-to-end test of berth (Chromium driven by playwright-core).
# Installs what it needs if missing, builds berth (debug), runs the test.
# The last line printed is `N passed, M failed`; the exit status is non-zero on
# any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

fail_setup() {
  echo "browser test setup failed: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

# Chromium and certutil (libnss3-tools) from Debian. Playwright's own browser
# download does not work on these machines; Debian's chromium does.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
if ((${#missing[@]})); then
  echo "# installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || fail_setup "apt-get install ${missing[*]}"
fi
command -v node >/dev/null 2>&1 || fail_setup "node is not installed"

# playwright-core and ws, pinned by package-lock.json.
if [ ! -d "$HERE/node_modules/playwright-core" ] || [ ! -d "$HERE/node_modules/ws" ] \
  || [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
  echo "# npm ci in tests/browser"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || fail_setup "npm ci"
fi

# berth itself (debug: shares the build with cargo test).
echo "# cargo build"
cargo build --quiet --bin berth || fail_setup "cargo build"

export BERTH_BIN="${BERTH_BIN:-$ROOT/target/debug/berth}"
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
# The test has its own 180 s limit; this one is a backstop if node itself hangs.
rc=0
timeout -k 10 210 node "$HERE/browser.test.mjs" || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "not ok - node did not finish within 210 s"
  echo "0 passed, 1 failed"
fi
exit "$rc"
