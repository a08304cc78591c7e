# outpost_module(<name> [NAMESPACE <ns>] [DEPS <targets>...] [PRIVATE_DEPS <targets>...])
#
# Every module folder has the same shape: include/outpost/<ns>/ holds its public interface and src/ its
# implementation. A module with sources becomes a static library; one whose implementation has not been
# written yet is an interface library over its headers. Either way the target is outpost::<name>.
#
# outpost::<name>_api is the public headers alone (abstract interfaces and value types, core only): another
# module may use it to talk to this one through an object that agent/ injects, but never links the library.
function(outpost_module name)
  cmake_parse_arguments(ARG "" "NAMESPACE" "DEPS;PRIVATE_DEPS" ${ARGN})
  file(GLOB_RECURSE _sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cc)
  set(_target outpost_${name})
  add_library(${_target}_api INTERFACE)
  target_include_directories(${_target}_api INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)
  if(NOT name STREQUAL "core")
    target_link_libraries(${_target}_api INTERFACE outpost::core)
  endif()
  add_library(outpost::${name}_api ALIAS ${_target}_api)
  if(_sources)
    add_library(${_target} STATIC ${_sources})
    target_include_directories(${_target} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                          PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
    target_link_libraries(${_target} PUBLIC outpost::flags ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  else()
    add_library(${_target} INTERFACE)
    target_include_directories(${_target} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)
    target_link_libraries(${_target} INTERFACE outpost::flags ${ARG_DEPS})
  endif()
  add_library(outpost::${name} ALIAS ${_target})
endfunction()

# outpost_test(<name> SOURCES <files>... DEPS <targets>...)
# One doctest binary per module, registered with ctest under its own name.
function(outpost_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  if(OUTPOST_UNITY_TESTS)
    set_target_properties(${name} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 4)
  endif()
  target_link_libraries(${name} PRIVATE outpost::flags outpost::testsupport ${ARG_DEPS})
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()
