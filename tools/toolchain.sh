#!/usr/bin/env bash
# toolchain.sh: makes the Rust that rust-toolchain.toml pins available, really at that
# version. A machine that cannot fetch toolchains may have that version only as its
# `stable`: it is then named for rustup (as a link to stable) instead of downloaded. Such a
# link goes stale when stable moves on, so the check is the compiler's own version, not
# the toolchain's name.
set -euo pipefail
version=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
cd /  # outside the checkout: rustup must not resolve rust-toolchain.toml yet
export RUSTUP_AUTO_INSTALL=0  # `rustup run` must report a missing toolchain, not fetch it
reports() { rustup run "$1" rustc --version 2>/dev/null || true; }
pinned=$(reports "$version")
case "$pinned" in "rustc $version "*) exit 0 ;; esac
host=$(rustup run stable rustc -vV 2>/dev/null | sed -n 's/^host: //p')
link="${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$version-$host"
if [ -n "$pinned" ]; then
  # Only our own link to stable is removed; a real toolchain reporting another version is
  # not ours to touch.
  [ -n "$host" ] && [ -L "$link" ] || { echo "Rust $version (rust-toolchain.toml) reports '$pinned'"; exit 1; }
  echo "rustup: $link is a stale link to stable ('$pinned'): removing it"
  rm "$link"
fi
case "$(reports stable)" in
  "rustc $version "*)
    ln -s "stable-$host" "$link"
    echo "rustup: Rust $version is the installed stable toolchain" ;;
  *)
    # The components and target rust-toolchain.toml lists.
    rustup toolchain install "$version" --profile minimal -c clippy -t wasm32-wasip1 ;;
esac
