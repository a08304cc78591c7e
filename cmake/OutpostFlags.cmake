# Compiler flags shared by every target of the project, collected on one interface target.
add_library(outpost_flags INTERFACE)
add_library(outpost::flags ALIAS outpost_flags)

target_compile_options(outpost_flags INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                               -Wold-style-cast -Wcast-align -Woverloaded-virtual)
if(OUTPOST_WERROR)
  target_compile_options(outpost_flags INTERFACE -Werror)
endif()

if(OUTPOST_SANITIZE)
  target_compile_options(outpost_flags INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                                 -fno-sanitize-recover=undefined)
  target_link_options(outpost_flags INTERFACE -fsanitize=address,undefined)
endif()

# The fuzz build (OUTPOST_FUZZ, fuzz/CMakeLists.txt): every translation unit, generated code included,
# gets libFuzzer's coverage instrumentation and the sanitizers; undefined behaviour aborts so libFuzzer
# keeps the input. -O1: fast enough to fuzz, still good stack traces. The fuzz targets themselves link
# with -fsanitize=fuzzer (libFuzzer's main).
if(OUTPOST_FUZZ)
  string(APPEND CMAKE_CXX_FLAGS " -O1 -fsanitize=fuzzer-no-link,address,undefined"
                                " -fno-omit-frame-pointer -fno-sanitize-recover=undefined")
  string(APPEND CMAKE_EXE_LINKER_FLAGS " -fsanitize=address,undefined")
  string(APPEND CMAKE_SHARED_LINKER_FLAGS " -fsanitize=address,undefined")
endif()

# Hardened release flags: stack protector, fortified libc calls, full RELRO, PIE.
if(CMAKE_BUILD_TYPE MATCHES "Release|RelWithDebInfo|MinSizeRel")
  target_compile_options(outpost_flags INTERFACE -fstack-protector-strong -fstack-clash-protection
                                                 -D_FORTIFY_SOURCE=2 -fPIE)
  target_link_options(outpost_flags INTERFACE -Wl,-z,relro -Wl,-z,now -pie)
endif()

# A small, fast-starting outpostd (docs/benchmarks.md, "Footprint"). On by default in release
# builds (./scripts/bench, ./scripts/package), off in Debug so the test build stays as it was.
#   OUTPOST_STATIC_DEPS: link the libraries Debian ships as static archives (nghttp2,
#     protobuf-lite, SQLite, yaml-cpp) into the executables, which then load 20 shared objects
#     instead of 70: less relocation work at start, no per-library dirty pages, and only the code
#     they use. Done by a linker launcher that swaps each such libX.so for libX.a
#     (cmake/static-deps-link.sh); OpenSSL, Paho and the C/C++ runtimes stay shared.
#   OUTPOST_GC_SECTIONS: one section per function and object, unreferenced ones dropped at link.
if(CMAKE_BUILD_TYPE MATCHES "Release|RelWithDebInfo|MinSizeRel")
  set(_outpost_small_default ON)
else()
  set(_outpost_small_default OFF)
endif()
option(OUTPOST_STATIC_DEPS
       "Link Debian's static archives of nghttp2, protobuf-lite, SQLite, yaml-cpp into the executables"
       ${_outpost_small_default})
option(OUTPOST_GC_SECTIONS "Drop unreferenced functions and data at link (-Wl,--gc-sections)"
       ${_outpost_small_default})
if(OUTPOST_GC_SECTIONS)
  target_compile_options(outpost_flags INTERFACE -ffunction-sections -fdata-sections)
  target_link_options(outpost_flags INTERFACE -Wl,--gc-sections)
endif()

# outpost_small_executable(<target>): applies OUTPOST_STATIC_DEPS to an executable. Its C++
# libraries are all linked in (the shared ones it loads are C: libc, OpenSSL, Paho C, zlib), so the
# C++ runtime is too: of libstdc++.so's ~1.7 MB that every process maps, only the functions used
# (Debian builds libstdc++.a with per-function sections) end up in the executable.
function(outpost_small_executable target)
  if(OUTPOST_STATIC_DEPS)
    target_link_options(${target} PRIVATE -static-libstdc++ -static-libgcc)
    set_target_properties(${target} PROPERTIES
      CXX_LINKER_LAUNCHER ${PROJECT_SOURCE_DIR}/cmake/static-deps-link.sh)
    # Relink when the launcher's list changes.
    set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS
                 ${PROJECT_SOURCE_DIR}/cmake/static-deps-link.sh)
  endif()
endfunction()
