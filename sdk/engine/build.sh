#!/usr/bin/env bash
# Builds engine/quickjs.wasm: QuickJS-ng and the hand-written ambit:filter@0.2.0
# bindings (src/guest.c) as one wasm32 core module that imports nothing but the world.
#
# The result is committed: `ambit-filter build` only pre-initializes it with a filter's
# JavaScript and wraps it as a component, so filter authors need no C toolchain.
# Rebuild it after changing src/ or the QuickJS version (the build is reproducible:
# the same sources and compiler give the same bytes).
#
# Needs: clang, lld, wasi-libc and libclang-rt-dev-wasm32 (Debian packages), and cargo
# to fetch the QuickJS-ng sources (the rquickjs-sys crate carries them).
set -euo pipefail
cd "$(dirname "$0")"

QUICKJS_CRATE=rquickjs-sys
QUICKJS_CRATE_VERSION=0.14.0 # QuickJS-ng 0.16.2
CC=${CC:-clang}
work=${AMBIT_ENGINE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/ambit/engine-build}
mkdir -p "$work/fetch"

# The QuickJS-ng sources, fetched and checksummed by cargo.
cat > "$work/fetch/Cargo.toml" <<TOML
[package]
name = "ambit-engine-sources"
version = "0.0.0"
edition = "2021"
publish = false
[lib]
path = "lib.rs"
[dependencies]
$QUICKJS_CRATE = "=$QUICKJS_CRATE_VERSION"
TOML
: > "$work/fetch/lib.rs"
cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml"
crate_dir=$(cargo metadata --quiet --format-version 1 --manifest-path "$work/fetch/Cargo.toml" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const m=JSON.parse(s);const p=m.packages.find(p=>p.name===process.argv[1]);console.log(require("path").dirname(p.manifest_path))})' "$QUICKJS_CRATE")
qjs="$crate_dir/quickjs"

flags=(--target=wasm32-wasi -mbulk-memory -O2 -g0 -ffunction-sections -fdata-sections
  -D_GNU_SOURCE -DEMSCRIPTEN=1 -DFE_DOWNWARD=0 -DFE_UPWARD=0 -D_WASI_EMULATED_SIGNAL -DNDEBUG
  -Wno-everything -ffile-prefix-map="$qjs"=quickjs -ffile-prefix-map="$PWD"=engine)
objs=()
for f in quickjs libregexp libunicode dtoa; do
  "$CC" "${flags[@]}" -c "$qjs/$f.c" -o "$work/$f.o"
  objs+=("$work/$f.o")
done
for f in guest os; do
  "$CC" "${flags[@]}" -Wall -Wno-unused-parameter -I"$qjs" -c "src/$f.c" -o "$work/$f.o"
  objs+=("$work/$f.o")
done

# AMBIT_ENGINE_NAMES=1 keeps the function names (for profiling) and writes the module to
# the work folder only.
strip=-Wl,--strip-all
[ "${AMBIT_ENGINE_NAMES:-}" = 1 ] && strip=-Wl,--strip-debug
"$CC" --target=wasm32-wasi -mbulk-memory -nostartfiles -Wl,--no-entry -Wl,--stack-first -Wl,-z,stack-size=262144 \
  -Wl,--gc-sections $strip -o "$work/quickjs.wasm" "${objs[@]}" -lwasi-emulated-signal

# Nothing but the world may be imported.
node -e '
const m = new WebAssembly.Module(require("fs").readFileSync(process.argv[1]));
const bad = WebAssembly.Module.imports(m).filter((i) => !i.module.startsWith("ambit:filter/"));
if (bad.length) { console.error("engine imports outside the world:", bad.map((i) => i.module + "." + i.name).join(", ")); process.exit(1); }
' "$work/quickjs.wasm"
if [ "${AMBIT_ENGINE_NAMES:-}" = 1 ]; then echo "with names: $work/quickjs.wasm"; exit 0; fi
cp "$work/quickjs.wasm" quickjs.wasm
echo "engine/quickjs.wasm: $(wc -c < quickjs.wasm) bytes, sha256 $(sha256sum quickjs.wasm | cut -c1-16)…"
