# SPDX-License-Identifier: Apache-2.0
# Install rules, the exported CMake package (find_package(hyperlight_cpp)), pkg-config files and the
# Debian package (cpack -G DEB). Everything installed is relocatable: the CMake package and the .pc
# files find their prefix from where they are.
include(CMakePackageConfigHelpers)
include(${CMAKE_CURRENT_LIST_DIR}/hl_guest_flags.cmake)
set(HL_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/hyperlight_cpp)
set(HL_PC_GUEST_SUBDIR hyperlight_cpp)
set(HL_GUEST_LIB_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/${HL_PC_GUEST_SUBDIR})

# The whole public tree (host API, runtime, ABI), so that new headers need no new rule.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/hl ${PROJECT_SOURCE_DIR}/guests/sdk/include/hl
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} PATTERN CMakeLists.txt EXCLUDE)
install(TARGETS hyperlight hl_runtime EXPORT hyperlight_cppTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS hl_abi EXPORT hyperlight_cppTargets)
# The guest SDK is freestanding code: kept out of the host's library directory.
install(TARGETS hl_guest_sdk hl_guest_sdk_glibc EXPORT hyperlight_cppTargets ARCHIVE DESTINATION ${HL_GUEST_LIB_INSTALL_DIR})
if(TARGET hl_guest_sdk_musl)
  install(TARGETS hl_guest_sdk_musl EXPORT hyperlight_cppTargets ARCHIVE DESTINATION ${HL_GUEST_LIB_INSTALL_DIR})
endif()
install(EXPORT hyperlight_cppTargets NAMESPACE hl:: DESTINATION ${HL_CMAKE_INSTALL_DIR})
# The script engine guests (hl::script_pool) are programs the host loads, not libraries: libexec.
# The CMake package names them (hyperlight_cpp_JSGUEST, hyperlight_cpp_LUAGUEST).
set(HL_ENGINE_GUEST_INSTALL_DIR ${CMAKE_INSTALL_LIBEXECDIR}/${HL_PC_GUEST_SUBDIR})
foreach(engine jsguest luaguest)
  if(TARGET ${engine})
    install(PROGRAMS $<TARGET_FILE:${engine}> DESTINATION ${HL_ENGINE_GUEST_INSTALL_DIR})
  endif()
endforeach()

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/hyperlight_cppConfig.cmake.in
  ${PROJECT_BINARY_DIR}/hyperlight_cppConfig.cmake INSTALL_DESTINATION ${HL_CMAKE_INSTALL_DIR}
  PATH_VARS HL_ENGINE_GUEST_INSTALL_DIR)
# 0.x: a new minor version may change the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/hyperlight_cppConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/hyperlight_cppConfig.cmake ${PROJECT_BINARY_DIR}/hyperlight_cppConfigVersion.cmake
  ${CMAKE_CURRENT_LIST_DIR}/hl_guest.cmake ${CMAKE_CURRENT_LIST_DIR}/hl_guest_flags.cmake
  ${CMAKE_CURRENT_LIST_DIR}/hl_guest_scope.cmake ${CMAKE_CURRENT_LIST_DIR}/hl_check_guest.cmake
  DESTINATION ${HL_CMAKE_INSTALL_DIR})
install(FILES ${CMAKE_CURRENT_LIST_DIR}/guest/CMakeLists.txt DESTINATION ${HL_CMAKE_INSTALL_DIR}/guest)

# pkg-config: hyperlight, hyperlight-runtime (hosts) and hyperlight-guest (guests built without CMake).
set(HL_PKGCONFIG_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
cmake_path(RELATIVE_PATH CMAKE_INSTALL_PREFIX BASE_DIRECTORY ${CMAKE_INSTALL_PREFIX}/${HL_PKGCONFIG_INSTALL_DIR}
  OUTPUT_VARIABLE HL_PC_TO_PREFIX)
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(HL_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(HL_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
set(HL_PC_ASIO_CFLAGS "")
if(NOT ASIO_INCLUDE_DIR IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
  set(HL_PC_ASIO_CFLAGS " -I${ASIO_INCLUDE_DIR}")
endif()
list(JOIN HL_GUEST_COMMON_FLAGS " " HL_PC_GUEST_CFLAGS)
list(JOIN HL_GUEST_CXX_FLAGS " " HL_PC_GUEST_CXXFLAGS)
list(JOIN HL_GUEST_LINK_FLAGS " " HL_PC_GUEST_LDFLAGS)
list(JOIN HL_GUEST_CLANG_CXX_FLAGS " " HL_PC_GUEST_CLANG_CXXFLAGS)
foreach(pc hyperlight hyperlight-runtime hyperlight-guest)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/pkgconfig/${pc}.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc DESTINATION ${HL_PKGCONFIG_INSTALL_DIR})
endforeach()

# Debian package: build with -DCMAKE_INSTALL_PREFIX=/usr (Debian's multiarch libdir), then cpack -G DEB.
set(CPACK_PACKAGE_NAME hyperlight-cpp)
set(CPACK_PACKAGE_VENDOR hyperlight-cpp)
set(CPACK_PACKAGE_CONTACT "hyperlight-cpp maintainers <hyperlight-cpp@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "KVM micro-VM sandboxes for untrusted guests, for C++20 applications")
set(CPACK_PACKAGE_DESCRIPTION "hyperlight-cpp runs small untrusted guest binaries in KVM micro-VMs (one vCPU, \
no guest OS) and calls their functions by name. This package holds the host libraries (hyperlight, \
hyperlight_runtime), their headers, the guest SDK, the script engine guests (JavaScript on Duktape, Lua),  the CMake package (find_package(hyperlight_cpp), \
hl_add_guest) and pkg-config files.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# Static libraries: what a consumer links and compiles with is a dependency of this package.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libcapstone-dev, liburing-dev, libasio-dev (>= 1:1.22), pkg-config")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "cmake (>= 3.25), g++ (>= 4:12)")
# The musl flavour of the guest SDK links musl's libc.a from there.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "musl-dev")
include(CPack)
