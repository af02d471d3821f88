// libFuzzer target: parseProxyHeader, the PROXY protocol (v1 and v2) header a load balancer
// puts before a connection's first byte.
//
// The input is the bytes a client sent, parsed from an exactly sized copy. Checked:
//  - on Complete: headerLength is within the input and kMaxProxyHeaderLength; a v1 header
//    ends with CRLF within 107 bytes; a v2 one is 16 bytes plus its length field; a proxied
//    source address is valid text of its family (inet_pton accepts it);
//  - the answer agrees with the prefixes, which is what the socket's reader relies on: every
//    proper prefix of a complete header is Incomplete, the header alone parses to the same
//    result, and a prefix of an Incomplete input is Incomplete;
//  - an Invalid answer carries a reason and stays Invalid whatever follows.
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "uws/ProxyProtocol.h"

namespace {

using uws::ProxyHeader;
using uws::ProxyParseStatus;

struct Parse {
    ProxyParseStatus status;
    ProxyHeader header;
    size_t length = 0;
    const char *reason = nullptr;

    Parse(const char *data, size_t size) {
        std::unique_ptr<char[]> copy = fuzz::copyOf(data, size);
        status = uws::parseProxyHeader(copy.get(), size, header, length, reason);
    }
};

bool sameHeader(const ProxyHeader &a, const ProxyHeader &b) {
    return a.version == b.version && a.local == b.local && a.sourceAddress == b.sourceAddress &&
           a.sourcePort == b.sourcePort && a.destinationAddress == b.destinationAddress &&
           a.destinationPort == b.destinationPort;
}

bool isAddressOf(int family, const std::string &text) {
    unsigned char binary[16];
    return inet_pton(family, text.c_str(), binary) == 1;
}

// Prefix lengths to re-parse: all of them for short inputs, a spread for long ones (a v2
// header may be 64 KiB, and re-parsing every prefix of it would be quadratic).
template <typename Fn> void forPrefixes(size_t size, Fn fn) {
    if (size <= 300) {
        for (size_t n = 0; n < size; n++) fn(n);
        return;
    }
    for (size_t n = 0; n < 300; n++) fn(n);
    for (size_t n = 300; n < size; n += size / 64 + 1) fn(n);
    fn(size - 1);
}

void checkComplete(const uint8_t *data, size_t size, const Parse &parse) {
    FUZZ_CHECK(parse.length > 0 && parse.length <= size);
    FUZZ_CHECK(parse.length <= uws::kMaxProxyHeaderLength);
    FUZZ_CHECK(parse.reason == nullptr);
    if (parse.header.version == 1) {
        FUZZ_CHECK(parse.length <= 107 && parse.length >= 8);
        FUZZ_CHECK(data[parse.length - 2] == '\r' && data[parse.length - 1] == '\n');
    } else {
        FUZZ_CHECK(parse.header.version == 2);
        FUZZ_CHECK(parse.length == 16 + ((size_t(data[14]) << 8) | data[15]));
    }
    if (!parse.header.local) {
        bool four = isAddressOf(AF_INET, parse.header.sourceAddress) && isAddressOf(AF_INET, parse.header.destinationAddress);
        bool six = isAddressOf(AF_INET6, parse.header.sourceAddress) && isAddressOf(AF_INET6, parse.header.destinationAddress);
        FUZZ_CHECK(four || six);
    }
    const char *bytes = reinterpret_cast<const char *>(data);
    Parse alone(bytes, parse.length);
    FUZZ_CHECK(alone.status == ProxyParseStatus::Complete);
    FUZZ_CHECK(alone.length == parse.length);
    FUZZ_CHECK(sameHeader(alone.header, parse.header));
    forPrefixes(parse.length, [&](size_t n) { FUZZ_CHECK(Parse(bytes, n).status == ProxyParseStatus::Incomplete); });
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *bytes = reinterpret_cast<const char *>(data);
    Parse parse(bytes, size);
    switch (parse.status) {
    case ProxyParseStatus::Complete:
        checkComplete(data, size, parse);
        break;
    case ProxyParseStatus::Incomplete:
        FUZZ_CHECK(size < uws::kMaxProxyHeaderLength);
        FUZZ_CHECK(parse.reason == nullptr);
        forPrefixes(size, [&](size_t n) { FUZZ_CHECK(Parse(bytes, n).status == ProxyParseStatus::Incomplete); });
        break;
    case ProxyParseStatus::Invalid: {
        FUZZ_CHECK(parse.reason != nullptr && parse.reason[0] != '\0');
        std::string longer(bytes, size);
        longer += "\r\n\r\nPROXY";
        FUZZ_CHECK(Parse(longer.data(), longer.size()).status == ProxyParseStatus::Invalid);
        break;
    }
    }
    return 0;
}
