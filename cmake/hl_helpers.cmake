# SPDX-License-Identifier: Apache-2.0
# One helper per kind of target.

# Host code: everything that runs in the application's process (library, tests, benchmarks).
function(hl_host_target target)
  if(HL_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${HL_SANITIZE} -fno-omit-frame-pointer)
    if(HL_SANITIZE MATCHES "thread")
      # Asio's headers use std::atomic_thread_fence, which g++ warns that TSan does not model. At
      # the tsan preset's -O1, g++ 12 also calls a std::variant alternative that a visit cannot
      # reach "maybe uninitialized" (owned_arguments); the other builds keep that warning.
      target_compile_options(${target} PRIVATE -Wno-tsan $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
    endif()
    if(HL_SANITIZE MATCHES "undefined" AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND CMAKE_CXX_COMPILER_VERSION
       VERSION_LESS 15)
      # clang 14's -fsanitize=function cannot compile coroutines ("Cannot represent a difference
      # across sections" for every coroutine of the runtime); the other UBSan checks stay.
      target_compile_options(${target} PRIVATE -fno-sanitize=function)
    endif()

    target_link_options(${target} PRIVATE -fsanitize=${HL_SANITIZE})
  endif()
endfunction()

# hl_add_guest(): the guest build, shared with projects that use the installed package.
include(${CMAKE_CURRENT_LIST_DIR}/hl_guest.cmake)
set(HL_CHECK_GUEST_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/hl_check_guest.cmake)

# hl_add_test(<name> SOURCES <files...> [LIBS <libs...>] [LABELS <labels...>])
function(hl_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  if(HL_SANITIZE MATCHES "undefined" AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # clang's vptr check probes each vtable through a pipe: at the descriptor limit it fails and
    # calls every object invalid. The tests that exhaust descriptors know (resource_limits.hpp).
    target_compile_definitions(${name} PRIVATE HL_TEST_VPTR_CHECK_NEEDS_DESCRIPTORS)
  endif()
  hl_host_target(${name})
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
