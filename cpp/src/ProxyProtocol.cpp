#include "uws/ProxyProtocol.h"

#include <arpa/inet.h>

#include <cstring>
#include <string_view>

namespace uws {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};
constexpr size_t kV1MaxLength = 107;

// A decimal port, 0-65535, without sign or leading zeros (as the specification writes them).
bool parsePort(std::string_view text, uint16_t &port) {
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
    uint32_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + uint32_t(c - '0');
    }
    if (value > 65535) return false;
    port = uint16_t(value);
    return true;
}

// An address in the family's canonical text, checked by inet_pton and given back by inet_ntop.
bool parseAddress(int family, std::string_view text, std::string &out) {
    char copy[64];
    if (text.empty() || text.size() >= sizeof copy) return false;
    std::memcpy(copy, text.data(), text.size());
    copy[text.size()] = '\0';
    unsigned char binary[16];
    if (inet_pton(family, copy, binary) != 1) return false;
    char canonical[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, binary, canonical, sizeof canonical)) return false;
    out = canonical;
    return true;
}

std::string addressText(int family, const unsigned char *binary) {
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(family, binary, text, sizeof text);
    return text;
}

// "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n": single spaces, nothing else.
ProxyParseStatus parseV1(const char *data, size_t length, ProxyHeader &out, size_t &headerLength, const char *&reason) {
    const char *end = static_cast<const char *>(std::memchr(data, '\n', length < kV1MaxLength ? length : kV1MaxLength));
    if (!end) {
        if (length >= kV1MaxLength) {
            reason = "PROXY v1 header longer than 107 bytes";
            return ProxyParseStatus::Invalid;
        }
        for (size_t i = 0; i < length; i++) {
            if (data[i] == '\r' && i + 1 < length) {
                reason = "PROXY v1 header has CR without LF";
                return ProxyParseStatus::Invalid;
            }
        }
        return ProxyParseStatus::Incomplete;
    }
    size_t lineLength = size_t(end - data) + 1;
    if (lineLength < kV1Prefix.size() + 2 || end[-1] != '\r') {
        reason = "PROXY v1 header does not end with CRLF";
        return ProxyParseStatus::Invalid;
    }
    if (std::memchr(data, '\r', lineLength - 2)) {
        reason = "PROXY v1 header has CR without LF";
        return ProxyParseStatus::Invalid;
    }
    // Fields separated by single spaces: the protocol, then two addresses and two ports.
    std::string_view line(data + kV1Prefix.size(), lineLength - kV1Prefix.size() - 2);
    std::string_view fields[6];
    size_t count = 0;
    for (;;) {
        size_t space = line.find(' ');
        fields[count++] = line.substr(0, space);
        if (space == std::string_view::npos || count == 6) break;
        line.remove_prefix(space + 1);
    }
    out = ProxyHeader{};
    out.version = 1;
    if (fields[0] == "UNKNOWN") {
        // The rest of the line is to be ignored (the proxy could not tell the addresses).
        out.local = true;
        headerLength = lineLength;
        return ProxyParseStatus::Complete;
    }
    int family;
    if (fields[0] == "TCP4") {
        family = AF_INET;
    } else if (fields[0] == "TCP6") {
        family = AF_INET6;
    } else {
        reason = "PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN";
        return ProxyParseStatus::Invalid;
    }
    if (count != 5) {
        reason = "PROXY v1 header does not have protocol, two addresses and two ports";
        return ProxyParseStatus::Invalid;
    }
    if (!parseAddress(family, fields[1], out.sourceAddress) || !parseAddress(family, fields[2], out.destinationAddress)) {
        reason = "PROXY v1 address is not valid for its protocol";
        return ProxyParseStatus::Invalid;
    }
    if (!parsePort(fields[3], out.sourcePort) || !parsePort(fields[4], out.destinationPort)) {
        reason = "PROXY v1 port is not a number from 0 to 65535";
        return ProxyParseStatus::Invalid;
    }
    headerLength = lineLength;
    return ProxyParseStatus::Complete;
}

ProxyParseStatus parseV2(const unsigned char *data, size_t length, ProxyHeader &out, size_t &headerLength,
                         const char *&reason) {
    if (length < 16) {
        if (length > 12 && (data[12] >> 4) != 2) {
            reason = "PROXY v2 header has a version other than 2";
            return ProxyParseStatus::Invalid;
        }
        return ProxyParseStatus::Incomplete;
    }
    unsigned version = data[12] >> 4, command = data[12] & 15;
    if (version != 2) {
        reason = "PROXY v2 header has a version other than 2";
        return ProxyParseStatus::Invalid;
    }
    if (command > 1) {
        reason = "PROXY v2 command is neither LOCAL nor PROXY";
        return ProxyParseStatus::Invalid;
    }
    size_t addressLength = (size_t(data[14]) << 8) | data[15];
    unsigned family = data[13] >> 4, transport = data[13] & 15;
    // The address block must hold the family's addresses (TLVs may follow them).
    size_t needed = family == 1 ? 12 : family == 2 ? 36 : family == 3 ? 216 : 0;
    if (family > 3 || transport > 2) {
        reason = "PROXY v2 address family or transport is unknown";
        return ProxyParseStatus::Invalid;
    }
    if (command == 1 && addressLength < needed) {
        reason = "PROXY v2 address block is shorter than its family's addresses";
        return ProxyParseStatus::Invalid;
    }
    if (length < 16 + addressLength) return ProxyParseStatus::Incomplete;
    out = ProxyHeader{};
    out.version = 2;
    headerLength = 16 + addressLength;
    const unsigned char *addresses = data + 16;
    if (command == 0 || transport != 1 || (family != 1 && family != 2)) {
        // LOCAL, UNSPEC, UDP or a unix socket: the socket's own addresses stand.
        out.local = true;
        return ProxyParseStatus::Complete;
    }
    if (family == 1) {
        out.sourceAddress = addressText(AF_INET, addresses);
        out.destinationAddress = addressText(AF_INET, addresses + 4);
        out.sourcePort = uint16_t((addresses[8] << 8) | addresses[9]);
        out.destinationPort = uint16_t((addresses[10] << 8) | addresses[11]);
    } else {
        out.sourceAddress = addressText(AF_INET6, addresses);
        out.destinationAddress = addressText(AF_INET6, addresses + 16);
        out.sourcePort = uint16_t((addresses[32] << 8) | addresses[33]);
        out.destinationPort = uint16_t((addresses[34] << 8) | addresses[35]);
    }
    return ProxyParseStatus::Complete;
}

} // namespace

ProxyParseStatus parseProxyHeader(const char *data, size_t length, ProxyHeader &out, size_t &headerLength,
                                  const char *&reason) {
    headerLength = 0;
    reason = nullptr;
    if (length == 0) return ProxyParseStatus::Incomplete;
    // The first byte tells the versions apart: 'P' or CR.
    if (data[0] == 'P') {
        size_t prefix = length < kV1Prefix.size() ? length : kV1Prefix.size();
        if (std::string_view(data, prefix) != kV1Prefix.substr(0, prefix)) {
            reason = "not a PROXY protocol header";
            return ProxyParseStatus::Invalid;
        }
        if (length <= kV1Prefix.size()) return ProxyParseStatus::Incomplete;
        return parseV1(data, length, out, headerLength, reason);
    }
    size_t prefix = length < sizeof kV2Signature ? length : sizeof kV2Signature;
    if (std::memcmp(data, kV2Signature, prefix) != 0) {
        reason = "not a PROXY protocol header";
        return ProxyParseStatus::Invalid;
    }
    if (length < sizeof kV2Signature) return ProxyParseStatus::Incomplete;
    return parseV2(reinterpret_cast<const unsigned char *>(data), length, out, headerLength, reason);
}

} // namespace uws
