# SPDX-License-Identifier: Apache-2.0
# One helper per kind of target.

# Host code: everything that runs in the application's process (library, tests, benchmarks).
function(hl_host_target target)
  if(HL_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${HL_SANITIZE} -fno-omit-frame-pointer)
    if(HL_SANITIZE MATCHES "thread")
      # Asio's headers use std::atomic_thread_fence, which g++ warns that TSan does not model.
      target_compile_options(${target} PRIVATE -Wno-tsan)
    endif()
    target_link_options(${target} PRIVATE -fsanitize=${HL_SANITIZE})
  endif()
endfunction()

# hl_add_guest(<name> SOURCES <files...> [UNCHECKED]): a static-PIE guest linked against the guest
# SDK. Its path is available to host code as $<TARGET_FILE:name>. The build fails for a guest that
# uses thread-local storage (hl_check_guest.cmake); UNCHECKED skips that, for tests of the loader.
function(hl_add_guest name)
  cmake_parse_arguments(ARG "UNCHECKED" "" "SOURCES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE hl_guest_sdk)
  set_target_properties(${name} PROPERTIES SUFFIX ".elf" RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/guests)
  if(NOT ARG_UNCHECKED)
    add_custom_command(TARGET ${name} POST_BUILD
      COMMAND ${CMAKE_COMMAND} -DGUEST=$<TARGET_FILE:${name}> -DREMOVE=ON -P ${HL_CHECK_GUEST_SCRIPT}
      VERBATIM)
  endif()
endfunction()
set(HL_CHECK_GUEST_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/hl_check_guest.cmake)

# hl_add_test(<name> SOURCES <files...> [LIBS <libs...>] [LABELS <labels...>])
function(hl_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  hl_host_target(${name})
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
