#include "uws/Handshake.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace uws {

namespace {

constexpr std::string_view kWebSocketGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool isBase64Char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

} // namespace

void sha1(const void *data, size_t length, uint8_t digest[20]) {
    unsigned int digestLength = 0;
    // EVP_Digest fails only when OpenSSL cannot allocate or has no SHA-1 (a FIPS-only provider
    // setup): the handshake cannot be answered then, so that is an error, never a wrong key.
    if (EVP_Digest(data, length, digest, &digestLength, EVP_sha1(), nullptr) != 1 || digestLength != 20) {
        throw std::runtime_error("OpenSSL could not compute SHA-1");
    }
}

std::string base64Encode(const uint8_t *data, size_t length) {
    // EVP_EncodeBlock writes 4 characters per started 3 bytes, then a NUL.
    std::string out((length + 2) / 3 * 4 + 1, '\0');
    int written = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()), data, int(length));
    out.resize(size_t(written));
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
