// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <flatbuffers/flatbuffers.h>

#include "hl/value.hpp"
#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "protocol/codec.hpp"

namespace hl::detail {

/// A sandbox's two wire buffers and the FlatBuffers builder that fills them: the one place that
/// reads or writes a buffer header (hl_buffer_header, then the message). The host writes calls into
/// the input buffer; the guest writes results, host calls, text and log records into the output
/// buffer, and the host answers a host call there. A size the guest wrote is checked against its
/// buffer before any byte behind it is read.
///
/// Refers to `memory` and `layout`, which must outlive it. Used by the thread driving the sandbox.
class call_buffers {
public:
    call_buffers(mem::guest_memory& memory, const mem::layout& layout) noexcept;

    /// Bytes a message may have in each buffer (the buffer less its header).
    std::uint64_t input_capacity() const noexcept;
    std::uint64_t output_capacity() const noexcept;

    /// Writes a FunctionCall into the input buffer. Throws, writing nothing:
    /// hl::error(errc::argument_too_large) when it does not fit, naming the call and the buffer's
    /// size; errc::parameter_mismatch for more than max_parameters arguments.
    void write_call(std::string_view name, value_type return_type, std::span<const argument> args);

    /// The guest's message in the output buffer, as long as its header says. Throws
    /// detail::poisoning(errc::protocol_error), naming `what`, when the header claims more than the
    /// buffer holds. A view into guest memory: the guest may change it while it runs.
    std::span<const std::byte> message(const char* what) const;

    /// At most `limit` bytes of the guest's message, and never past the buffer, whatever its header
    /// claims: for text that is reported even when its size is wrong (an abort message).
    std::span<const std::byte> message_prefix(std::uint64_t limit) const;

    /// Answers a host call in the output buffer with `value`. A value too large for the buffer is
    /// answered with errc::result_too_large's guest error instead.
    void reply(const return_value& value);

    /// Answers a host call with an error; a text too long for the buffer is cut to fit (with
    /// "..."), so that the guest still learns what failed.
    void reply_error(protocol::guest_error_kind kind, std::string message);

private:
    void reply_message(std::span<const std::byte> message);

    mem::guest_memory& memory_;
    const mem::layout& layout_;
    flatbuffers::FlatBufferBuilder builder_{1024};
};

}  // namespace hl::detail
