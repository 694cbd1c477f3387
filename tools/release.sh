#!/usr/bin/env bash
# release.sh VERSION MODULE DIST: writes DIST/webhook_guard.wasm, its sha256 and the module
# as an OCI image (an OCI layout in DIST/oci, tagged VERSION) that Istio's WasmPlugin and
# Envoy Gateway's EnvoyExtensionPolicy pull. Built with buildah, without a daemon, and
# deterministic: the same module always gives the same image digest.
set -euo pipefail
version=$1 module=$2 dist=$3
"$(dirname "$0")/need.sh" buildah buildah

rm -rf "$dist"
mkdir -p "$dist"
cp "$module" "$dist/webhook_guard.wasm"
(cd "$dist" && sha256sum webhook_guard.wasm > webhook_guard.wasm.sha256)

# The "compat" Wasm image: one gzip layer holding /plugin.wasm, OCI media types. A
# throw-away storage directory keeps buildah off the machine's own image store.
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
buildah=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
container=$("${buildah[@]}" from --quiet scratch)
"${buildah[@]}" copy --quiet --chmod 0644 --chown 0:0 "$container" "$dist/webhook_guard.wasm" /plugin.wasm
"${buildah[@]}" config --os linux --arch amd64 \
  --annotation org.opencontainers.image.title=webhook-guard \
  --annotation org.opencontainers.image.version="$version" "$container"
# --timestamp 0: the image's created time and the layer's file times are the epoch.
"${buildah[@]}" commit --quiet --rm --timestamp 0 --identity-label=false --omit-history \
  --disable-compression=false "$container" "oci:$dist/oci:$version" >/dev/null
digest=$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$dist/oci/index.json")
echo "$digest" > "$dist/image-digest"

cat <<MSG
dist/webhook_guard.wasm  $(wc -c < "$dist/webhook_guard.wasm") bytes, sha256 $(cut -d' ' -f1 "$dist/webhook_guard.wasm.sha256")
  (plain Envoy: vm_config.code.remote.sha256)
dist/oci  OCI image layout, tag $version, manifest digest $digest
  (Istio WasmPlugin sha256, Envoy Gateway image.sha256: \`make fill-examples\` writes the
  examples that pin it, filled in, to $dist/examples/)
Push it: skopeo copy oci:$dist/oci:$version docker://REGISTRY/webhook-guard:$version
MSG
