#!/usr/bin/env bash
# toolchain.sh: makes the Rust that rust-toolchain.toml pins available without a download.
# A machine that cannot fetch toolchains may have that version only as its `stable`: it is
# then named for rustup (as a link to stable), instead of rustup trying to download it.
set -euo pipefail
version=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
cd /  # outside the checkout: rustup must not resolve rust-toolchain.toml yet
rustup toolchain list | grep -q "^$version-" && exit 0
stable=$(rustup run stable rustc --version 2>/dev/null || true)
case "$stable" in
  "rustc $version "*) ;;
  *) echo "Rust $version (rust-toolchain.toml) is not installed and stable is '${stable:-missing}': rustup toolchain install $version"
     exit 1 ;;
esac
host=$(rustup run stable rustc -vV | sed -n 's/^host: //p')
ln -s "stable-$host" "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$version-$host"
echo "rustup: Rust $version is the installed stable toolchain"
