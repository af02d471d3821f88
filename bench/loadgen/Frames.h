// The client's side of RFC 6455 framing: masked frames out, unmasked frames in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace frames {

enum Opcode : uint8_t { CONTINUATION = 0, TEXT = 1, BINARY = 2, CLOSE = 8, PING = 9, PONG = 10 };

constexpr size_t kMaxClientHeader = 14;

// Writes a FIN frame header with the mask bit and `mask` as key; returns its length.
inline size_t writeHeader(uint8_t *out, uint8_t opcode, bool rsv1, uint64_t length, uint32_t mask) {
    out[0] = uint8_t(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    size_t n;
    if (length < 126) {
        out[1] = uint8_t(0x80 | length);
        n = 2;
    } else if (length < 65536) {
        out[1] = 0x80 | 126;
        out[2] = uint8_t(length >> 8);
        out[3] = uint8_t(length);
        n = 4;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) out[2 + i] = uint8_t(length >> (56 - 8 * i));
        n = 10;
    }
    std::memcpy(out + n, &mask, 4);
    return n + 4;
}

// dst = src XOR the repeating 4-byte key, eight bytes at a time.
inline void maskCopy(uint8_t *dst, const uint8_t *src, size_t length, uint32_t mask) {
    uint64_t wide = (uint64_t(mask) << 32) | mask;
    size_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t word;
        std::memcpy(&word, src + i, 8);
        word ^= wide;
        std::memcpy(dst + i, &word, 8);
    }
    const uint8_t *key = reinterpret_cast<const uint8_t *>(&mask);
    for (; i < length; i++) dst[i] = src[i] ^ key[i & 3];
}

struct Frame {
    bool fin;
    bool rsv1;
    uint8_t opcode;
    const uint8_t *payload;
    uint64_t length;
    size_t size;  // header + payload: how far to advance
};

enum class Parse { INCOMPLETE, FRAME, ERROR };

// Parses one server frame at `data`; a masked frame or a reserved bit other than RSV1 is an error.
inline Parse parse(const uint8_t *data, size_t available, Frame &frame) {
    if (available < 2) return Parse::INCOMPLETE;
    if ((data[0] & 0x30) || (data[1] & 0x80)) return Parse::ERROR;
    uint64_t length = data[1] & 0x7f;
    size_t header = 2;
    if (length == 126) {
        if (available < 4) return Parse::INCOMPLETE;
        length = (uint64_t(data[2]) << 8) | data[3];
        header = 4;
    } else if (length == 127) {
        if (available < 10) return Parse::INCOMPLETE;
        length = 0;
        for (int i = 0; i < 8; i++) length = (length << 8) | data[2 + i];
        header = 10;
    }
    if (available - header < length) return Parse::INCOMPLETE;
    frame.fin = data[0] & 0x80;
    frame.rsv1 = data[0] & 0x40;
    frame.opcode = data[0] & 0x0f;
    frame.payload = data + header;
    frame.length = length;
    frame.size = header + size_t(length);
    return Parse::FRAME;
}

}  // namespace frames
