// sha1, base64Encode, isValidWebSocketKey and computeAcceptKey against published vectors
// (FIPS 180 examples, RFC 4648 section 10, RFC 6455 section 1.3).
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "uws/Handshake.h"

namespace {

std::string sha1Hex(const std::string &data) {
    uint8_t digest[20];
    uws::sha1(data.data(), data.size(), digest);
    static const char digits[] = "0123456789abcdef";
    std::string hex;
    for (uint8_t byte : digest) {
        hex += digits[byte >> 4];
        hex += digits[byte & 15];
    }
    return hex;
}

std::string base64(const std::string &data) {
    return uws::base64Encode(reinterpret_cast<const uint8_t *>(data.data()), data.size());
}

// Bytes i % 251 for i < length: a pattern with no period that lines up with the 64-byte blocks.
std::string pattern(size_t length) {
    std::string out;
    for (size_t i = 0; i < length; i++) {
        out += char(i % 251);
    }
    return out;
}

void testSha1KnownAnswers() {
    CHECK_EQ(sha1Hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    CHECK_EQ(sha1Hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    CHECK_EQ(sha1Hex("The quick brown fox jumps over the lazy dog"), "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12");
    // 56 bytes: the length no longer fits in the first padding block.
    CHECK_EQ(sha1Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
             "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    CHECK_EQ(sha1Hex(std::string(1000000, 'a')), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

// The lengths around each place where the padding changes shape.
void testSha1PaddingBoundaries() {
    const std::vector<std::pair<size_t, const char *>> cases = {
        {55, "8ae2d46729cfe68ff927af5eec9c7d1b66d65ac2"},  {56, "636e2ec698dac903498e648bd2f3af641d3c88cb"},
        {63, "6d942da0c4392b123528f2905c713a3ce28364bd"},  {64, "c6138d514ffa2135bfce0ed0b8fac65669917ec7"},
        {65, "69bd728ad6e13cd76ff19751fde427b00e395746"},  {119, "41c89d06001bab4ab78736b44efe7ce18ce6ae08"},
        {120, "d3dbd653bd8597b7475321b60a36891278e6a04a"}, {127, "89d7312a903f65cd2b3e34a975e55dbea9033353"},
        {128, "e6434bc401f98603d7eda504790c98c67385d535"},
    };
    for (const auto &[length, digest] : cases) {
        check::Scope scope("length ", length);
        CHECK_EQ(sha1Hex(pattern(length)), digest);
    }
}

void testBase64() {
    CHECK_EQ(base64(""), "");
    CHECK_EQ(base64("f"), "Zg==");
    CHECK_EQ(base64("fo"), "Zm8=");
    CHECK_EQ(base64("foo"), "Zm9v");
    CHECK_EQ(base64("foob"), "Zm9vYg==");
    CHECK_EQ(base64("fooba"), "Zm9vYmE=");
    CHECK_EQ(base64("foobar"), "Zm9vYmFy");
    CHECK_EQ(base64("\xFB\xFF"), "+/8=");
    CHECK_EQ(base64(std::string("\0\0\0", 3)), "AAAA");
    CHECK_EQ(base64("\xFF\xFF\xFF"), "////");
    CHECK_EQ(base64("the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
}

void testIsValidWebSocketKey() {
    CHECK(uws::isValidWebSocketKey("dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK(uws::isValidWebSocketKey("AAAAAAAAAAAAAAAAAAAAAA=="));
    CHECK(uws::isValidWebSocketKey("+/+/+/+/+/+/+/+/+/+/+w=="));
    CHECK(uws::isValidWebSocketKey(base64(pattern(16))));

    const char *invalid[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",    // 23 characters
        "dGhlIHNhbXBsZSBub25jZQ===",  // 25 characters
        "dGhlIHNhbXBsZSBub25jZQAA",   // no padding
        "dGhlIHNhbXBsZSBub25jZ===",   // padding starts early
        "dGhlIHNhbXBsZSBub25jZQ=A",   // padding, then data
        "dGhlIHNhbXBsZSBub25j-Q==",   // base64url alphabet
        "dGhlIHNhbXBsZSBub25j_Q==",
        "dGhlIHNhbXBsZSBub25j Q==",
        "dGhlIHNhbXBsZSBub25jZQ==\r", // trailing bytes
        "Zm9vYmFy",                   // base64, but not of 16 bytes
    };
    for (const char *key : invalid) {
        check::Scope scope(check::quote(key));
        CHECK(!uws::isValidWebSocketKey(key));
    }
}

void testAcceptKeyRfcExample() {
    const std::string accept = uws::computeAcceptKey("dGhlIHNhbXBsZSBub25jZQ==");
    CHECK_EQ(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK_EQ(accept.size(), size_t(28));
}

// The header's contract is base64(sha1(key + GUID)) for any key, so the short cut must agree
// with the composition of the two primitives whatever the key's length.
void testAcceptKeyIsSha1OfKeyAndGuid() {
    const std::string guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    for (size_t length : {size_t(0), size_t(1), size_t(24), size_t(63), size_t(64), size_t(65), size_t(100),
                          size_t(200)}) {
        check::Scope scope("key length ", length);
        const std::string key(length, 'k');
        const std::string input = key + guid;
        uint8_t digest[20];
        uws::sha1(input.data(), input.size(), digest);
        CHECK_EQ(uws::computeAcceptKey(key), uws::base64Encode(digest, 20));
    }
}

} // namespace

int main() {
    RUN_TEST(testSha1KnownAnswers);
    RUN_TEST(testSha1PaddingBoundaries);
    RUN_TEST(testBase64);
    RUN_TEST(testIsValidWebSocketKey);
    RUN_TEST(testAcceptKeyRfcExample);
    RUN_TEST(testAcceptKeyIsSha1OfKeyAndGuid);
    return check::report("test_handshake");
}
