#include "uws/Utf8.h"

#include <cstring>

namespace uws {

namespace {

constexpr uint64_t kHighBits = 0x8080808080808080ULL;

// Skips the leading run of ASCII, 8 bytes at a time; returns how many bytes were ASCII.
size_t skipAscii(const unsigned char *data, size_t length) {
    size_t i = 0;
    while (i + 8 <= length) {
        uint64_t word;
        std::memcpy(&word, data + i, 8);
        if (word & kHighBits) {
            break;
        }
        i += 8;
    }
    while (i < length && data[i] < 0x80) {
        i++;
    }
    return i;
}

} // namespace

bool Utf8Validator::feed(const unsigned char *data, size_t length) {
    if (pending_ == 0) {
        size_t ascii = skipAscii(data, length);
        data += ascii;
        length -= ascii;
    }
    return length == 0 || feedSlow(data, length);
}

bool Utf8Validator::feedSlow(const unsigned char *data, size_t length) {
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = data[i];
        if (pending_) {
            if (byte < low_ || byte > high_) {
                return false;
            }
            pending_--;
            low_ = 0x80;
            high_ = 0xBF;
            continue;
        }
        if (byte < 0x80) {
            size_t ascii = skipAscii(data + i, length - i);
            i += ascii - 1;
            continue;
        }
        if (byte >= 0xC2 && byte <= 0xDF) {
            pending_ = 1;
        } else if (byte >= 0xE0 && byte <= 0xEF) {
            pending_ = 2;
            if (byte == 0xE0) {
                low_ = 0xA0;  // below is overlong
            } else if (byte == 0xED) {
                high_ = 0x9F; // above are UTF-16 surrogates
            }
        } else if (byte >= 0xF0 && byte <= 0xF4) {
            pending_ = 3;
            if (byte == 0xF0) {
                low_ = 0x90;  // below is overlong
            } else if (byte == 0xF4) {
                high_ = 0x8F; // above is past U+10FFFF
            }
        } else {
            return false;     // continuation byte first, C0/C1 overlongs, F5..FF
        }
    }
    return true;
}

bool isValidUtf8(const char *data, size_t length) {
    Utf8Validator validator;
    return validator.feed(reinterpret_cast<const unsigned char *>(data), length) && validator.complete();
}

} // namespace uws
