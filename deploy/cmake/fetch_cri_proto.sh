#!/bin/sh
# Fetches the CRI v1 api.proto from Debian's containerd source package, the exact version the
# installed containerd speaks, and writes it without its gogoproto lines to <out>.
#   fetch_cri_proto.sh <work dir> <out file>
# apt runs with a private deb-src list and private state/cache dirs under <work dir>: the system's
# apt configuration is neither read for sources nor changed.
set -eu
work=$1
out=$2
apt="$work/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc/sources.list.d" \
  "$apt/etc/preferences.d" "$work/src"
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
  >"$apt/etc/sources.list"
set -- -o "Dir::Etc::sourcelist=$apt/etc/sources.list" -o "Dir::Etc::sourceparts=$apt/etc/sources.list.d" \
  -o "Dir::Etc::preferencesparts=$apt/etc/preferences.d" -o "Dir::State=$apt" \
  -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1" \
  -o "APT::Sandbox::User=root" -qq
apt-get "$@" update
cd "$work/src"
apt-get "$@" source --download-only containerd
orig=$(ls containerd_*.orig.tar.* | head -n 1)
member=$(tar -tf "$orig" | grep '/vendor/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto$' | head -n 1)
[ -n "$member" ] || { echo "no CRI v1 api.proto in $orig" >&2; exit 1; }
tar -xf "$orig" "$member"
grep -v 'gogoproto' "$member" >"$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$work/src"
