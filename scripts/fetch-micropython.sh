#!/usr/bin/env bash
# Fetch MicroPython's source from Debian's trixie source package (no other internet is needed)
# and unpack it into .cache/micropython-$VERSION/src. Idempotent: a second run does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=${MICROPYTHON_VERSION:-1.25.0}
cache="$here/.cache/micropython-$version"
[ -f "$cache/src/py/mpconfig.h" ] && exit 0

mkdir -p "$cache/apt/lists/partial" "$cache/dl"
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}
cat > "$cache/apt/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
SRC
apt_opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o "Dir::Etc::SourceParts=-"
          -o "Dir::State::Lists=$cache/apt/lists" -o "APT::Get::List-Cleanup=0")
echo "spoolbus: fetching MicroPython $version source (Debian trixie source package)"
apt-get "${apt_opts[@]}" -qq update
(cd "$cache/dl" && apt-get "${apt_opts[@]}" -qq source --download-only "micropython=${version}+ds-1" \
  || apt-get "${apt_opts[@]}" -qq source --download-only micropython)
orig=$(ls "$cache"/dl/micropython_*.orig.tar.* | head -n1)
rm -rf "$cache/src.tmp" && mkdir -p "$cache/src.tmp"
tar -xf "$orig" -C "$cache/src.tmp" --strip-components=1
mv "$cache/src.tmp" "$cache/src"
echo "spoolbus: MicroPython source in $cache/src"
