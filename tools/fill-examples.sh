#!/usr/bin/env bash
# fill-examples.sh DIST [OUT]: writes to OUT (default DIST/examples) every example under
# examples/ that pins the image digest, with ${WEBHOOK_GUARD_IMAGE_SHA256} replaced by the
# digest of DIST/image-digest (what `make release` wrote) or, when set, of the variable
# WEBHOOK_GUARD_IMAGE_SHA256 (64 hex characters, with or without "sha256:").
#
# Why not a bare envsubst: with the variable unset it writes `sha256:` with no value, the
# API server drops the null field and the module is pulled by tag, unchecked. This refuses
# an unset, empty or malformed digest and writes nothing then.
set -euo pipefail
dist=${1:?usage: fill-examples.sh DIST [OUT]}
out=${2:-$dist/examples}
root=$(cd "$(dirname "$0")/.." && pwd)
placeholder='${WEBHOOK_GUARD_IMAGE_SHA256}'

refuse() { echo "fill-examples: $*; nothing written" >&2; exit 1; }

if [ -n "${WEBHOOK_GUARD_IMAGE_SHA256+set}" ]; then
  digest=$WEBHOOK_GUARD_IMAGE_SHA256 from='WEBHOOK_GUARD_IMAGE_SHA256'
elif [ -f "$dist/image-digest" ]; then
  digest=$(cat "$dist/image-digest") from="$dist/image-digest"
else
  refuse "no $dist/image-digest (run make release) and WEBHOOK_GUARD_IMAGE_SHA256 is not set"
fi
hex=${digest#sha256:}
[[ $hex =~ ^[0-9a-f]{64}$ ]] || refuse "$from holds '$digest', not a sha256 digest (64 lowercase hex characters)"

cd "$root"
mapfile -t files < <(grep -rlF --include='*.yaml' "$placeholder" examples | sort)
[ ${#files[@]} -gt 0 ] || refuse "no example under examples/ reads $placeholder"
staged=$(mktemp -d)
trap 'rm -rf "$staged"' EXIT
for file in "${files[@]}"; do
  target="$staged/${file#examples/}"
  mkdir -p "$(dirname "$target")"
  sed "s/\${WEBHOOK_GUARD_IMAGE_SHA256}/$hex/g" "$file" > "$target"
  # Any other placeholder would reach the cluster as literal text.
  if grep -n '\${' "$target" >&2; then refuse "$file holds a placeholder this script does not fill"; fi
done
# Written only once every file is complete.
mkdir -p "$out"
cp -r "$staged"/. "$out"/
for file in "${files[@]}"; do echo "$out/${file#examples/}"; done
echo "filled with the image digest sha256:$hex (from $from)" >&2
