// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/async_host_function.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <asio/buffer.hpp>
#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace hl {
namespace {

class owned_fd {
public:
    explicit owned_fd(int fd) noexcept : fd_(fd) {}
    owned_fd(const owned_fd&) = delete;
    owned_fd& operator=(const owned_fd&) = delete;
    ~owned_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_;
};

// Opens the regular file `relative` for reading, resolved by the kernel beneath `root`: with
// RESOLVE_BENEATH no "..", absolute path or symbolic link (however deep) can lead outside the root,
// and with RESOLVE_NO_MAGICLINKS no /proc link can either. There is deliberately no fallback to an
// ordinary open: a path walk in user space races with whoever can change the tree.
int open_beneath(const std::filesystem::path& root, const std::string& relative) {
    const owned_fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0) {
        throw std::system_error(errno, std::system_category(),
                                "the file reader cannot open its root directory " + root.string());
    }
    open_how how{};
    // O_NONBLOCK: opening a FIFO must not block this thread (the event loop) waiting for a writer.
    how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    owned_fd file(static_cast<int>(::syscall(SYS_openat2, dir.get(), relative.c_str(), &how, sizeof how)));
    if (file.get() < 0) {
        switch (errno) {
        case EXDEV:
            throw std::invalid_argument("the path leads outside the root directory (through a symbolic link): " +
                                        relative);
        case ELOOP:
            throw std::invalid_argument("the path goes through a /proc magic link or too many symbolic links: " +
                                        relative);
        case ENOENT: throw std::invalid_argument("no such file under the root directory: " + relative);
        case ENOSYS:
            throw std::runtime_error(
                "the file reader needs openat2 (Linux 5.6 or later, not blocked by a seccomp filter) to keep paths "
                "inside its root, and this system refuses it; the file was not read: " +
                relative);
        default: throw std::system_error(errno, std::system_category(), "cannot open " + relative);
        }
    }
    struct stat st {};
    if (::fstat(file.get(), &st) != 0) throw std::system_error(errno, std::system_category(), "fstat " + relative);
    if (!S_ISREG(st.st_mode)) throw std::invalid_argument("not a regular file: " + relative);
    // Back to blocking: io_uring would answer EAGAIN instead of waiting for the disk.
    if (::fcntl(file.get(), F_SETFL, O_RDONLY) != 0) {
        throw std::system_error(errno, std::system_category(), "fcntl " + relative);
    }
    return file.release();
}

}  // namespace

auto file_reader_host_function(asio::any_io_executor ex, std::filesystem::path root, std::uint64_t max_bytes)
    -> std::function<asio::awaitable<std::vector<std::uint8_t>>(std::string)> {
    return [ex, root = std::move(root), max_bytes](std::string relative) -> asio::awaitable<std::vector<std::uint8_t>> {
        const std::filesystem::path path(relative);
        // openat2 refuses all of these too; checking first gives the clearest message.
        if (relative.empty() || path.is_absolute()) throw std::invalid_argument("the path must be relative: " + relative);
        if (relative.find('\0') != std::string::npos) throw std::invalid_argument("the path contains a NUL byte");
        for (const auto& part : path) {
            if (part == "..") throw std::invalid_argument("the path must not leave the root directory: " + relative);
        }
        const int fd = open_beneath(root, relative);
        asio::random_access_file file(ex);
        try {
            file.assign(fd);
        } catch (...) {
            ::close(fd);
            throw;
        }
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
