#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from the Go module proxy (the wrapper module in this
# folder) into a cache outside the clone, keyed on go.sum, and prints the folder holding them.
# A cached build is reused as is (no Go needed then).
#
#   bin="$(controller/kube/build.sh)"    # → ~/.cache/ambit/kube/<key>/bin
#
# Env: AMBIT_KUBE_CACHE (default ${AMBIT_CACHE_HOME:-$HOME/.cache/ambit}/kube),
#      GOFLAGS/GOPROXY as Go reads them. Cold: about 10 CPU-minutes; warm Go build cache: seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(cat "$here/VERSION")"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" | sha256sum | cut -c1-16)"
cache="${AMBIT_KUBE_CACHE:-${AMBIT_CACHE_HOME:-$HOME/.cache/ambit}/kube}"
out="$cache/$version-$key/bin"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -x "$out/kubectl" ]; then
  echo "$out"; exit 0
fi
command -v go >/dev/null || {
  echo "AMBIT_ERR_KUBE_BUILD: go is not installed and no cached build is in $out: install Go (>= 1.25) and run again" >&2
  exit 1
}
minor="${version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cd "$here"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--mod=readonly}"
for target in k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kubectl; do
  name="$(basename "$target")"; [ "$name" = v3 ] && name=etcd
  echo "building $name ($target)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$target" >&2
done
mkdir -p "$(dirname "$out")"
rm -rf "$out"; mv "$tmp" "$out"
trap - EXIT
echo "$out"
