// SPDX-License-Identifier: Apache-2.0
// A guest that breaks the protocol on purpose, the way a compromised guest could: the host must end
// each of these calls with a clear error and never trust what it finds in guest memory. Attacks on
// what restore() must put back (CPU state, every `in` form on every library port, string `in` into
// memory it cannot write, the dirty log's hot pages) are driven by tests/integration/attack_test.cpp.
#include "hostile.hpp"

extern "C" void hl_guest_init() {
    hostile::register_port_attacks();  // and sets its canary
    hostile::register_protocol_attacks();
    hostile::register_string_in_attacks();
    hostile::register_trap_attacks();
    hostile::register_leftover_attacks();
}
