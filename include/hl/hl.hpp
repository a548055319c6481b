// SPDX-License-Identifier: Apache-2.0
// The whole public host API.
#pragma once

#include "hl/call_limits.hpp"
#include "hl/config.hpp"
#include "hl/error.hpp"
#include "hl/host_function.hpp"
#include "hl/interrupt.hpp"
#include "hl/log.hpp"
#include "hl/metrics.hpp"
#include "hl/sandbox.hpp"
#include "hl/snapshot.hpp"
#include "hl/trace.hpp"
#include "hl/value.hpp"
