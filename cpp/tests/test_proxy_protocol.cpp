// parseProxyHeader (HAProxy's PROXY protocol, versions 1 and 2): the examples of the
// specification, every prefix of them, and what must be refused.
#include <string>
#include <vector>

#include "check.h"
#include "uws/ProxyProtocol.h"

namespace {

using uws::ProxyHeader;
using uws::ProxyParseStatus;

struct Result {
    ProxyParseStatus status;
    ProxyHeader header;
    size_t length = 0;
    std::string reason;
};

Result parse(const std::string &data) {
    Result result;
    const char *reason = nullptr;
    result.status = uws::parseProxyHeader(data.data(), data.size(), result.header, result.length, reason);
    if (reason) result.reason = reason;
    return result;
}

const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);

std::string v2(unsigned char command, unsigned char family, const std::string &addresses) {
    std::string header = kSignature;
    header += char(0x20 | command);
    header += char(family);
    header += char(addresses.size() >> 8);
    header += char(addresses.size() & 0xFF);
    return header + addresses;
}

std::string bytes(std::initializer_list<int> values) {
    std::string out;
    for (int v : values) out += char(v);
    return out;
}

// Every proper prefix of a complete header is Incomplete: the reader relies on it.
void checkPrefixesIncomplete(const std::string &header) {
    for (size_t length = 0; length < header.size(); length++) {
        check::Scope scope("prefix of length ", length);
        CHECK(parse(header.substr(0, length)).status == ProxyParseStatus::Incomplete);
    }
}

void testV1Tcp4() {
    const std::string header = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n";
    Result result = parse(header + "GET / HTTP/1.1\r\n");
    CHECK(result.status == ProxyParseStatus::Complete);
    CHECK_EQ(result.length, header.size());
    CHECK_EQ(result.header.version, 1);
    CHECK(!result.header.local);
    CHECK_EQ(result.header.sourceAddress, "192.0.2.1");
    CHECK_EQ(result.header.sourcePort, 56324);
    CHECK_EQ(result.header.destinationAddress, "198.51.100.1");
    CHECK_EQ(result.header.destinationPort, 443);
    checkPrefixesIncomplete(header);
}

void testV1Tcp6AndUnknown() {
    Result six = parse("PROXY TCP6 2001:db8:0:0:0:0:0:1 ::1 65535 0\r\n");
    CHECK(six.status == ProxyParseStatus::Complete);
    CHECK_EQ(six.header.sourceAddress, "2001:db8::1"); // canonical text
    CHECK_EQ(six.header.sourcePort, 65535);
    CHECK_EQ(six.header.destinationPort, 0);
    Result unknown = parse("PROXY UNKNOWN ffff::1 whatever is here\r\n");
    CHECK(unknown.status == ProxyParseStatus::Complete);
    CHECK(unknown.header.local);
    CHECK(unknown.header.sourceAddress.empty());
    CHECK(parse("PROXY UNKNOWN\r\n").status == ProxyParseStatus::Complete);
}

void testV1Refused() {
    const char *invalid[] = {
        "GET / HTTP/1.1\r\n",                                      // no header at all
        "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\n",           // LF without CR
        "PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n",             // a port missing
        "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443 1\r\n",       // a field too many
        "PROXY TCP4  192.0.2.1 198.51.100.1 56324 443\r\n",        // two spaces
        "PROXY TCP4 192.0.2.1 198.51.100.1 65536 443\r\n",         // port out of range
        "PROXY TCP4 192.0.2.1 198.51.100.1 056 443\r\n",           // leading zero
        "PROXY TCP4 192.0.2.1 198.51.100.1 -1 443\r\n",
        "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",             // IPv6 under TCP4
        "PROXY TCP6 192.0.2.1 ::1 1 2\r\n",                        // IPv4 under TCP6
        "PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n",
        "PROXY UDP4 192.0.2.1 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.1\r198.51.100.1 1 2\r\n",              // CR inside
        "PROXY\r\n",
        "proxy TCP4 192.0.2.1 198.51.100.1 1 2\r\n",               // case matters
    };
    for (const char *text : invalid) {
        check::Scope scope(check::quote(text));
        Result result = parse(text);
        CHECK(result.status == ProxyParseStatus::Invalid);
        CHECK(!result.reason.empty());
    }
    // No line end within the 107 bytes a v1 header may have.
    CHECK(parse("PROXY TCP4 " + std::string(200, '1')).status == ProxyParseStatus::Invalid);
    CHECK(parse("PROXY TCP4 " + std::string(90, '1')).status == ProxyParseStatus::Incomplete);
    // A first byte that starts neither version is refused at once.
    CHECK(parse("G").status == ProxyParseStatus::Invalid);
    CHECK(parse("\x16\x03\x01").status == ProxyParseStatus::Invalid); // a TLS ClientHello
}

void testV2Tcp4WithTlvs() {
    std::string addresses = bytes({203, 0, 113, 7, 10, 0, 0, 1, 0x1F, 0x90, 0x01, 0xBB});
    std::string tlv = bytes({0x04, 0x00, 0x03, 'a', 'b', 'c'}); // PP2_TYPE_NOOP, ignored
    const std::string header = v2(1, 0x11, addresses + tlv);
    Result result = parse(header + "rest");
    CHECK(result.status == ProxyParseStatus::Complete);
    CHECK_EQ(result.length, header.size());
    CHECK_EQ(result.header.version, 2);
    CHECK(!result.header.local);
    CHECK_EQ(result.header.sourceAddress, "203.0.113.7");
    CHECK_EQ(result.header.sourcePort, 8080);
    CHECK_EQ(result.header.destinationAddress, "10.0.0.1");
    CHECK_EQ(result.header.destinationPort, 443);
    checkPrefixesIncomplete(header);
}

void testV2Tcp6LocalAndOtherFamilies() {
    std::string addresses(36, '\0');
    addresses[0] = char(0x20);
    addresses[1] = char(0x01);
    addresses[2] = char(0x0d);
    addresses[3] = char(0xb8);
    addresses[15] = 1;
    addresses[31] = 1;
    addresses[32] = char(0xC3);
    addresses[33] = char(0x50);
    Result six = parse(v2(1, 0x21, addresses));
    CHECK(six.status == ProxyParseStatus::Complete);
    CHECK_EQ(six.header.sourceAddress, "2001:db8::1");
    CHECK_EQ(six.header.destinationAddress, "::1");
    CHECK_EQ(six.header.sourcePort, 50000);

    Result local = parse(v2(0, 0x00, ""));
    CHECK(local.status == ProxyParseStatus::Complete);
    CHECK(local.header.local);
    CHECK_EQ(local.length, size_t(16));
    // UDP and unix sockets: accepted, the socket's own address stands.
    CHECK(parse(v2(1, 0x12, std::string(12, '\1'))).header.local);
    CHECK(parse(v2(1, 0x31, std::string(216, '\0'))).header.local);
    CHECK(parse(v2(1, 0x00, "")).header.local);
}

void testV2Refused() {
    std::string four(12, '\1');
    std::string wrongVersion = v2(1, 0x11, four);
    wrongVersion[12] = char(0x11);
    CHECK(parse(wrongVersion).status == ProxyParseStatus::Invalid);
    CHECK(parse(wrongVersion.substr(0, 13)).status == ProxyParseStatus::Invalid); // decided at byte 13
    CHECK(parse(v2(2, 0x11, four)).status == ProxyParseStatus::Invalid);          // command 2
    CHECK(parse(v2(1, 0x41, four)).status == ProxyParseStatus::Invalid);          // family 4
    CHECK(parse(v2(1, 0x13, four)).status == ProxyParseStatus::Invalid);          // transport 3
    CHECK(parse(v2(1, 0x11, std::string(11, '\1'))).status == ProxyParseStatus::Invalid);
    CHECK(parse(v2(1, 0x21, std::string(35, '\1'))).status == ProxyParseStatus::Invalid);
    std::string badSignature = v2(1, 0x11, four);
    badSignature[7] = 'q';
    CHECK(parse(badSignature).status == ProxyParseStatus::Invalid);
    CHECK(parse(badSignature.substr(0, 8)).status == ProxyParseStatus::Invalid);
    // The longest header there is: 16 + 65535 bytes.
    std::string longest = v2(1, 0x11, four + std::string(65535 - 12, '\0'));
    CHECK(parse(longest).status == ProxyParseStatus::Complete);
    CHECK_EQ(parse(longest).length, uws::kMaxProxyHeaderLength);
    CHECK(parse(longest.substr(0, 1000)).status == ProxyParseStatus::Incomplete);
}

} // namespace

int main() {
    RUN_TEST(testV1Tcp4);
    RUN_TEST(testV1Tcp6AndUnknown);
    RUN_TEST(testV1Refused);
    RUN_TEST(testV2Tcp4WithTlvs);
    RUN_TEST(testV2Tcp6LocalAndOtherFamilies);
    RUN_TEST(testV2Refused);
    return check::report("test_proxy_protocol");
}
