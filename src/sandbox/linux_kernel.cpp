// SPDX-License-Identifier: Apache-2.0
#include "sandbox/linux_kernel.hpp"

#include <asm/unistd.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "util/strfmt.hpp"

namespace hl::detail {
namespace {

constexpr std::uint64_t page = 4096;
constexpr std::uint64_t state_magic = 0x6c6e786b65726e31ull;  // "lnxkern1"
constexpr std::size_t max_logged = 16;
constexpr std::uint64_t max_random = 32u << 20;
constexpr std::uint64_t max_iov = 1024;
// One write hands the print handler at most this much (a short write, as a pipe gives; the libc
// writes the rest): the handler may copy what it gets, and guest memory can be gigabytes.
constexpr std::uint64_t max_write = 64 * 1024;
constexpr std::uint64_t arch_set_fs = 0x1002, arch_get_fs = 0x1003;
constexpr std::uint64_t at_empty_path = 0x1000;

/// The state region: this header, then one bit per heap page (set: handed out by mmap).
struct state_header {
    std::uint64_t magic;
    std::uint64_t heap_pages;
    std::uint64_t brk;          // offset into the heap, page granular at its end
    std::uint64_t brk_pages;    // pages below brk, rounded up
    std::uint64_t logged_count;
    std::uint64_t logged[max_logged];
};

std::int64_t err(int e) { return -static_cast<std::int64_t>(e); }

std::uint64_t words_for(std::uint64_t pages) { return (pages + 63) / 64; }

/// The kernel's view of one request: the memory, its state, and checked guest access.
class kernel {
public:
    kernel(linux_memory_view& v, const linux_kernel::hooks& h) : v_(v), h_(h) {}

    bool load() {
        if (v_.state_size < sizeof(state_header)) return false;
        s_ = v_.memory.read<state_header>(v_.state);
        return s_.magic == state_magic && s_.heap_pages == v_.heap_size / page &&
               sizeof(state_header) + words_for(s_.heap_pages) * 8 <= v_.state_size && s_.brk <= v_.heap_size &&
               s_.brk_pages <= s_.heap_pages && s_.logged_count <= max_logged;
    }
    void store() { v_.memory.write(v_.state, s_); }

    bool mapped(std::uint64_t p) const { return (word(p / 64) >> (p % 64)) & 1; }
    void set_mapped(std::uint64_t first, std::uint64_t count, bool on) {
        for (std::uint64_t p = first; p < first + count; ++p) {
            std::uint64_t w = word(p / 64);
            w = on ? (w | (1ull << (p % 64))) : (w & ~(1ull << (p % 64)));
            v_.memory.write(bitmap() + (p / 64) * 8, w);
        }
    }
    std::uint64_t lowest_mapped() const {
        for (std::uint64_t p = s_.brk_pages; p < s_.heap_pages; ++p)
            if (mapped(p)) return p;
        return s_.heap_pages;
    }

    bool readable(std::uint64_t a, std::uint64_t n) const { return v_.user_accessible(a, n, false); }
    bool writable(std::uint64_t a, std::uint64_t n) const { return v_.user_accessible(a, n, true); }
    template <class T>
    bool put(std::uint64_t a, const T& value) {
        if (!writable(a, sizeof(T))) return false;
        v_.memory.write(mem::gpa{a}, value);
        return true;
    }
    std::string_view bytes(std::uint64_t a, std::uint64_t n) const {
        const auto s = v_.memory.span(mem::gpa{a}, n);
        return {reinterpret_cast<const char*>(s.data()), s.size()};
    }
    void zero(std::uint64_t a, std::uint64_t n) { std::memset(v_.memory.writable(mem::gpa{a}, n).data(), 0, n); }

    std::uint64_t heap() const { return v_.heap.value; }
    state_header& state() { return s_; }
    linux_memory_view& view() { return v_; }
    const linux_kernel::hooks& hooks() const { return h_; }

private:
    mem::gpa bitmap() const { return v_.state + sizeof(state_header); }
    std::uint64_t word(std::uint64_t i) const { return v_.memory.read<std::uint64_t>(bitmap() + i * 8); }

    linux_memory_view& v_;
    const linux_kernel::hooks& h_;
    state_header s_{};
};

// ---- memory ----

std::int64_t do_brk(kernel& k, std::uint64_t want) {
    auto& s = k.state();
    const std::uint64_t current = k.heap() + s.brk;
    if (want == 0 || want < k.heap()) return static_cast<std::int64_t>(current);
    const std::uint64_t offset = want - k.heap();
    const std::uint64_t pages = (offset + page - 1) / page;
    if (offset > k.view().heap_size || pages > k.lowest_mapped()) return static_cast<std::int64_t>(current);
    if (pages > s.brk_pages) k.zero(k.heap() + s.brk_pages * page, (pages - s.brk_pages) * page);
    s.brk = offset;
    s.brk_pages = pages;
    k.store();
    return static_cast<std::int64_t>(want);
}

/// First fit from the top of the heap down: the first page of `count` free pages above brk, or none.
std::optional<std::uint64_t> find_free(kernel& k, std::uint64_t count) {
    const auto& s = k.state();
    if (count == 0 || count > s.heap_pages - s.brk_pages) return std::nullopt;
    std::uint64_t run = 0;
    for (std::uint64_t p = s.heap_pages; p-- > s.brk_pages;) {
        run = k.mapped(p) ? 0 : run + 1;
        if (run == count) return p;
    }
    return std::nullopt;
}

/// The heap pages [first, first + count) of a page-aligned range, or none when it is not in the heap.
std::optional<std::pair<std::uint64_t, std::uint64_t>> heap_pages_of(kernel& k, std::uint64_t addr,
                                                                     std::uint64_t length) {
    if (addr % page != 0 || length == 0 || addr < k.heap()) return std::nullopt;
    const std::uint64_t count = (length + page - 1) / page;
    if (length > k.view().heap_size) return std::nullopt;
    const std::uint64_t first = (addr - k.heap()) / page;
    if (first > k.state().heap_pages || count > k.state().heap_pages - first) return std::nullopt;
    return std::pair{first, count};
}

std::int64_t do_mmap(kernel& k, const syscall_request& r) {
    const auto [addr, length, prot, flags, fd, offset] = r.args;
    if (length == 0 || length > k.view().heap_size) return length == 0 ? err(EINVAL) : err(ENOMEM);
    if (!(flags & MAP_ANONYMOUS)) return err(ENODEV);  // no files in a sandbox
    if ((flags & MAP_SHARED) && !(flags & MAP_PRIVATE)) return err(EINVAL);
    if ((prot & PROT_EXEC) != 0) return err(EACCES);  // nothing but the ELF's code is executable
    (void)fd;
    (void)offset;
    const std::uint64_t count = (length + page - 1) / page;
    std::uint64_t first;
    if (flags & MAP_FIXED) {
        const auto range = heap_pages_of(k, addr, length);
        if (!range || range->first < k.state().brk_pages) return err(ENOMEM);
        first = range->first;
    } else {
        const auto found = find_free(k, count);
        if (!found) return err(ENOMEM);
        first = *found;
    }
    k.set_mapped(first, count, true);
    k.zero(k.heap() + first * page, count * page);
    return static_cast<std::int64_t>(k.heap() + first * page);
}

std::int64_t do_munmap(kernel& k, std::uint64_t addr, std::uint64_t length) {
    const auto range = heap_pages_of(k, addr, length);
    if (!range) return err(EINVAL);
    const auto [first, count] = *range;
    if (first < k.state().brk_pages) return err(EINVAL);
    k.set_mapped(first, count, false);
    return 0;
}

std::int64_t do_mremap(kernel& k, const syscall_request& r) {
    const auto [old_addr, old_len, new_len, flags, new_addr, unused] = r.args;
    (void)new_addr;
    (void)unused;
    if (flags & ~static_cast<std::uint64_t>(MREMAP_MAYMOVE)) return err(EINVAL);
    const auto old_range = heap_pages_of(k, old_addr, old_len);
    if (!old_range || old_range->first < k.state().brk_pages || new_len == 0) return err(EINVAL);
    if (new_len > k.view().heap_size) return err(ENOMEM);
    const auto [first, old_count] = *old_range;
    for (std::uint64_t p = first; p < first + old_count; ++p)
        if (!k.mapped(p)) return err(EFAULT);
    const std::uint64_t new_count = (new_len + page - 1) / page;
    if (new_count <= old_count) {
        k.set_mapped(first + new_count, old_count - new_count, false);
        return static_cast<std::int64_t>(old_addr);
    }
    const std::uint64_t end = first + old_count;
    bool room = end + (new_count - old_count) <= k.state().heap_pages;
    for (std::uint64_t p = end; room && p < first + new_count; ++p) room = !k.mapped(p);
    if (room) {
        k.set_mapped(end, new_count - old_count, true);
        k.zero(k.heap() + end * page, (new_count - old_count) * page);
        return static_cast<std::int64_t>(old_addr);
    }
    if (!(flags & MREMAP_MAYMOVE)) return err(ENOMEM);
    const auto found = find_free(k, new_count);
    if (!found) return err(ENOMEM);
    k.set_mapped(*found, new_count, true);
    const std::uint64_t to = k.heap() + *found * page;
    // The new pages were free and the old ones mapped: the ranges do not overlap, and nothing is
    // copied through the host's own memory.
    const auto from = k.view().memory.span(mem::gpa{old_addr}, old_count * page);
    auto dest = k.view().memory.writable(mem::gpa{to}, new_count * page);
    std::memcpy(dest.data(), from.data(), from.size());
    std::memset(dest.data() + from.size(), 0, dest.size() - from.size());
    k.set_mapped(first, old_count, false);
    return static_cast<std::int64_t>(to);
}

std::int64_t do_madvise(kernel& k, std::uint64_t addr, std::uint64_t length, std::uint64_t advice) {
    if (addr % page != 0) return err(EINVAL);
    if (length == 0) return 0;
    if (!k.writable(addr, length) && !k.readable(addr, length)) return err(ENOMEM);
    if (advice == MADV_DONTNEED) {
        const auto range = heap_pages_of(k, addr, length);
        if (!range) return err(EINVAL);  // only heap pages can be given back
        k.zero(addr, range->second * page);
    }
    return 0;
}

// Pages keep the permissions the loader gave them: the host does not edit page tables behind KVM.
// What would need more than they have is refused; a reduction is accepted and not enforced.
std::int64_t do_mprotect(kernel& k, std::uint64_t addr, std::uint64_t length, std::uint64_t prot) {
    if (addr % page != 0) return err(EINVAL);
    if (prot & ~static_cast<std::uint64_t>(PROT_READ | PROT_WRITE | PROT_EXEC)) return err(EINVAL);
    if (length == 0) return 0;
    if (length > (std::uint64_t{1} << 47) || !(k.readable(addr, length) || k.writable(addr, length)))
        return err(ENOMEM);
    if ((prot & PROT_WRITE) && (prot & PROT_EXEC)) return err(EACCES);
    const std::uint64_t pages = (length + page - 1) / page;
    for (std::uint64_t i = 0; i < pages; ++i) {
        const bool code = k.view().is_code(addr + i * page);
        if ((prot & PROT_EXEC) && !code) return err(EACCES);
        if ((prot & PROT_WRITE) && code) return err(EACCES);
        if ((prot & PROT_WRITE) && !k.writable(addr + i * page, page)) return err(EACCES);
    }
    return 0;
}

// ---- files and output ----

std::int64_t do_write(kernel& k, std::uint64_t fd, std::uint64_t buf, std::uint64_t count) {
    if (fd != 1 && fd != 2) return err(EBADF);
    if (count == 0) return 0;
    count = std::min(count, max_write);
    if (!k.readable(buf, count)) return err(EFAULT);
    k.hooks().output(static_cast<int>(fd), k.bytes(buf, count));
    return static_cast<std::int64_t>(count);
}

std::int64_t do_writev(kernel& k, std::uint64_t fd, std::uint64_t iov, std::uint64_t count) {
    if (fd != 1 && fd != 2) return err(EBADF);
    if (count > max_iov) return err(EINVAL);
    if (!k.readable(iov, count * sizeof(iovec))) return err(EFAULT);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> parts;
    std::uint64_t total = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
        const auto v = k.view().memory.read<std::array<std::uint64_t, 2>>(mem::gpa{iov + i * sizeof(iovec)});
        if (v[1] > (std::uint64_t{1} << 40) || total + v[1] < total) return err(EINVAL);
        if (v[1] != 0 && !k.readable(v[0], v[1])) return err(EFAULT);
        parts.emplace_back(v[0], v[1]);
        total += v[1];
    }
    std::uint64_t written = 0;
    for (const auto& [base, len] : parts) {
        const std::uint64_t n = std::min(len, max_write - written);
        if (n != 0) k.hooks().output(static_cast<int>(fd), k.bytes(base, n));
        written += n;
        if (written == max_write) break;
    }
    return static_cast<std::int64_t>(written);
}

std::int64_t fill_stat(kernel& k, std::uint64_t fd, std::uint64_t out) {
    if (fd > 2) return err(EBADF);
    struct stat st {};
    st.st_mode = S_IFCHR | 0620;
    st.st_nlink = 1;
    st.st_blksize = 4096;
    st.st_rdev = 0x8800 + fd;
    return k.put(out, st) ? 0 : err(EFAULT);
}

std::int64_t do_newfstatat(kernel& k, const syscall_request& r) {
    const auto [dirfd, path, out, flags, unused1, unused2] = r.args;
    (void)unused1;
    (void)unused2;
    if (!k.readable(path, 1)) return err(EFAULT);
    const bool empty = k.view().memory.read<char>(mem::gpa{path}) == '\0';
    if (!empty) return err(ENOENT);  // no file system
    if (!(flags & at_empty_path)) return err(ENOENT);
    return fill_stat(k, dirfd, out);
}

// ---- time, identity, randomness ----

std::int64_t put_time(kernel& k, std::uint64_t out, std::int64_t ns, bool micro) {
    const std::int64_t tv[2] = {ns / 1'000'000'000, micro ? (ns % 1'000'000'000) / 1000 : ns % 1'000'000'000};
    return k.put(out, tv) ? 0 : err(EFAULT);
}

std::optional<std::int64_t> clock_now(kernel& k, std::uint64_t id) {
    switch (id) {
    case 0: case 5: case 8: case 11: return k.hooks().realtime_ns();  // REALTIME, _COARSE, _ALARM, TAI
    case 1: case 2: case 3: case 4: case 6: case 7: case 9: return k.hooks().monotonic_ns();
    default: return std::nullopt;
    }
}

std::int64_t do_getrandom(kernel& k, std::uint64_t buf, std::uint64_t len, std::uint64_t flags) {
    if (flags & ~std::uint64_t{0x7}) return err(EINVAL);  // GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE
    len = std::min(len, max_random);
    if (len == 0) return 0;
    if (!k.writable(buf, len)) return err(EFAULT);
    k.hooks().random(k.view().memory.writable(mem::gpa{buf}, len));
    return static_cast<std::int64_t>(len);
}

std::int64_t do_uname(kernel& k, std::uint64_t out) {
    char u[6][65] = {};
    std::strcpy(u[0], "Linux");
    std::strcpy(u[1], "hyperlight");
    std::strcpy(u[2], "6.1.0");
    std::strcpy(u[3], "hyperlight-cpp");
    std::strcpy(u[4], "x86_64");
    return k.put(out, u) ? 0 : err(EFAULT);
}

std::int64_t do_prlimit(kernel& k, std::uint64_t pid, std::uint64_t resource, std::uint64_t new_limit,
                        std::uint64_t old_limit) {
    if (pid != 0 && pid != 1) return err(ESRCH);
    if (resource >= RLIM_NLIMITS) return err(EINVAL);
    if (new_limit != 0) return err(EPERM);
    if (old_limit == 0) return 0;
    rlimit l{RLIM_INFINITY, RLIM_INFINITY};
    if (resource == RLIMIT_STACK) l.rlim_cur = l.rlim_max = 8u << 20;
    if (resource == RLIMIT_NOFILE) l.rlim_cur = l.rlim_max = 3;
    return k.put(old_limit, l) ? 0 : err(EFAULT);
}

std::int64_t do_futex(kernel& k, std::uint64_t uaddr, std::uint64_t op, std::uint64_t value) {
    if (uaddr % 4 != 0 || !k.readable(uaddr, 4)) return err(EFAULT);
    switch (op & FUTEX_CMD_MASK) {
    case FUTEX_WAKE: return 0;  // one thread: nobody waits
    case FUTEX_WAIT:
    case FUTEX_WAIT_BITSET:
        // Nobody could wake it: a wait that would block fails rather than hang the sandbox.
        return k.view().memory.read<std::uint32_t>(mem::gpa{uaddr}) != static_cast<std::uint32_t>(value)
                   ? err(EAGAIN)
                   : err(EDEADLK);
    default: return err(ENOSYS);
    }
}

std::int64_t zero_out(kernel& k, std::uint64_t addr, std::uint64_t size) {
    if (addr == 0) return 0;
    if (!k.writable(addr, size)) return err(EFAULT);
    k.zero(addr, size);
    return 0;
}

void log_unserved(kernel& k, std::uint64_t number) {
    auto& s = k.state();
    for (std::uint64_t i = 0; i < s.logged_count; ++i)
        if (s.logged[i] == number) return;
    if (s.logged_count == max_logged) return;
    s.logged[s.logged_count++] = number;
    k.store();
    k.hooks().log(util::strfmt("the guest made system call %llu, which the sandbox does not serve (-ENOSYS)%s",
                               static_cast<unsigned long long>(number),
                               s.logged_count == max_logged ? "; further unserved calls are not reported" : ""));
}

std::int64_t dispatch(kernel& k, const syscall_request& r, std::uint64_t fs_base, syscall_result& out) {
    const auto& a = r.args;
    switch (r.number) {
    case __NR_brk: return do_brk(k, a[0]);
    case __NR_mmap: return do_mmap(k, r);
    case __NR_munmap: return do_munmap(k, a[0], a[1]);
    case __NR_mremap: return do_mremap(k, r);
    case __NR_madvise: return do_madvise(k, a[0], a[1], a[2]);
    case __NR_mprotect: return do_mprotect(k, a[0], a[1], a[2]);
    case __NR_arch_prctl:
        if (a[0] == arch_set_fs) {
            // Canonical (bits 63..47 all equal) and in the user half, as Linux requires.
            if (a[1] >= (std::uint64_t{1} << 47)) return err(EPERM);
            out.new_fs_base = a[1];
            return 0;
        }
        if (a[0] == arch_get_fs) return k.put(a[1], fs_base) ? 0 : err(EFAULT);
        return err(EINVAL);
    case __NR_write: return do_write(k, a[0], a[1], a[2]);
    case __NR_writev: return do_writev(k, a[0], a[1], a[2]);
    case __NR_read: return a[0] == 0 ? 0 : err(EBADF);
    case __NR_fstat: return fill_stat(k, a[0], a[1]);
    case __NR_newfstatat: return do_newfstatat(k, r);
    case __NR_ioctl: return a[0] <= 2 ? err(ENOTTY) : err(EBADF);
    case __NR_lseek: return a[0] <= 2 ? err(ESPIPE) : err(EBADF);
    case __NR_close: return a[0] <= 2 ? 0 : err(EBADF);
    case __NR_open: case __NR_openat: case __NR_readlink: case __NR_readlinkat: case __NR_access:
    case __NR_faccessat: return err(ENOENT);
    case __NR_clock_gettime: {
        const auto now = clock_now(k, a[0]);
        return now ? put_time(k, a[1], *now, false) : err(EINVAL);
    }
    case __NR_clock_getres: {
        if (!clock_now(k, a[0])) return err(EINVAL);
        return a[1] == 0 ? 0 : put_time(k, a[1], 1, false);
    }
    case __NR_gettimeofday: return a[0] == 0 ? 0 : put_time(k, a[0], k.hooks().realtime_ns(), true);
    case __NR_time: {
        const std::int64_t t = k.hooks().realtime_ns() / 1'000'000'000;
        if (a[0] != 0 && !k.put(a[0], t)) return err(EFAULT);
        return t;
    }
    case __NR_getrandom: return do_getrandom(k, a[0], a[1], a[2]);
    case __NR_getpid: case __NR_gettid: case __NR_set_tid_address: return 1;
    case __NR_getppid: return 0;
    case __NR_getuid: case __NR_geteuid: case __NR_getgid: case __NR_getegid: return 0;
    case __NR_uname: return do_uname(k, a[0]);
    case __NR_set_robust_list: return a[1] == 24 ? 0 : err(EINVAL);
    case __NR_rseq: return err(ENOSYS);
    case __NR_futex: return do_futex(k, a[0], a[1], a[2]);
    case __NR_rt_sigaction:
        if (a[3] != 8) return err(EINVAL);
        return zero_out(k, a[2], 32);  // oldact: no handler, as if never set
    case __NR_rt_sigprocmask:
        if (a[3] != 8) return err(EINVAL);
        return zero_out(k, a[2], 8);
    case __NR_sigaltstack: return zero_out(k, a[1], 24);
    case __NR_sched_yield: return 0;
    case __NR_sched_getaffinity: {
        if (a[1] < 8) return err(EINVAL);
        return k.put(a[2], std::uint64_t{1}) ? 8 : err(EFAULT);
    }
    case __NR_prlimit64: return do_prlimit(k, a[0], a[1], a[2], a[3]);
    case __NR_getrlimit: return do_prlimit(k, 0, a[0], 0, a[1]);
    case __NR_clone: case __NR_clone3: case __NR_fork: case __NR_vfork: return err(EAGAIN);  // one thread
    case __NR_execve: case __NR_execveat: return err(ENOSYS);
    case __NR_exit: case __NR_exit_group:
        out.what = syscall_result::kind::exited;
        return static_cast<std::int64_t>(a[0] & 0xff);
    default: log_unserved(k, r.number); return err(ENOSYS);
    }
}

}  // namespace

std::uint64_t linux_kernel::state_bytes_for(std::uint64_t heap_size) {
    const std::uint64_t bytes = sizeof(state_header) + words_for(heap_size / page) * 8;
    return (bytes + page - 1) / page * page;
}

void linux_kernel::initialize(linux_memory_view& view) {
    state_header s{};
    s.magic = state_magic;
    s.heap_pages = view.heap_size / page;
    view.memory.write(view.state, s);
    const std::uint64_t words = words_for(s.heap_pages);
    std::memset(view.memory.writable(view.state + sizeof s, words * 8).data(), 0, words * 8);
}

syscall_result linux_kernel::serve(linux_memory_view& view, const hooks& h, const syscall_request& r,
                                   std::uint64_t fs_base) {
    kernel k(view, h);
    syscall_result out;
    if (!k.load()) {
        out.value = err(ENOMEM);  // cannot happen: the guest cannot write the state region
        return out;
    }
    out.value = dispatch(k, r, fs_base, out);
    return out;
}

}  // namespace hl::detail
