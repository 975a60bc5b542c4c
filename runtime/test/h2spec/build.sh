#!/usr/bin/env bash
# Builds h2spec (the HTTP/2 conformance suite, Go module github.com/summerwind/h2spec) from the
# Go module proxy, through the wrapper module in this folder, into a cache outside the clone
# keyed on go.sum, and prints the path of the binary. A cached build is reused as is (no Go
# needed then).
#
#   h2spec="$(runtime/test/h2spec/build.sh)"    # → ~/.cache/ambit/h2spec/<version>-<key>/h2spec
#
# Env: AMBIT_H2SPEC_CACHE (default ${AMBIT_CACHE_HOME:-$HOME/.cache/ambit}/h2spec),
#      GOFLAGS/GOPROXY as Go reads them. Cold: well under a CPU-minute.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(cat "$here/VERSION")"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" | sha256sum | cut -c1-16)"
cache="${AMBIT_H2SPEC_CACHE:-${AMBIT_CACHE_HOME:-$HOME/.cache/ambit}/h2spec}"
out="$cache/$version-$key"
if [ -x "$out/h2spec" ]; then
  echo "$out/h2spec"; exit 0
fi
command -v go >/dev/null || {
  echo "AMBIT_ERR_H2SPEC_BUILD: go is not installed and no cached build is in $out: install Go (>= 1.26) and run again" >&2
  exit 1
}
tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cd "$here"
export CGO_ENABLED=0 GOFLAGS="-mod=readonly ${GOFLAGS:-}"
echo "building h2spec $version" >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/h2spec" github.com/summerwind/h2spec/cmd/h2spec >&2
mkdir -p "$(dirname "$out")"
rm -rf "$out"; mv "$tmp" "$out"
trap - EXIT
echo "$out/h2spec"
