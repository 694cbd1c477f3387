#!/usr/bin/env bash
# limitador 0.11-0.14 do not compile with redis_storage alone: the Redis keys use its
# `storage::keys::bin` module, which is gated on disk_storage (RocksDB, a C++ build of
# over an hour on two cores). This unpacks limitador 0.14.0, fetched by cargo, into
# target/ and widens the gates of that module and of the Counter method it calls;
# Cargo.toml's [patch.crates-io] builds it from there.
set -euo pipefail
cd "$(dirname "$0")"
out=target/limitador-0.14.0
[ -f "$out/.patched" ] && exit 0
# Fetch the crate with cargo through a throwaway manifest (this one needs the patch).
fetch=target/fetch-limitador
mkdir -p "$fetch/src"
printf '[package]\nname = "fetch-limitador"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\nlimitador = { version = "=0.14.0", default-features = false }\n' > "$fetch/Cargo.toml"
touch "$fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$fetch/Cargo.toml"
crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/limitador-0.14.0.crate | head -n1)
rm -rf "$out" && tar -xzf "$crate" -C target
for file in src/storage/keys.rs src/counter.rs; do
  grep -q '^ *#\[cfg(feature = "disk_storage")\]$' "$out/$file"
  sed -i 's/^\( *\)#\[cfg(feature = "disk_storage")\]$/\1#[cfg(any(feature = "disk_storage", feature = "redis_storage"))]/' "$out/$file"
done
touch "$out/.patched"
