#!/usr/bin/env bash
# reproduce.sh: builds the committed HEAD twice, each time in a fresh clone with an empty
# cargo target directory (`make release`), and checks that the module's sha256 and the
# image digest are the same both times. Prints both and the time each build took.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse HEAD)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for n in 1 2; do
  git clone --quiet --no-local . "$work/$n"
  git -C "$work/$n" checkout --quiet --detach "$commit"
  start=$(date +%s)
  make -C "$work/$n" --no-print-directory release > "$work/build-$n.log" 2>&1 ||
    { cat "$work/build-$n.log"; exit 1; }
  echo "build $n: $(( $(date +%s) - start )) s, module $(cut -d' ' -f1 "$work/$n/dist/webhook_guard.wasm.sha256"), image $(cat "$work/$n/dist/image-digest")"
done
for file in webhook_guard.wasm.sha256 image-digest; do
  cmp -s "$work/1/dist/$file" "$work/2/dist/$file" || { echo "NOT reproducible: dist/$file differs"; exit 1; }
done
echo "reproducible: commit $commit gives the same module and image twice"
