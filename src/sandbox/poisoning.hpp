// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <utility>

#include "hl/error.hpp"

namespace hl::detail {

/// Thrown by the parts of a sandbox (its call buffers, its host services) when what the guest did
/// must poison the sandbox. The sandbox catches it where it calls them, records reason() and throws
/// hl::error(failure(), reason()); should one escape elsewhere, it is still that hl::error.
class poisoning : public error {
public:
    poisoning(errc code, std::string reason) : error(code, reason), failure_(code), reason_(std::move(reason)) {}

    errc failure() const noexcept { return failure_; }
    const std::string& reason() const noexcept { return reason_; }

private:
    errc failure_;
    std::string reason_;
};

}  // namespace hl::detail
