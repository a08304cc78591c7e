#!/usr/bin/env bash
# Packaging test (issues 7 and 21): builds the outpost .deb and .rpm from a separate Release tree,
# signs them with a release key made here (scripts/package --sign: the .rpm, an apt and a yum
# repository), lints them, checks that rpm, gpgv and apt accept what is signed and refuse it changed,
# then installs the .deb on this machine and checks install, remove, purge, and the upgrade from an
# older version by apt from the signed repository. It leaves the machine as it found it: the package
# is purged on every exit; keys, rpm database and apt state are throwaway ones in the work directory
# (the machine's keyrings and apt sources are neither used nor changed).
#   packaging_test.sh SOURCE_DIR WORK_DIR [CMAKE [CPACK]]
# Exit 0 when every check passed, 1 when one failed, 77 (skipped) when not root or without dpkg.
set -uo pipefail

src=$(cd "$1" && pwd)
work=$2
cmake=${3:-cmake}
cpack=${4:-cpack}
old_version=0.0.1
old_schema=2
release=1

failures=0
checks=0
ok() { checks=$((checks + 1)); echo "ok    $*"; }
bad() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL  $*"; }
die() { echo "FAIL  $*"; echo "packaging test: stopped early, $failures check(s) failed before"; exit 1; }
skip() { echo "SKIPPED: $*"; exit 77; }
# check DESCRIPTION COMMAND...: one check, passes when the command succeeds.
check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
# mode_is PATH MODE OWNER: file exists with that octal mode and owner:group.
mode_is() {
  local got
  got=$(stat -c '%a %U:%G' "$1" 2>/dev/null) || { echo "      $1: missing"; return 1; }
  [ "$got" = "$2 $3" ] || { echo "      $1: $got, want $2 $3"; return 1; }
}
absent() {
  local p rc=0
  for p in "$@"; do
    if [ -e "$p" ] || [ -L "$p" ]; then echo "      still there: $p"; rc=1; fi
  done
  return $rc
}
pkg_status() { dpkg-query -W -f='${db:Status-Status}' outpost 2>/dev/null || echo not-installed; }
pkg_version() { dpkg-query -W -f='${Version}' outpost 2>/dev/null; }
# The agent's processes, found by executable: other tests on this machine run their own outpostd.
agent_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = /usr/bin/outpostd ] && echo "${p#/proc/}"
  done
  return 0
}

apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold "$@"
}

# What the package owns or its scripts create; all of it must be gone after a purge.
leftovers=(/etc/outpost /var/lib/outpost /run/outpost /usr/bin/outpostd /usr/bin/outpostctl
  /usr/libexec/outpost /usr/lib/systemd/system/outpost.service /usr/share/doc/outpost
  /usr/share/man/man8/outpostd.8.gz /usr/share/man/man1/outpostctl.1.gz
  /usr/share/bash-completion/completions/outpostctl /usr/share/bash-completion/completions/outpostd
  /usr/share/lintian/overrides/outpost /etc/systemd/system/outpost.service
  /etc/systemd/system/multi-user.target.wants/outpost.service
  /var/lib/systemd/deb-systemd-helper-enabled/outpost.service.dsh-also
  /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/outpost.service
  /var/lib/systemd/deb-systemd-helper-masked/outpost.service)

# --- Preconditions -------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "not root: installing the package needs root (CI runs as root)"
command -v dpkg >/dev/null && command -v apt-get >/dev/null || skip "dpkg/apt-get unavailable"
# One run at a time per machine: two would install and purge the same package under each other.
exec 9>/run/lock/outpost-packaging-test.lock
flock -w 1500 9 || die "another packaging test holds /run/lock/outpost-packaging-test.lock"
if [ "$(pkg_status)" != not-installed ] || [ -e /etc/outpost ] || [ -e /var/lib/outpost ]; then
  skip "outpost is installed here, or /etc/outpost or /var/lib/outpost exists: not touching them"
fi
for tool in lintian rpmlint rpmbuild rpm systemd-analyze dpkg-shlibdeps gzip \
  gpg gpgv gpgconf rpmsign rpmkeys apt-ftparchive createrepo_c; do
  command -v "$tool" >/dev/null || die "$tool is missing: ./scripts/deps test installs it (scripts/packages/packaging.txt)"
done

signing=$work/signing
cleanup() {
  local rc=$?
  local home
  # The gpg-agents of the test's own keyrings (started by gpg for them), and nothing else.
  for home in "$signing"/gnupg-*; do
    if [ -d "$home" ]; then gpgconf --homedir "$home" --kill gpg-agent >/dev/null 2>&1 || true; fi
  done
  if [ "$(pkg_status)" != not-installed ]; then
    echo "cleanup: purging outpost"
    apt_get purge outpost >/dev/null 2>&1 || dpkg --purge --force-all outpost >/dev/null 2>&1 || true
  fi
  # Nothing of ours existed when the test began (checked above).
  rm -rf /etc/outpost /var/lib/outpost /run/outpost
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

umask 022
export LC_ALL=C.UTF-8

# --- Build both versions' packages from one Release tree ---------------------------------------
build=$work/build
rm -rf "$work/old" "$work/new"
mkdir -p "$build" "$work/old" "$work/new"
configure_opts=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then configure_opts=(-G Ninja); fi
if command -v ccache >/dev/null; then
  configure_opts+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

configure_and_pack() {  # VERSION_OVERRIDE OUTDIR GENERATORS [STORE_SCHEMA]
  "$cmake" -S "$src" -B "$build" "${configure_opts[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DOUTPOST_BUILD_TESTS=OFF -DOUTPOST_BUILD_BENCH=OFF -DOUTPOST_PACKAGE_VERSION="$1" \
    -DOUTPOST_STORE_SCHEMA="${4:-}" \
    >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log"; return 1; }
  "$cmake" --build "$build" -j 2 >"$work/build.log" 2>&1 || { tail -50 "$work/build.log"; return 1; }
  (cd "$build" && "$cpack" -G "$3" -B "$2") >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; return 1; }
}
echo "building packages in $build (Release; a few minutes on two cores)"
# The older package first, so that the tree is left configured as the project's own version. It is
# built at store schema $old_schema, as a release before migration 0003 (an index) was, so that
# upgrade_e2e_test upgrades across a real migration (OUTPOST_STORE_SCHEMA in metadb/CMakeLists.txt).
configure_and_pack "$old_version" "$work/old" DEB "$old_schema" ||
  die "could not build the $old_version package"
configure_and_pack "" "$work/new" "DEB;RPM" || die "could not build the packages"
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
deb=$work/new/outpost_${version}-${release}_$(dpkg --print-architecture).deb
old_deb=$work/old/outpost_${old_version}-${release}_$(dpkg --print-architecture).deb
rpm_file=$(ls "$work"/new/outpost-"$version"-"$release".*.rpm 2>/dev/null | head -1)
[ -f "$deb" ] || die "no $deb"
[ -f "$old_deb" ] || die "no $old_deb"
[ -n "$rpm_file" ] || die "no outpost-$version-$release.*.rpm in $work/new"
ok "built $(basename "$deb"), $(basename "$rpm_file") and $(basename "$old_deb")"

# --- Signed release: a key made here signs the .rpm and the apt and yum repositories -----------------
# As docs/packaging.md ("The signing key") says to keep one: a certify-only primary key whose secret
# is then removed (it would be offline), and a signing subkey, the only secret left in the keyring.
echo "--- signing (scripts/package --sign) with a release key made for the test"
rm -rf "$signing"
mkdir -p "$signing"
gnupg=$signing/gnupg-release
mkdir -m 0700 "$gnupg" "$signing/gnupg-other" "$signing/gnupg-public"
gpg_in() { local home=$1; shift; GNUPGHOME=$home gpg --batch --quiet --pinentry-mode loopback --passphrase '' "$@"; }
key_fpr() { gpg_in "$1" --with-colons --list-keys | awk -F: '/^fpr:/ { print $10; exit }'; }
gpg_in "$gnupg" --quick-gen-key "Outpost release test key <release-test@outpost.invalid>" rsa3072 cert 1d \
  2>/dev/null || die "gpg could not make the test's release key"
fpr=$(key_fpr "$gnupg")
gpg_in "$gnupg" --quick-add-key "$fpr" rsa3072 sign 1d 2>/dev/null || die "gpg could not add a signing subkey"
sub_fpr=$(gpg_in "$gnupg" --with-colons --list-keys "$fpr" | awk -F: '/^sub:/ { s = 1 } s && /^fpr:/ { print $10; exit }')
gpg_in "$gnupg" --export-secret-subkeys "$fpr" >"$signing/subkey.gpg" &&
  gpg_in "$gnupg" --yes --delete-secret-keys "$fpr" 2>/dev/null &&
  gpg_in "$gnupg" --import "$signing/subkey.gpg" 2>/dev/null || die "could not take the primary key offline"
check "release key: the primary key's secret is offline (sec#), the signing subkey's is here" \
  bash -c 'GNUPGHOME=$1 gpg --batch --with-colons -K | awk -F: '\''$1 == "sec" && $15 == "#" { p = 1 }
           $1 == "ssb" && $12 ~ /s/ && $15 == "+" { s = 1 } END { exit !(p && s) }'\''' _ "$gnupg"
gpg_in "$signing/gnupg-other" --quick-gen-key "Someone else <other@outpost.invalid>" ed25519 sign 1d 2>/dev/null ||
  die "gpg could not make a second key"
other_fpr=$(key_fpr "$signing/gnupg-other")
gpg_in "$gnupg" --export "$fpr" | gpg_in "$signing/gnupg-public" --import 2>/dev/null

repo=$signing/repo
package_sign() {  # GNUPGHOME OUTPUT_FILE scripts/package ARGS...
  local home=$1 out=$2
  shift 2
  GNUPGHOME=$home "$src/scripts/package" "$@" >"$out" 2>&1
}
unsigned_rpm() { [ "$(rpm -qp --qf '%{RSAHEADER}%{DSAHEADER}' "$rpm_file" 2>/dev/null)" = "(none)(none)" ]; }
check "the .rpm as built is unsigned" unsigned_rpm
# A refusal names the problem, exits before anything is signed or written.
refused() {  # EXIT_STATUS WANTED_STATUS MESSAGE LOG
  local rc=$1
  [ "$rc" -eq "$2" ] || { echo "      exit $rc, want $2"; cat "$4"; return 1; }
  grep -qF -- "$3" "$4" || { echo "      no \"$3\" in:"; cat "$4"; return 1; }
  unsigned_rpm || { echo "      the .rpm was signed all the same"; return 1; }
  [ ! -e "$repo" ] || { echo "      $repo was written"; return 1; }
}
package_sign "$gnupg" "$signing/unknown.log" --sign "$other_fpr" --from "$work/new" --repo "$repo"
check "--sign with a key not in the keyring: refused, names the keyring" \
  refused $? 1 "no key '$other_fpr' in the keyring of $gnupg" "$signing/unknown.log"
package_sign "$signing/gnupg-public" "$signing/public.log" --sign "$fpr" --from "$work/new" --repo "$repo"
check "--sign with a key whose secret part is not here: refused" \
  refused $? 1 "key $fpr has no secret part" "$signing/public.log"
GPG=/nonexistent/gpg package_sign "$gnupg" "$signing/nogpg.log" --sign "$fpr" --from "$work/new" --repo "$repo"
check "--sign without gpg: refused (exit 69), says GnuPG is needed" \
  refused $? 69 "--sign needs GnuPG" "$signing/nogpg.log"

package_sign "$gnupg" "$signing/sign.log" --sign "$fpr" --from "$work/new" --repo "$repo"
rc=$?
cat "$signing/sign.log"
[ $rc -eq 0 ] || die "scripts/package --sign $fpr failed"
ok "scripts/package --sign: .rpm signed, apt and yum repositories written"
keyring=$repo/outpost-archive-keyring.gpg
check "the exported keys (binary and armoured) are the release key's public part, no secret" bash -c '
  for f in "$1" "$2"; do
    k=$(GNUPGHOME=$3 gpg --batch --with-colons --show-keys "$f" 2>/dev/null) || exit 1
    [ "$(awk -F: '\''/^fpr:/ { print $10; exit }'\'' <<<"$k")" = "$4" ] || exit 1
    ! grep -qE "^(sec|ssb):" <<<"$k" || exit 1
  done' _ "$keyring" "$repo/outpost-archive-keyring.asc" "$signing/gnupg-other" "$fpr"

# rpm: the fleet's check, with the exported key in a throwaway rpm database (not the machine's).
rpmdb=$signing/rpmdb
mkdir -p "$rpmdb" "$signing/home"
rpmkeys --dbpath "$rpmdb" --import "$repo/outpost-archive-keyring.asc" || die "rpmkeys could not import the exported key"
short_id=$(tr 'A-F' 'a-f' <<<"${sub_fpr: -8}")
check "rpm -K: the signed .rpm passes (signature by the signing subkey $short_id: OK)" bash -c '
  out=$(rpmkeys --dbpath "$1" --checksig -v "$2" 2>&1); rc=$?; echo "$out" | sed "s/^/      /"
  [ $rc -eq 0 ] && grep -q "Signature, key ID $3: OK" <<<"$out"' _ "$rpmdb" "$rpm_file" "$short_id"
# A byte of the signed header changed: the package's summary, as a mirror could alter it.
cp "$rpm_file" "$signing/changed.rpm"
summary=$(rpm -qp --qf '%{SUMMARY}' "$rpm_file" 2>/dev/null)
offset=$(grep -boaF -- "$summary" "$signing/changed.rpm" | head -1 | cut -d: -f1)
if [ -n "$offset" ]; then
  byte=X
  [ "$(dd if="$rpm_file" bs=1 skip="$offset" count=1 status=none)" != X ] || byte=Y
  printf '%s' "$byte" | dd of="$signing/changed.rpm" bs=1 seek="$offset" conv=notrunc status=none
fi
check "rpm -K: a .rpm with one byte changed fails (signature BAD)" bash -c '
  [ -n "$4" ] || { echo "      the summary is not in the file"; exit 1; }
  out=$(rpmkeys --dbpath "$1" --checksig -v "$2" 2>&1); rc=$?; echo "$out" | sed "s/^/      /"
  [ $rc -ne 0 ] && grep -q "Signature, key ID $3: BAD" <<<"$out"' _ "$rpmdb" "$signing/changed.rpm" "$short_id" "$offset"

# yum: repomd.xml.asc is what dnf checks with repo_gpgcheck=1; gpgv with the exported key does the same.
yum_dir=$repo/yum/$(rpm -qp --qf '%{ARCH}' "$rpm_file" 2>/dev/null)
repomd=$yum_dir/repodata/repomd.xml
check "yum: the repository serves the signed .rpm (primary metadata has its SHA-256)" bash -c '
  cmp -s "$1" "$2/$(basename "$1")" || exit 1
  primary=$(sed -n "s/.*href=\"\(repodata\/[^\"]*primary.xml.gz\)\".*/\1/p" "$2/repodata/repomd.xml")
  [ -n "$primary" ] && zcat "$2/$primary" | grep -q "$(sha256sum <"$1" | cut -d" " -f1)"' _ "$rpm_file" "$yum_dir"
check "yum: repomd.xml.asc verifies with the exported key" bash -c '
  gpgv --keyring "$1" "$2.asc" "$2" 2>&1 | grep -q "Good signature"' _ "$keyring" "$repomd"
sed 's/<revision>/<revision>1/' "$repomd" >"$signing/repomd-changed.xml"
check "yum: a changed repomd.xml does not verify (BAD signature)" bash -c '
  out=$(gpgv --keyring "$1" "$2.asc" "$3" 2>&1) && exit 1
  ! cmp -s "$2" "$3" && grep -q "BAD signature" <<<"$out"' _ "$keyring" "$repomd" "$signing/repomd-changed.xml"

# --- The packages themselves ---------------------------------------------------------------------
echo "--- lintian $(basename "$deb")"
lintian --fail-on error,warning --info --display-info --pedantic "$deb" 2>&1 | grep -v 'running with root privileges'
check "lintian: no error and no warning (kept ones are overridden, docs/packaging.md)" \
  test "${PIPESTATUS[0]}" -eq 0
echo "--- rpmlint $(basename "$rpm_file") (signed)"
# The .rpm is signed by now, so rpmlint's no-signature is not filtered; rpmlint checks the signature
# with rpm -K, which reads the rpm database named in $HOME/.rpmmacros: the throwaway one that holds
# the exported key, as a fleet's holds it after rpm --import.
echo "%_dbpath $rpmdb" >"$signing/home/.rpmmacros"
HOME=$signing/home rpmlint -c "$src/packaging/rpm/rpmlint.toml" "$rpm_file"
check "rpmlint: no error, the signature included (warnings kept are explained in docs/packaging.md)" test $? -eq 0

control=$(dpkg-deb -f "$deb")
check "deb: package outpost, version $version-$release" \
  test "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" = "outpost $version-$release"
check "deb: Depends computed by dpkg-shlibdeps (libc6, libpaho-mqtt1.3, libssl3)" \
  bash -c 'd=$(dpkg-deb -f "$1" Depends); for l in libc6 libpaho-mqtt1.3 libssl3; do
             [[ $d == *$l* ]] || { echo "      Depends: $d"; exit 1; }; done' _ "$deb"
# The C++ runtime and every C++ library are linked in (cmake/OutpostFlags.cmake): Paho's C++ wrapper
# is not used (mqtt-client/ is on Paho C), and libstdc++ is static.
check "deb: no dependency on libstdc++ or Paho's C++ library" \
  bash -c 'd=$(dpkg-deb -f "$1" Depends); for l in libstdc++ libpaho-mqttpp; do
             [[ $d != *$l* ]] || { echo "      Depends: $d"; exit 1; }; done' _ "$deb"
# OUTPOST_STATIC_DEPS (release default): nghttp2, protobuf, SQLite and yaml-cpp are linked in;
# gRPC is not used at all.
check "deb: no dependency on the libraries linked statically (nghttp2, protobuf, SQLite, yaml-cpp) or gRPC" \
  bash -c 'd=$(dpkg-deb -f "$1" Depends); for l in libgrpc libnghttp2 libprotobuf libsqlite3 libyaml-cpp; do
             [[ $d != *$l* ]] || { echo "      Depends: $d"; exit 1; }; done' _ "$deb"
# The KubeEdge WebSocket transport is header-only Boost.Beast: no cpprestsdk or Boost library.
check "deb: no dependency on cpprestsdk or a Boost library" \
  bash -c 'd=$(dpkg-deb -f "$1" Depends); for l in libcpprest libboost; do
             [[ $d != *$l* ]] || { echo "      Depends: $d"; exit 1; }; done' _ "$deb"
check "deb: /etc/outpost/outpost.yaml is a conffile" \
  bash -c 'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles | grep -qx /etc/outpost/outpost.yaml' _ "$deb"
check "deb: changelog's latest entry is this version" \
  bash -c 'dpkg-deb --fsys-tarfile "$1" | tar -xO ./usr/share/doc/outpost/changelog.Debian.gz |
           zcat | head -1 | grep -qF "outpost ($2)"' _ "$deb" "$version-$release"
unset control

rpm_q() { rpm -qp "$@" "$rpm_file" 2>/dev/null; }
check "rpm: package outpost, version $version-$release" \
  test "$(rpm_q --qf '%{NAME} %{VERSION}-%{RELEASE}')" = "outpost $version-$release"
check "rpm: /etc/outpost/outpost.yaml is %config(noreplace)" \
  bash -c 'rpm -qp --qf "[%{FILENAMES} %{FILEFLAGS:fflags}\n]" "$1" | grep -qx "/etc/outpost/outpost.yaml cn"' _ "$rpm_file"
check "rpm: requirements computed from the binaries (libc, libpaho-mqtt3as, libssl)" \
  bash -c 'r=$(rpm -qpR "$1"); for l in libc.so.6 libpaho-mqtt3as.so libssl.so.3; do
             [[ $r == *$l* ]] || exit 1; done' _ "$rpm_file"
check "rpm: no requirement on libstdc++ or Paho's C++ library" \
  bash -c 'r=$(rpm -qpR "$1"); for l in libstdc++ libpaho-mqttpp; do
             [[ $r != *$l* ]] || { echo "      Requires: $r"; exit 1; }; done' _ "$rpm_file"
check "rpm: no requirement on cpprestsdk or a Boost library" \
  bash -c 'r=$(rpm -qpR "$1"); for l in libcpprest libboost; do
             [[ $r != *$l* ]] || { echo "      Requires: $r"; exit 1; }; done' _ "$rpm_file"
check "rpm: %post, %preun and %postun scriptlets" \
  bash -c 's=$(rpm -qp --scripts "$1"); for k in postinstall preuninstall postuninstall; do
             [[ $s == *"$k scriptlet"* ]] || exit 1; done' _ "$rpm_file"
check "rpm: changelog's latest entry is this version" \
  bash -c 'rpm -qp --changelog "$1" | head -1 | grep -qF -- "- $2"' _ "$rpm_file" "$version-$release"
rpm_files=$(rpm_q -l)
has_all() {
  local f rc=0
  for f in "$@"; do grep -qx "$f" <<<"$rpm_files" || { echo "      missing: $f"; rc=1; }; done
  return $rc
}
check "rpm: carries binaries, unit, helper, man pages, completion and configuration" \
  has_all /usr/bin/outpostd /usr/bin/outpostctl /usr/lib/systemd/system/outpost.service \
  /usr/libexec/outpost/check-configured /usr/share/man/man8/outpostd.8.gz \
  /usr/share/man/man1/outpostctl.1.gz /usr/share/bash-completion/completions/outpostctl \
  /usr/share/bash-completion/completions/outpostd /etc/outpost/outpost.yaml
check "rpm: owns no system directory (/usr/lib/systemd/system, /usr/share/man/man8, ...)" \
  bash -c '! grep -xE "/usr/lib/systemd(/system)?|/usr/share/man(/man[18])?|/usr/libexec|/usr/share/bash-completion(/completions)?|/usr/share/lintian.*" <<<"$1"' _ "$rpm_files"

# --- Fresh install ---------------------------------------------------------------------------------
echo "--- install $(basename "$deb")"
apt_get install "$deb" >"$work/install.log" 2>&1
rc=$?
cat "$work/install.log"
check "install succeeds" test $rc -eq 0
check "installed version is $version-$release" test "$(pkg_version)" = "$version-$release"
check "install says the agent is not started and how to configure it" \
  bash -c 'grep -q "NOT started" "$1" && grep -q "outpostd --check-config" "$1" &&
           grep -q "systemctl restart outpost" "$1"' _ "$work/install.log"

check "/usr/bin/outpostd 0755 root:root" mode_is /usr/bin/outpostd 755 root:root
check "/usr/bin/outpostctl 0755 root:root" mode_is /usr/bin/outpostctl 755 root:root
check "/usr/libexec/outpost/check-configured 0755 root:root" \
  mode_is /usr/libexec/outpost/check-configured 755 root:root
check "/etc/outpost 0755 root:root" mode_is /etc/outpost 755 root:root
check "/etc/outpost/outpost.yaml 0644 root:root" mode_is /etc/outpost/outpost.yaml 644 root:root
check "/usr/lib/systemd/system/outpost.service 0644 root:root" \
  mode_is /usr/lib/systemd/system/outpost.service 644 root:root
for f in /usr/share/man/man8/outpostd.8.gz /usr/share/man/man1/outpostctl.1.gz \
  /usr/share/bash-completion/completions/outpostctl /usr/share/bash-completion/completions/outpostd \
  /usr/share/doc/outpost/copyright /usr/share/doc/outpost/changelog.Debian.gz \
  /usr/share/doc/outpost/configuration.md; do
  check "$f 0644 root:root" mode_is "$f" 644 root:root
done
check "dpkg registers /etc/outpost/outpost.yaml as a conffile" \
  bash -c 'dpkg-query -W -f="\${Conffiles}\n" outpost | grep -q "^ /etc/outpost/outpost.yaml "'
check "outpostd --version is $version" bash -c '/usr/bin/outpostd --version | grep -qF "$1"' _ "$version"
check "outpostctl --version is $version" bash -c '/usr/bin/outpostctl --version | grep -qF "$1"' _ "$version"
check "man pages render (outpostd(8), outpostctl(1))" bash -c \
  'for m in /usr/share/man/man8/outpostd.8.gz /usr/share/man/man1/outpostctl.1.gz; do
     zcat "$m" | grep -q "^\.TH OUTPOST" || exit 1
     if command -v man >/dev/null; then man -l "$m" 2>&1 >/dev/null | grep . && exit 1; fi
   done; exit 0'

check "outpostd --check-config accepts the installed default configuration" \
  /usr/bin/outpostd --check-config --config /etc/outpost/outpost.yaml
check "the installed default is recognised as unconfigured (placeholder node.name)" \
  bash -c '! /usr/libexec/outpost/check-configured /etc/outpost/outpost.yaml 2>/dev/null'
check "an operator's node name (file or OUTPOST_NODE_NAME) counts as configured" bash -c \
  'sed "s/name: change-me/name: edge-berlin-1/" /etc/outpost/outpost.yaml >"$1/configured.yaml" &&
   /usr/libexec/outpost/check-configured "$1/configured.yaml" &&
   OUTPOST_NODE_NAME=edge-berlin-1 /usr/libexec/outpost/check-configured /etc/outpost/outpost.yaml' _ "$work"
check "install started no agent" test -z "$(agent_pids)"
check "postinst created neither /var/lib/outpost nor /run/outpost (the unit does)" \
  absent /var/lib/outpost /run/outpost
check "postinst added the system group outpost (api.socket_group)" \
  bash -c 'gid=$(getent group outpost | cut -d: -f3) && [ -n "$gid" ] && [ "$gid" -lt 1000 ]'
check "the installed default configuration with api.socket_group: outpost is valid" bash -c \
  'sed "s/# socket_group: outpost/socket_group: outpost/" /etc/outpost/outpost.yaml >"$1/group.yaml" &&
   grep -q "^  socket_group: outpost" "$1/group.yaml" &&
   /usr/bin/outpostd --check-config --config "$1/group.yaml"' _ "$work"
# deb-systemd-helper may link through /lib (merged /usr makes it the same file).
check "the unit is enabled (multi-user.target.wants/outpost.service)" \
  test /etc/systemd/system/multi-user.target.wants/outpost.service -ef /usr/lib/systemd/system/outpost.service

echo "--- systemd-analyze verify outpost.service"
systemd-analyze verify /usr/lib/systemd/system/outpost.service
check "systemd-analyze verify: the installed unit is valid" test $? -eq 0
unit=/usr/lib/systemd/system/outpost.service
for line in Type=notify WatchdogSec= Restart=always RestartPreventExitStatus=78 KillMode=process \
  StateDirectory=outpost RuntimeDirectory=outpost ConfigurationDirectory=outpost \
  ProtectSystem=strict ReadWritePaths=/sys/fs/cgroup NoNewPrivileges=yes \
  'After=containerd.service mosquitto.service' 'Wants=containerd.service mosquitto.service'; do
  grep -q "^$line" "$unit" || bad "unit lacks $line"
done
ok "unit: notify, watchdog, restart policy, process kill mode, directories, sandbox, ordering"
score=$(systemd-analyze security --offline=true --no-pager "$unit" 2>/dev/null |
  sed -n 's/.*Overall exposure level for outpost.service: \([0-9.]*\).*/\1/p')
echo "      systemd-analyze security exposure: ${score:-unknown}"
check "systemd-analyze security: exposure at most 3.0 (docs/packaging.md reports it)" \
  awk -v s="${score:-99}" 'BEGIN { exit !(s <= 3.0) }'

if [ -r /usr/share/bash-completion/bash_completion ]; then
  check "bash completion: outpostctl commands and --output values, outpostd --log-level" bash -c '
    source /usr/share/bash-completion/bash_completion
    source /usr/share/bash-completion/completions/outpostctl
    source /usr/share/bash-completion/completions/outpostd
    complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
                       COMPREPLY=(); "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                       echo "${COMPREPLY[*]}"; }
    fn=_outpostctl
    [ "$(complete_words outpostctl st)" = status ] || exit 1
    [ "$(complete_words outpostctl status -o "")" = "table json" ] || exit 1
    fn=_outpostd
    [[ "$(complete_words outpostd --log-level "")" == "trace debug info warn error critical off" ]]'
else
  bad "bash completion: /usr/share/bash-completion/bash_completion is missing (bash-completion package)"
fi

# --- Remove keeps configuration and state; purge removes everything ---------------------------------
mkdir -p -m 0700 /var/lib/outpost
echo "store written by the test before remove" >/var/lib/outpost/outpost.db
apt_get remove outpost >"$work/remove.log" 2>&1
check "remove succeeds" test $? -eq 0
check "after remove: binaries, unit and helper are gone" \
  absent /usr/bin/outpostd /usr/bin/outpostctl /usr/lib/systemd/system/outpost.service /usr/libexec/outpost
check "after remove: configuration and store are kept" bash -c \
  '[ -f /etc/outpost/outpost.yaml ] && grep -qx "store written by the test before remove" /var/lib/outpost/outpost.db'
check "after remove: dpkg keeps only the conffile (config-files)" test "$(pkg_status)" = config-files
apt_get purge outpost >"$work/purge.log" 2>&1
check "purge succeeds" test $? -eq 0
check "after purge: nothing is left (configuration, state, runtime, binaries, unit, enablement)" \
  absent "${leftovers[@]}"
check "after purge: dpkg no longer knows the package" test "$(pkg_status)" = not-installed
check "after purge: the system group outpost is gone" bash -c '! getent group outpost >/dev/null'

# --- apt and the signed repository: accepts it, refuses it tampered, re-signed or unsigned ------------
# The upgrade below installs from it. A throwaway apt configuration: only the repository's sources.list, lists and cache in the work
# directory; the machine's sources, lists and trusted keys are neither used nor changed.
echo "--- apt and the signed repository (file://, signed-by the exported keyring)"
suite=stable
apt_state() {  # NAME REPOSITORY_DIR: a state directory whose sources.list names only that repository
  local dir=$signing/apt-state-$1
  rm -rf "$dir"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  echo "deb [signed-by=$keyring] file://$2 $suite main" >"$dir/sources.list"
  echo "$dir"
}
apt_repo() {  # STATE_DIR apt-get ARGS...
  local dir=$1
  shift
  apt_get -o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts=- \
    -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o Acquire::Languages=none "$@"
}
# A copy of the repository's indexes that shares its pool, to tamper with.
apt_copy() {
  rm -rf "${signing:?}/$1"
  mkdir -p "$signing/$1"
  cp -a "$repo/apt/dists" "$signing/$1/"
  ln -s "$repo/apt/pool" "$signing/$1/pool"
  echo "$signing/$1"
}
# Each copy is checked to be the release key's (InRelease and Release.gpg) before it is tampered
# with, so a refusal below comes from the change, not from a repository that was never signed.
signed_by_release_key() {
  gpgv --keyring "$keyring" "$1/dists/$suite/InRelease" >/dev/null 2>&1 &&
    gpgv --keyring "$keyring" "$1/dists/$suite/Release.gpg" "$1/dists/$suite/Release" >/dev/null 2>&1 &&
    echo signed
}
chmod -R a+rX "$repo"  # apt reads file:// repositories as its sandbox user _apt

good=$(apt_state good "$repo/apt")
apt_repo "$good" update >"$signing/apt-update.log" 2>&1
rc=$?
check "apt-get update accepts the signed repository" bash -c \
  '[ "$1" -eq 0 ] && ! grep -qE "^E: |GPG error" "$2" || { cat "$2"; exit 1; }' _ "$rc" "$signing/apt-update.log"
check "apt: the candidate is outpost $version-$release from the repository (Origin Outpost)" bash -c '
  policy() { apt-cache -o Dir::Etc::sourcelist="$1/sources.list" -o Dir::Etc::sourceparts=- \
               -o Dir::State::Lists="$1/lists" -o Dir::Cache="$1/cache" policy "${@:2}"; }
  p=$(policy "$1" outpost; policy "$1")
  grep -q "Candidate: $2" <<<"$p" && grep -q "o=Outpost,a=stable,n=stable,l=Outpost,c=main" <<<"$p" ||
    { echo "$p"; exit 1; }' _ "$good" "$version-$release"

tampered=$(apt_copy apt-tampered)
control=$(signed_by_release_key "$tampered")
packages=$tampered/dists/$suite/main/binary-$(dpkg --print-architecture)/Packages
# Another SHA256 for the .deb, the same size: what a mirror serving a different package would write.
perl -pi -e 's/^(SHA256: )(.)/$1 . ($2 eq "0" ? "1" : "0")/e' "$packages"
gzip -9n <"$packages" >"$packages.gz"
state=$(apt_state tampered "$tampered")
apt_repo "$state" update >"$signing/apt-tampered.log" 2>&1
rc=$?
check "apt refuses the signed repository with a changed Packages file (Hash Sum mismatch)" bash -c '
  [ "$3" = signed ] && [ "$1" -ne 0 ] && grep -q "Hash Sum mismatch" "$2" || { cat "$2"; exit 1; }' \
  _ "$rc" "$signing/apt-tampered.log" "$control"

other=$(apt_copy apt-other-key)
control=$(signed_by_release_key "$other")
for f in InRelease Release.gpg; do rm -f "$other/dists/$suite/$f"; done
gpg_in "$signing/gnupg-other" --clearsign -o "$other/dists/$suite/InRelease" "$other/dists/$suite/Release"
gpg_in "$signing/gnupg-other" --armor --detach-sign -o "$other/dists/$suite/Release.gpg" "$other/dists/$suite/Release"
state=$(apt_state other "$other")
apt_repo "$state" update >"$signing/apt-other.log" 2>&1
rc=$?
check "apt refuses the signed repository re-signed by another key (NO_PUBKEY ${other_fpr: -16}, not signed)" bash -c '
  [ "$4" = signed ] && [ "$1" -ne 0 ] && grep -q "NO_PUBKEY $3" "$2" && grep -q "is not signed" "$2" ||
    { cat "$2"; exit 1; }' _ "$rc" "$signing/apt-other.log" "${other_fpr: -16}" "$control"

unsigned=$(apt_copy apt-unsigned)
control=$(signed_by_release_key "$unsigned")
rm -f "$unsigned/dists/$suite/InRelease" "$unsigned/dists/$suite/Release.gpg"
state=$(apt_state unsigned "$unsigned")
apt_repo "$state" update >"$signing/apt-unsigned.log" 2>&1
rc=$?
check "apt refuses the signed repository with its signatures removed (\"is not signed\")" bash -c '
  [ "$3" = signed ] && [ "$1" -ne 0 ] && grep -q "The repository .* Release. is not signed" "$2" ||
    { cat "$2"; exit 1; }' _ "$rc" "$signing/apt-unsigned.log" "$control"

# --- Upgrade from an older package keeps the store and the operator's configuration ------------------
echo "--- install $(basename "$old_deb"), then upgrade to $version-$release from the signed repository"
apt_get install "$old_deb" >"$work/install-old.log" 2>&1
check "install of $old_version succeeds" test $? -eq 0
check "installed version is $old_version-$release" test "$(pkg_version)" = "$old_version-$release"
mkdir -p -m 0700 /var/lib/outpost
head -c 65536 /dev/urandom >/var/lib/outpost/outpost.db
printf 'wal' >/var/lib/outpost/outpost.db-wal
store_sum=$(cat /var/lib/outpost/outpost.db /var/lib/outpost/outpost.db-wal | sha256sum)
sed -i 's/name: change-me/name: edge-upgrade-test/' /etc/outpost/outpost.yaml
config_sum=$(sha256sum </etc/outpost/outpost.yaml)

# From the signed repository, as a fleet upgrades (the file itself was installed above).
apt_repo "$good" install outpost >"$work/upgrade.log" 2>&1
rc=$?
cat "$work/upgrade.log"
check "upgrade $old_version -> $version by apt-get install outpost from the signed repository succeeds" test $rc -eq 0
check "installed version is $version-$release" test "$(pkg_version)" = "$version-$release"
check "upgrade keeps the store byte for byte (outpost.db and its WAL)" bash -c \
  '[ "$(cat /var/lib/outpost/outpost.db /var/lib/outpost/outpost.db-wal | sha256sum)" = "$1" ]' _ "$store_sum"
check "upgrade keeps /var/lib/outpost 0700 root:root" mode_is /var/lib/outpost 700 root:root
check "upgrade keeps the operator's configuration" test "$(sha256sum </etc/outpost/outpost.yaml)" = "$config_sum"
check "a configured node is not told to configure it" bash -c '! grep -q "NOT started" "$1"' _ "$work/upgrade.log"
check "outpostd --check-config accepts the kept configuration" \
  /usr/bin/outpostd --check-config --config /etc/outpost/outpost.yaml
check "upgrade started no agent here (no systemd as PID 1)" test -z "$(agent_pids)"

apt_get purge outpost >"$work/purge2.log" 2>&1
check "purge after upgrade succeeds" test $? -eq 0
check "after purge: nothing is left, store included" absent "${leftovers[@]}"

echo
if [ "$failures" -eq 0 ]; then
  echo "packaging test: all $checks checks passed"
  exit 0
fi
echo "packaging test: $failures of $checks checks FAILED"
exit 1
