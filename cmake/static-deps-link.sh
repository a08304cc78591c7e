#!/bin/sh
# Linker launcher for OUTPOST_STATIC_DEPS (cmake/OutpostFlags.cmake): runs the link command it is
# given with the shared libraries below replaced by the static archive Debian ships next to them
# (/usr/lib/<multiarch>/libX.so -> libX.a, when that file exists). Listed: the libraries outpostd
# alone uses. Left shared: libc, libstdc++, OpenSSL and Paho, which ship no archive or
# are also loaded by another shared library (a second copy in the process would not be shared),
# and zlib, which Debian policy forbids embedding (lintian: embedded-library).
n=$#
while [ "$n" -gt 0 ]; do
  arg=$1
  shift
  n=$((n - 1))
  case "$arg" in
    /*/lib*.so | /*/lib*.so.[0-9]*)
      base=${arg%%.so*}
      name=${base##*/lib}
      case "$name" in
        grpc++ | grpc | gpr | upb | address_sorting | re2 | cares | absl_* | sqlite3 | yaml-cpp | \
          protobuf)
          [ -f "$base.a" ] && arg=$base.a
          ;;
        protobuf-lite)
          # The full library holds the lite one; both archives would define the same symbols.
          [ -f "${base%-lite}.a" ] && arg=${base%-lite}.a
          ;;
      esac
      ;;
  esac
  set -- "$@" "$arg"
done
exec "$@"
