// What the libFuzzer targets share: an invariant check that aborts (so that libFuzzer saves
// the input as a crash), and a reader that turns the front of the input into parameters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

namespace fuzz {

[[noreturn]] inline void invariantBroken(const char *expression, const char *file, int line) {
    std::fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, expression);
    std::abort();
}

// An exactly sized heap copy: ASan reports a read or write one byte past the end of it, which
// it could miss on a larger buffer, and the parsers may write into it (they work in place).
inline std::unique_ptr<char[]> copyOf(const char *data, size_t size) {
    std::unique_ptr<char[]> copy(new char[size ? size : 1]);
    if (size) std::memcpy(copy.get(), data, size);
    return copy;
}

// Is every byte of view inside [begin, begin + size)? An empty view may point anywhere.
inline bool isInside(std::string_view view, const char *begin, size_t size) {
    if (view.empty()) return true;
    const auto first = reinterpret_cast<uintptr_t>(view.data());
    const auto low = reinterpret_cast<uintptr_t>(begin);
    return first >= low && first - low <= size && view.size() <= size - (first - low);
}

// Reads parameters off the front of the input; past the end every read gives 0 so that any
// input decodes to something.
class ByteReader {
public:
    ByteReader(const uint8_t *data, size_t size) : data_(data), size_(size) {}

    uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
    uint16_t u16() {
        uint16_t low = byte();
        return uint16_t(low | (byte() << 8));
    }
    // Up to length bytes (fewer when the input runs out).
    std::string_view take(size_t length) {
        size_t n = length < remaining() ? length : remaining();
        std::string_view out(reinterpret_cast<const char *>(data_ + pos_), n);
        pos_ += n;
        return out;
    }
    std::string_view rest() { return take(remaining()); }
    size_t remaining() const { return size_ - pos_; }

private:
    const uint8_t *data_;
    size_t size_;
    size_t pos_ = 0;
};

} // namespace fuzz

#define FUZZ_CHECK(condition) \
    ((condition) ? void(0) : ::fuzz::invariantBroken(#condition, __FILE__, __LINE__))
