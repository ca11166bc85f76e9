#!/usr/bin/env bash
# Builds the berth Debian package: the release binary (cargo build --release,
# reused if it is up to date), its shell completions and man pages, then
# `cargo deb`. Prints the .deb's path on the last line.
#
#   deploy/debian/build.sh            # needs cargo-deb: cargo install cargo-deb --locked
#
# The binary is packaged as cargo built it (the release profile strips it).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "cargo-deb is required: cargo install cargo-deb --locked" >&2
  exit 1
fi

cargo build --release --locked --bin berth
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
berth="$target_dir/release/berth"
# cargo-deb reads these from target/release/dist (Cargo.toml, [package.metadata.deb]).
dist="$target_dir/release/dist"
rm -rf "$dist"
mkdir -p "$dist/man"
"$berth" completions bash >"$dist/berth.bash"
"$berth" completions zsh >"$dist/_berth"
"$berth" completions fish >"$dist/berth.fish"
"$berth" man "$dist/man"
gzip -9n "$dist"/man/*.1

# cargo-deb prints the .deb's path last.
cargo deb --no-build --locked --output "$target_dir/debian/" | tail -1
