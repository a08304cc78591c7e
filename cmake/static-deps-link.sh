#!/bin/sh
# Linker launcher for OUTPOST_STATIC_DEPS (cmake/OutpostFlags.cmake): runs the link command it is
# given with the shared libraries below replaced by the static archive Debian ships next to them
# (/usr/lib/<multiarch>/libX.so -> libX.a, when that file exists). Listed: the libraries outpostd
# alone uses: nghttp2 and protobuf-lite (the CRI client), SQLite, yaml-cpp. Left shared: libc,
# OpenSSL and Paho C, which ship no archive or are also loaded by another shared library (a second
# copy in the process would not be shared), and zlib, which Debian policy forbids embedding
# (lintian: embedded-library).
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
        nghttp2 | protobuf-lite | sqlite3 | yaml-cpp)
          [ -f "$base.a" ] && arg=$base.a
          ;;
      esac
      ;;
  esac
  set -- "$@" "$arg"
done
exec "$@"
