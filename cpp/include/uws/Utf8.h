// UTF-8 validation (RFC 3629) for text messages and close reasons.
//
// The validator is incremental so that a text message arriving in fragments or across
// reads is rejected at the first byte that cannot continue valid UTF-8 (RFC 6455 8.1:
// fail fast), without buffering anything.
#pragma once

#include <cstddef>
#include <cstdint>

namespace uws {

class Utf8Validator {
public:
    // Feeds the next bytes. Returns false once the bytes seen so far can no longer be a
    // prefix of valid UTF-8 (overlong forms, surrogates, code points above U+10FFFF).
    bool feed(const unsigned char *data, size_t length);

    // True when the bytes seen so far end on a code point boundary.
    bool complete() const { return pending_ == 0; }

    void reset() {
        pending_ = 0;
        low_ = 0x80;
        high_ = 0xBF;
    }

private:
    bool feedSlow(const unsigned char *data, size_t length);

    // Continuation bytes still expected, and the allowed range of the next one; the range
    // is narrower than 0x80..0xBF right after E0, ED, F0 and F4 leading bytes.
    uint8_t pending_ = 0;
    uint8_t low_ = 0x80;
    uint8_t high_ = 0xBF;
};

// Whole-buffer check.
bool isValidUtf8(const char *data, size_t length);

} // namespace uws
