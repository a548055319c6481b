# SPDX-License-Identifier: Apache-2.0
# Refuses at build time a guest that the loader would refuse at load time for using thread-local
# storage (a PT_TLS program header): thread_local compiles and links, then faults at run time.
# Usage: cmake -DGUEST=<elf> [-DREMOVE=ON] -P hl_check_guest.cmake  (REMOVE deletes a refused file,
# so that the next build tries again rather than keep it).

# The little-endian integer of `size` bytes at byte `offset` of the hex string `hex`.
function(hl_read_le hex offset size out)
  set(value "")
  math(EXPR last "${offset} + ${size} - 1")
  foreach(i RANGE ${offset} ${last})
    math(EXPR pos "${i} * 2")
    string(SUBSTRING "${hex}" ${pos} 2 byte)
    string(PREPEND value "${byte}")
  endforeach()
  math(EXPR value "0x${value}")
  set(${out} ${value} PARENT_SCOPE)
endfunction()

file(READ "${GUEST}" header LIMIT 64 HEX)
hl_read_le("${header}" 32 8 phoff)      # e_phoff
hl_read_le("${header}" 54 2 phentsize)  # e_phentsize
hl_read_le("${header}" 56 2 phnum)      # e_phnum
if(phnum EQUAL 0)
  return()
endif()
math(EXPR length "${phentsize} * ${phnum}")
file(READ "${GUEST}" phdrs OFFSET ${phoff} LIMIT ${length} HEX)
math(EXPR last "${phnum} - 1")
foreach(i RANGE ${last})
  math(EXPR at "${i} * ${phentsize}")
  hl_read_le("${phdrs}" ${at} 4 type)
  if(type EQUAL 7)  # PT_TLS
    if(REMOVE)
      file(REMOVE "${GUEST}")
    endif()
    message(FATAL_ERROR "${GUEST}: the guest uses thread-local storage (thread_local or __thread), which this guest "
                        "flavour does not support; make those variables static")
  endif()
endforeach()
