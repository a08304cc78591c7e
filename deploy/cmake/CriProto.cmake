# The CRI v1 API's messages (runtime.v1) as their own static library, outpost_cri_proto, so the
# generated code builds once. Messages only (protoc --cpp_out, no gRPC plugin): the calls go over
# deploy's own unary gRPC caller on libnghttp2 (deploy/src/grpc_h2.cc). The .proto is not committed: it is taken at configure time from
# Debian's containerd source package (see cmake/fetch_cri_proto.sh and docs/deploy.md) and cached
# in the build dir, or given with -DOUTPOST_CRI_PROTO=/path/to/api.proto.
find_package(PkgConfig REQUIRED)
pkg_check_modules(PROTOBUF_LITE REQUIRED IMPORTED_TARGET protobuf-lite)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)
find_program(OUTPOST_PROTOC protoc REQUIRED)

set(OUTPOST_CRI_PROTO "" CACHE FILEPATH "CRI v1 api.proto to use instead of fetching it")
set(_cri_dir ${CMAKE_BINARY_DIR}/cri-proto)
set(_cri_proto ${_cri_dir}/api.proto)
if(OUTPOST_CRI_PROTO)
  configure_file(${OUTPOST_CRI_PROTO} ${_cri_proto} COPYONLY)
elseif(NOT EXISTS ${_cri_proto})
  message(STATUS "Fetching the CRI api.proto from Debian's containerd source package")
  execute_process(COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/fetch_cri_proto.sh ${_cri_dir}/fetch ${_cri_proto}
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "could not fetch the CRI api.proto (needs dpkg-dev and Debian's package "
                        "repositories; or pass -DOUTPOST_CRI_PROTO=/path/to/api.proto)")
  endif()
endif()

# Generated for protobuf's lite runtime: the CRI client needs messages, not descriptors or
# reflection, and full-runtime code registers every descriptor at start-up, which pulled protobuf's
# descriptor, reflection and text-format code into outpostd (docs/benchmarks.md, "Footprint").
file(READ ${_cri_proto} _cri_text)
string(REGEX REPLACE "\n(package [^;]*;)" "\n\\1\noption optimize_for = LITE_RUNTIME;" _cri_text
       "${_cri_text}")
if(NOT _cri_text MATCHES "optimize_for = LITE_RUNTIME")
  message(FATAL_ERROR "${_cri_proto}: no package statement to add the lite-runtime option after")
endif()
file(WRITE ${_cri_dir}/lite/api.proto.new "${_cri_text}")
configure_file(${_cri_dir}/lite/api.proto.new ${_cri_dir}/lite/api.proto COPYONLY)
set(_cri_proto ${_cri_dir}/lite/api.proto)
set(_cri_dir ${_cri_dir}/lite)

set(_gen ${_cri_dir}/gen)
set(_gen_files ${_gen}/api.pb.cc ${_gen}/api.pb.h)
add_custom_command(
  OUTPUT ${_gen_files}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_gen}
  COMMAND ${OUTPOST_PROTOC} -I ${_cri_dir} --cpp_out=${_gen} ${_cri_proto}
  DEPENDS ${_cri_proto}
  COMMENT "Generating the CRI v1 messages")

# Generated code: none of our warning flags, headers included as system headers.
add_library(outpost_cri_proto STATIC ${_gen}/api.pb.cc)
target_include_directories(outpost_cri_proto SYSTEM PUBLIC ${_gen})
target_link_libraries(outpost_cri_proto PUBLIC PkgConfig::PROTOBUF_LITE)
set_target_properties(outpost_cri_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
