// The opening handshake's cryptographic part (RFC 6455 section 4.2.2): SHA-1 and base64, both
// OpenSSL's (the core links it for TLS anyway), so that no crypto of our own is left to own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace uws {

// SHA-1 of data (FIPS 180-4), 20 bytes into digest. Throws std::runtime_error if OpenSSL
// cannot compute it.
void sha1(const void *data, size_t length, uint8_t digest[20]);

// Standard base64 with padding.
std::string base64Encode(const uint8_t *data, size_t length);

// A client key must be the base64 encoding of 16 bytes: 22 alphabet characters then "==".
bool isValidWebSocketKey(std::string_view key);

// Sec-WebSocket-Accept for a client key: base64(sha1(key + GUID)), always 28 characters.
std::string computeAcceptKey(std::string_view key);

} // namespace uws
