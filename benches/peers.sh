#!/usr/bin/env bash
# Installs the peers and load generators the e2e bench compares berth with:
#   wrk, h2load (nghttp2-client), nginx   from Debian (apt-get)
#   oha, rathole                           from crates.io (cargo install)
# Idempotent: installs only what is missing and says what it installed.
# Needs root for apt-get (or sudo). `cargo bench --bench e2e -- --quick`
# (the CI smoke) needs none of these; the full run skips a missing peer.
set -euo pipefail

installed=()
apt_updated=0

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() { # command package
  command -v "$1" >/dev/null && return 0
  [ -x "/usr/sbin/$1" ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null
  installed+=("$2 (apt)")
}

cargo_install() { # command crate [--locked]
  command -v "$1" >/dev/null && return 0
  [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/$1" ] && return 0
  cargo install --quiet ${3:-} "$2" >/dev/null
  installed+=("$2 (cargo)")
}

apt_install wrk wrk
apt_install h2load nghttp2-client
apt_install nginx nginx
# oha's newest dependencies can need a newer rustc than its own lock file
# does: --locked builds what oha was released with.
cargo_install oha oha --locked
# rathole the other way round: its lock file pins crates this toolchain
# rejects, so it is built without --locked.
cargo_install rathole rathole

# Debian starts nginx as a service on install; the bench runs its own.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  as_root systemctl stop nginx >/dev/null 2>&1 || true
fi

if [ "${#installed[@]}" -eq 0 ]; then
  echo "peers.sh: all present (wrk, h2load, nginx, oha, rathole)"
else
  echo "peers.sh: installed ${installed[*]}"
fi
