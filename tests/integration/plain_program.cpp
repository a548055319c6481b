// SPDX-License-Identifier: Apache-2.0
// An ordinary glibc program, linked dynamically and as a non-PIE static executable, for the test
// that the loader refuses both and says how to build a guest instead.
#include <cstdio>

int main() { return std::puts("not a guest") < 0; }
