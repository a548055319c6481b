// SPDX-License-Identifier: Apache-2.0
// A FlatBufferBuilder kept from one call to the next, so that a warm call allocates nothing. A builder
// made and dropped per call cost the musl flavour two system calls every few calls: musl's malloc
// hands an emptied group of slots back to the kernel and asks for it again.
#pragma once

#include <cstddef>

#include "hl/abi/hl_generated.h"

namespace hl::guest::detail {

// Clears the builder for use; afterwards, a builder that grew past keep_bytes gives its memory back
// (one large result must not pin its buffer until the next restore).
class reused_builder {
public:
    static constexpr std::size_t keep_bytes = 64 * 1024;

    explicit reused_builder(flatbuffers::FlatBufferBuilder& builder) : builder_(builder) { builder_.Clear(); }
    ~reused_builder() {
        if (builder_.GetSize() > keep_bytes) builder_.Reset();
    }
    reused_builder(const reused_builder&) = delete;
    reused_builder& operator=(const reused_builder&) = delete;

    flatbuffers::FlatBufferBuilder& get() { return builder_; }

private:
    flatbuffers::FlatBufferBuilder& builder_;
};

}  // namespace hl::guest::detail
