// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

#include "mem/address.hpp"

namespace hl::mem {

/// One bit per 4 KiB page of guest memory, in KVM's dirty-log format (64-bit words, bit i of word w is
/// page 64 * w + i), so a KVM dirty log can be fetched straight into it.
class page_bitmap {
public:
    page_bitmap() = default;
    explicit page_bitmap(std::uint64_t pages) : pages_(pages), words_((pages + 63) / 64) {}

    std::uint64_t pages() const noexcept { return pages_; }
    std::uint64_t* data() noexcept { return words_.data(); }
    const std::uint64_t* data() const noexcept { return words_.data(); }

    void set(std::uint64_t page) noexcept { words_[page / 64] |= std::uint64_t{1} << (page % 64); }
    bool test(std::uint64_t page) const noexcept { return (words_[page / 64] >> (page % 64)) & 1; }

    /// Marks every page that [address, address + length) touches.
    void set_bytes(std::uint64_t address, std::uint64_t length) noexcept {
        if (length == 0) return;
        for (std::uint64_t p = address / page_size; p <= (address + length - 1) / page_size; ++p) set(p);
    }

    void clear() noexcept {
        for (auto& w : words_) w = 0;
    }

    page_bitmap& operator|=(const page_bitmap& other) noexcept {
        for (std::size_t i = 0; i < words_.size() && i < other.words_.size(); ++i) words_[i] |= other.words_[i];
        return *this;
    }

    std::uint64_t count() const noexcept {
        std::uint64_t n = 0;
        for (auto w : words_) n += static_cast<std::uint64_t>(std::popcount(w));
        return n;
    }

    /// Calls f(first_page, page_count) for every run of consecutive set pages, in order.
    template <class F>
    void for_each_run(F&& f) const {
        std::uint64_t run_start = 0, run_length = 0;
        for (std::size_t w = 0; w < words_.size(); ++w) {
            std::uint64_t bits = words_[w];
            if (bits == 0) continue;
            while (bits) {
                const std::uint64_t page = w * 64 + static_cast<std::uint64_t>(std::countr_zero(bits));
                bits &= bits - 1;
                if (run_length && page == run_start + run_length) {
                    ++run_length;
                } else {
                    if (run_length) f(run_start, run_length);
                    run_start = page;
                    run_length = 1;
                }
            }
        }
        if (run_length) f(run_start, run_length);
    }

private:
    std::uint64_t pages_ = 0;
    std::vector<std::uint64_t> words_;
};

}  // namespace hl::mem
