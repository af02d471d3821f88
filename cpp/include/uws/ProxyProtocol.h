// The PROXY protocol header (HAProxy's, versions 1 and 2) that a load balancer puts before a
// connection's first byte to say whom it carries. A parser on untrusted input: it does no I/O,
// reads only the bytes it is given, and says as early as it can that they are not a header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace uws {

// Version 1 is at most 107 bytes; version 2 is 16 bytes and at most 65535 more.
constexpr size_t kMaxProxyHeaderLength = 16 + 65535;

enum class ProxyParseStatus : uint8_t {
    Complete,
    Incomplete, // a valid prefix of a header: every byte so far belongs to it
    Invalid,
};

struct ProxyHeader {
    int version = 0;
    // LOCAL (v2) or UNKNOWN (v1): the proxy's own connection (a health check): keep the
    // socket's addresses. Also set for families the header may carry but we do not use.
    bool local = false;
    std::string sourceAddress; // as text, e.g. "203.0.113.7" or "2001:db8::1"
    uint16_t sourcePort = 0;
    std::string destinationAddress;
    uint16_t destinationPort = 0;
};

// Parses the header at the start of data. On Complete, headerLength is its byte count; on
// Invalid, reason says what is wrong (a static string).
ProxyParseStatus parseProxyHeader(const char *data, size_t length, ProxyHeader &out, size_t &headerLength,
                                  const char *&reason);

} // namespace uws
