// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <bit>
#include <utility>
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

    /// Sets every page set in `other`; returns how many were not set before. Guest bitmaps are sparse,
    /// so this only counts bits in non-zero words: without hardware popcount, counting
    /// every word of a 256 MiB sandbox's bitmap costs more than a whole restore.
    std::uint64_t merge(const page_bitmap& other) noexcept {
        std::uint64_t added = 0;
        for (std::size_t i = 0; i < words_.size() && i < other.words_.size(); ++i) {
            if (const std::uint64_t fresh = other.words_[i] & ~words_[i]) {
                added += static_cast<std::uint64_t>(std::popcount(fresh));
                words_[i] |= fresh;
            }
        }
        return added;
    }

    bool any() const noexcept {
        for (auto w : words_) {
            if (w) return true;
        }
        return false;
    }

    std::uint64_t word(std::size_t i) const noexcept { return words_[i]; }
    std::uint64_t& word(std::size_t i) noexcept { return words_[i]; }

    /// Appends the indices of the non-zero words, in order: the handle for working on a sparse
    /// bitmap without passing over all of it again.
    void nonzero_words(std::vector<std::uint32_t>& out) const {
        for (std::size_t i = 0; i < words_.size(); ++i) {
            if (words_[i]) out.push_back(static_cast<std::uint32_t>(i));
        }
    }

    /// Calls f(first_page, page_count) for every run of consecutive set pages, in order.
    template <class F>
    void for_each_run(F&& f) const {
        for_each_run_in_words(all_words(), std::forward<F>(f));
    }

    /// As for_each_run(), looking only at the words listed (ascending): the others must be zero.
    template <class Words, class F>
    void for_each_run_in_words(const Words& indices, F&& f) const {
        std::uint64_t run_start = 0, run_length = 0;
        for (const auto w : indices) {
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
    struct index_range {
        std::size_t n;
        struct iterator {
            std::size_t i;
            std::size_t operator*() const noexcept { return i; }
            iterator& operator++() noexcept {
                ++i;
                return *this;
            }
            bool operator!=(const iterator& o) const noexcept { return i != o.i; }
        };
        iterator begin() const noexcept { return {0}; }
        iterator end() const noexcept { return {n}; }
    };
    index_range all_words() const noexcept { return {words_.size()}; }

    std::uint64_t pages_ = 0;
    std::vector<std::uint64_t> words_;
};

}  // namespace hl::mem
