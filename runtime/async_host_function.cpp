// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/async_host_function.hpp"

#include <asio/buffer.hpp>
#include <stdexcept>

namespace hl {

auto file_reader_host_function(asio::any_io_executor ex, std::filesystem::path root, std::uint64_t max_bytes)
    -> std::function<asio::awaitable<std::vector<std::uint8_t>>(std::string)> {
    return [ex, root = std::move(root), max_bytes](std::string relative) -> asio::awaitable<std::vector<std::uint8_t>> {
        const std::filesystem::path path(relative);
        if (relative.empty() || path.is_absolute()) throw std::invalid_argument("the path must be relative: " + relative);
        for (const auto& part : path) {
            if (part == "..") throw std::invalid_argument("the path must not leave the root directory: " + relative);
        }
        asio::random_access_file file(ex, (root / path).string(), asio::random_access_file::read_only);
        const std::uint64_t size = file.size();
        if (size > max_bytes) throw std::length_error("the file is larger than the reader allows: " + relative);
        std::vector<std::uint8_t> bytes(size);
        std::uint64_t done = 0;
        while (done < size) {
            done += co_await file.async_read_some_at(done, asio::buffer(bytes.data() + done, size - done),
                                                     asio::use_awaitable);
        }
        co_return bytes;
    };
}

}  // namespace hl
