#!/usr/bin/env bash
# Fetch MicroPython's source from Debian's trixie source package (no other internet is needed)
# and unpack it into .cache/micropython-$VERSION/src, with trixie's Mbed TLS 3.6 source in its
# lib/mbedtls (Debian strips that submodule; the unix port's ssl module builds from it).
# Idempotent: a second run does nothing.
set -euo pipefail
# `fetch-micropython.sh --mirror` prints the Debian mirror it would use and exits; APT_ETC (default
# /etc/apt) is where it looks, so the detection can be tried on another configuration.
here=$(cd "$(dirname "$0")/.." && pwd)
version=${MICROPYTHON_VERSION:-1.25.0}
cache="$here/.cache/micropython-$version"
apt_etc=${APT_ETC:-/etc/apt}

# The first Debian archive (a URI ending in /debian) this machine's apt already uses: one-line
# sources (sources.list, sources.list.d/*.list) and deb822 ones (sources.list.d/*.sources).
debian_mirror() {
  local files=() f
  for f in "$apt_etc/sources.list" "$apt_etc"/sources.list.d/*.list "$apt_etc"/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk '/^[ \t]*#/ { next }
       /^[ \t]*deb(-src)?[ \t]/ { sub(/\[[^]]*\]/, ""); print $2; next }
       /^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "${files[@]}" \
    | sed -n 's#^\(https\{0,1\}://[^ ]*/debian\)/\{0,1\}$#\1#p' | head -n1
}

have_micropython() { [ -f "$cache/src/py/mpconfig.h" ]; }
have_mbedtls() { [ -f "$cache/src/lib/mbedtls/include/mbedtls/ssl.h" ]; }
[ "${1:-}" != "--mirror" ] && have_micropython && have_mbedtls && exit 0
mirror=$(debian_mirror)
if [ -z "$mirror" ]; then
  echo "spoolbus: no Debian mirror in $apt_etc/sources.list or $apt_etc/sources.list.d/ (*.list, *.sources):" \
       "add one (e.g. deb http://deb.debian.org/debian trixie main) or put MicroPython's source in $cache/src" >&2
  exit 1
fi
if [ "${1:-}" = "--mirror" ]; then
  echo "$mirror"
  exit 0
fi

mkdir -p "$cache/apt/lists/partial" "$cache/dl"
cat > "$cache/apt/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
SRC
apt_opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o "Dir::Etc::SourceParts=-"
          -o "Dir::State::Lists=$cache/apt/lists" -o "APT::Get::List-Cleanup=0")
apt-get "${apt_opts[@]}" -qq update
if ! have_micropython; then
  echo "spoolbus: fetching MicroPython $version source (Debian trixie source package)"
  (cd "$cache/dl" && apt-get "${apt_opts[@]}" -qq source --download-only "micropython=${version}+ds-1" \
    || apt-get "${apt_opts[@]}" -qq source --download-only micropython)
  orig=$(ls "$cache"/dl/micropython_*.orig.tar.* | head -n1)
  rm -rf "$cache/src.tmp" && mkdir -p "$cache/src.tmp"
  tar -xf "$orig" -C "$cache/src.tmp" --strip-components=1
  mv "$cache/src.tmp" "$cache/src"
  echo "spoolbus: MicroPython source in $cache/src"
fi
if ! have_mbedtls; then
  # MicroPython 1.25's extmod.mk lists the source files of Mbed TLS 3.6 (the version its boards bundle).
  echo "spoolbus: fetching Mbed TLS 3.6 source (Debian trixie source package)"
  (cd "$cache/dl" && apt-get "${apt_opts[@]}" -qq source --download-only mbedtls)
  orig=$(ls "$cache"/dl/mbedtls_3.6.*.orig.tar.* 2>/dev/null | head -n1)
  if [ -z "$orig" ]; then
    echo "spoolbus: Debian trixie's mbedtls source is not version 3.6 ($(ls "$cache"/dl/mbedtls_*.dsc 2>/dev/null));" \
         "put Mbed TLS 3.6 in $cache/src/lib/mbedtls" >&2
    exit 1
  fi
  lib="$cache/src/lib"
  rm -rf "$lib/mbedtls.tmp" && mkdir -p "$lib/mbedtls.tmp"
  tar -xf "$orig" -C "$lib/mbedtls.tmp" --strip-components=1
  rm -rf "$lib/mbedtls" && mv "$lib/mbedtls.tmp" "$lib/mbedtls"
  echo "spoolbus: Mbed TLS source in $lib/mbedtls"
fi
