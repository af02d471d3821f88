#include "uws/Handshake.h"

#include <cstring>

namespace uws {

namespace {

constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kWebSocketGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

inline uint32_t rotateLeft(uint32_t value, int bits) { return (value << bits) | (value >> (32 - bits)); }

void sha1Block(uint32_t state[5], const uint8_t block[64]) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t(block[i * 4]) << 24) | (uint32_t(block[i * 4 + 1]) << 16) |
               (uint32_t(block[i * 4 + 2]) << 8) | uint32_t(block[i * 4 + 3]);
    }
    for (int i = 16; i < 80; i++) {
        w[i] = rotateLeft(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t next = rotateLeft(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rotateLeft(b, 30);
        b = a;
        a = next;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
}

bool isBase64Char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

} // namespace

void sha1(const void *data, size_t length, uint8_t digest[20]) {
    uint32_t state[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const uint8_t *bytes = static_cast<const uint8_t *>(data);
    size_t full = length / 64 * 64;
    for (size_t offset = 0; offset < full; offset += 64) {
        sha1Block(state, bytes + offset);
    }
    // Tail: remaining bytes, 0x80, zeros, then the bit length big-endian in the last 8 bytes.
    uint8_t tail[128] = {};
    size_t rest = length - full;
    std::memcpy(tail, bytes + full, rest);
    tail[rest] = 0x80;
    size_t tailLength = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bitLength = uint64_t(length) * 8;
    for (int i = 0; i < 8; i++) {
        tail[tailLength - 1 - i] = uint8_t(bitLength >> (8 * i));
    }
    for (size_t offset = 0; offset < tailLength; offset += 64) {
        sha1Block(state, tail + offset);
    }
    for (int i = 0; i < 5; i++) {
        digest[i * 4] = uint8_t(state[i] >> 24);
        digest[i * 4 + 1] = uint8_t(state[i] >> 16);
        digest[i * 4 + 2] = uint8_t(state[i] >> 8);
        digest[i * 4 + 3] = uint8_t(state[i]);
    }
}

std::string base64Encode(const uint8_t *data, size_t length) {
    std::string out;
    out.reserve((length + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= length; i += 3) {
        uint32_t group = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8) | data[i + 2];
        out += kBase64Alphabet[group >> 18];
        out += kBase64Alphabet[(group >> 12) & 63];
        out += kBase64Alphabet[(group >> 6) & 63];
        out += kBase64Alphabet[group & 63];
    }
    if (length - i == 1) {
        uint32_t group = uint32_t(data[i]) << 16;
        out += kBase64Alphabet[group >> 18];
        out += kBase64Alphabet[(group >> 12) & 63];
        out += "==";
    } else if (length - i == 2) {
        uint32_t group = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8);
        out += kBase64Alphabet[group >> 18];
        out += kBase64Alphabet[(group >> 12) & 63];
        out += kBase64Alphabet[(group >> 6) & 63];
        out += '=';
    }
    return out;
}

bool isValidWebSocketKey(std::string_view key) {
    if (key.size() != 24 || key[22] != '=' || key[23] != '=') {
        return false;
    }
    for (size_t i = 0; i < 22; i++) {
        if (!isBase64Char(key[i])) {
            return false;
        }
    }
    return true;
}

std::string computeAcceptKey(std::string_view key) {
    std::string input;
    input.reserve(key.size() + kWebSocketGuid.size());
    input.append(key).append(kWebSocketGuid);
    uint8_t digest[20];
    sha1(input.data(), input.size(), digest);
    return base64Encode(digest, 20);
}

} // namespace uws
