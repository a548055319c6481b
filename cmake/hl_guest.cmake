# SPDX-License-Identifier: Apache-2.0
# hl_add_guest(<name> SOURCES <files...> [LIBC none|glibc|musl] [COMPILE_OPTIONS <opts...>] [LINK_OPTIONS <opts...>]
#              [UNCHECKED])
#
# A static-PIE guest linked against the guest SDK (hl::guest_sdk); host code finds it with
# $<TARGET_FILE:name> (it is named <name>.elf). The guest is compiled with the SDK's flags only: none
# of the calling project's CMAKE_<LANG>_FLAGS[_<CONFIG>], add_compile_options() or add_definitions()
# reach it, whatever the build type. Options added, in this order, after the SDK's flags, so that they
# win (e.g. -O3): the variable HL_GUEST_COMPILE_OPTIONS (for every guest of a directory), then
# COMPILE_OPTIONS / LINK_OPTIONS, then target_compile_options() on the guest afterwards. C sources
# need no C enabled by the caller. The build fails for a guest that uses thread-local storage
# (hl_check_guest.cmake); UNCHECKED skips that, for tests of the loader.
#
# LIBC none (the default) builds a freestanding guest on the SDK's own small libc. LIBC glibc builds
# an ordinary static-PIE Linux program on Debian's glibc with the whole C++ runtime (exceptions, RTTI,
# thread_local, iostream, ...); the host starts it like a process and serves its system calls.
# LIBC musl builds a C guest the same way on Debian's musl (musl-dev); there is no C++ library for
# musl, so C++ guests use glibc.
function(hl_add_guest name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "UNCHECKED" "LIBC" "SOURCES;COMPILE_OPTIONS;LINK_OPTIONS")
  if(NOT ARG_LIBC)
    set(ARG_LIBC none)
  endif()
  if(NOT ARG_LIBC MATCHES "^(none|glibc|musl)$")
    message(FATAL_ERROR "hl_add_guest(${name}): LIBC ${ARG_LIBC} is not one of: none (freestanding), glibc, musl")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "hl_add_guest(${name}): no SOURCES given")
  endif()
  if(ARG_LIBC STREQUAL "musl")
    set(cxx_sources ${ARG_SOURCES})
    list(FILTER cxx_sources EXCLUDE REGEX "\\.c$")
    if(cxx_sources)
      message(FATAL_ERROR "hl_add_guest(${name}): LIBC musl builds C guests only (Debian has no C++ library "
                          "for musl), and these sources are not C: ${cxx_sources}; use LIBC glibc for C++")
    endif()
    include("${CMAKE_CURRENT_FUNCTION_LIST_DIR}/hl_guest_flags.cmake")  # finds musl: HL_MUSL_FOUND
    if(NOT TARGET hl::guest_sdk_musl OR NOT HL_MUSL_FOUND)
      message(FATAL_ERROR "hl_add_guest(${name}): LIBC musl needs musl's headers, rcrt1.o and libc.a "
                          "(Debian: apt-get install musl-dev), both here and when hyperlight-cpp was built")
    endif()
  endif()
  if(NOT TARGET hl::guest_sdk)
    message(FATAL_ERROR "hl_add_guest(${name}): the guest SDK target hl::guest_sdk is missing; "
                        "call find_package(hyperlight_cpp) or add_subdirectory() on hyperlight-cpp first")
  endif()
  set(HL_GUEST_SOURCES "")
  foreach(source IN LISTS ARG_SOURCES)
    cmake_path(ABSOLUTE_PATH source BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND HL_GUEST_SOURCES "${source}")
  endforeach()
  set(HL_GUEST_NAME ${name})
  set(HL_GUEST_UNCHECKED ${ARG_UNCHECKED})
  set(HL_GUEST_LIBC ${ARG_LIBC})
  set(HL_GUEST_EXTRA_COMPILE_OPTIONS ${HL_GUEST_COMPILE_OPTIONS} ${ARG_COMPILE_OPTIONS})
  set(HL_GUEST_EXTRA_LINK_OPTIONS ${ARG_LINK_OPTIONS})
  set(HL_GUEST_CMAKE_DIR "${CMAKE_CURRENT_FUNCTION_LIST_DIR}")
  if(NOT DEFINED CMAKE_RUNTIME_OUTPUT_DIRECTORY)
    set(HL_GUEST_OUTPUT_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}")
  else()
    set(HL_GUEST_OUTPUT_DIRECTORY "${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  endif()
  # A directory of its own is the only place where the caller's directory-wide flags can be dropped.
  add_subdirectory("${CMAKE_CURRENT_FUNCTION_LIST_DIR}/guest" "${CMAKE_CURRENT_BINARY_DIR}/hl_guest_${name}")
endfunction()
