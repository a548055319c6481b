// SPDX-License-Identifier: Apache-2.0
// The one way to include <linux/kvm.h> from C++. Debian 12's linux-libc-dev declares flexible arrays
// through an empty struct, which has size 1 in C++: sizeof(kvm_cpuid2), kvm_msrs and friends come out
// 4 bytes too large, and so do the _IOWR numbers built from them (the kernel answers EINVAL). Newer
// kernel headers declare `TYPE NAME[0]` for C++; do the same before the header expands the macro.
#pragma once

#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <linux/kvm.h>
#pragma GCC diagnostic pop

static_assert(sizeof(kvm_cpuid2) == 8, "flexible-array fix for <linux/kvm.h> did not apply");
static_assert(sizeof(kvm_msrs) == 8, "flexible-array fix for <linux/kvm.h> did not apply");
