#include "uws/WebSocketParser.h"

namespace uws {

size_t formatClosePayload(char out[125], uint16_t code, std::string_view reason) {
    out[0] = char(code >> 8);
    out[1] = char(code);
    // Cut the reason on a UTF-8 boundary so that a long reason never makes the frame invalid.
    size_t length = reason.size() < 123 ? reason.size() : 123;
    while (length > 0 && length < reason.size() && (uint8_t(reason[length]) & 0xC0) == 0x80) {
        length--;
    }
    if (length) std::memcpy(out + 2, reason.data(), length); // an empty view may be null
    return 2 + length;
}

} // namespace uws
