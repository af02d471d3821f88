// permessage-deflate: Deflater/Inflater round trips and bounds, negotiation, and the
// regressions the fuzzers found (each test named after its bug).
#include <cstdint>
#include <string>

#include "check.h"
#include "uws/PerMessageDeflate.h"
#include "uws/WebSocketParser.h"

namespace {

std::string text(size_t length) {
    std::string out;
    for (size_t i = 0; i < length; i++) out += char('a' + (i * 7) % 26);
    return out;
}

void testRoundTripWithContextTakeover() {
    uws::Deflater deflater(15, 8);
    uws::Inflater inflater(15);
    for (size_t length : {1, 100, 5000, 70000}) {
        check::Scope scope("length " + std::to_string(length));
        std::string message = text(length), compressed, inflated;
        CHECK(deflater.compress(message, compressed, false));
        CHECK(inflater.inflate(compressed, inflated, 1 << 20, false) == uws::InflateResult::Ok);
        CHECK_EQ(inflated, message);
    }
}

// Bug: zlib writes nothing for an empty message right after another one, and the peer then
// read the appended 00 00 FF FF as the start of a stored block and choked on the next message.
void testEmptyMessageAfterAnotherStaysInflatable() {
    uws::Deflater deflater(15, 8);
    uws::Inflater inflater(15);
    std::string compressed, inflated;
    CHECK(deflater.compress("hello", compressed, false));
    CHECK(inflater.inflate(compressed, inflated, 100, false) == uws::InflateResult::Ok);
    CHECK(deflater.compress("", compressed, false));
    CHECK(!compressed.empty());
    CHECK(inflater.inflate(compressed, inflated, 100, false) == uws::InflateResult::Ok);
    CHECK_EQ(inflated, std::string());
    CHECK(deflater.compress("world", compressed, false));
    CHECK(inflater.inflate(compressed, inflated, 100, false) == uws::InflateResult::Ok);
    CHECK_EQ(inflated, std::string("world"));
}

// Bug: a limit of SIZE_MAX wrapped "limit + 1" to zero room and inflate looped forever.
void testInflateWithoutLimitTerminates() {
    uws::Deflater deflater(15, 8);
    uws::Inflater inflater(15);
    std::string message = text(3000), compressed, inflated;
    CHECK(deflater.compress(message, compressed, true));
    CHECK(inflater.inflate(compressed, inflated, SIZE_MAX, true) == uws::InflateResult::Ok);
    CHECK_EQ(inflated, message);
}

void testInflateStopsAtTheLimit() {
    uws::Deflater deflater(15, 8);
    uws::Inflater inflater(15);
    std::string bomb(4 << 20, '\0'), compressed, inflated;
    CHECK(deflater.compress(bomb, compressed, true));
    CHECK(compressed.size() < 64 * 1024);
    CHECK(inflater.inflate(compressed, inflated, 1 << 20, true) == uws::InflateResult::TooLarge);
    CHECK(inflated.size() <= (1u << 20) + 1);
    CHECK(inflater.inflate(compressed, inflated, 4 << 20, true) == uws::InflateResult::Ok);
    CHECK_EQ(inflated.size(), bomb.size());
}

void testNegotiation() {
    using namespace uws::CompressOption;
    CHECK(!uws::negotiateDeflate("permessage-deflate", Disabled).accepted);
    uws::DeflateAgreement shared = uws::negotiateDeflate("permessage-deflate", SharedCompressor | SharedDecompressor);
    CHECK(shared.accepted);
    CHECK_EQ(shared.responseHeader, std::string("permessage-deflate; server_no_context_takeover; client_no_context_takeover"));
    CHECK(!uws::negotiateDeflate("permessage-deflate; bogus", SharedCompressor).accepted);
    CHECK(!uws::negotiateDeflate("permessage-deflate; server_max_window_bits=7", SharedCompressor).accepted);
    CHECK(uws::negotiateDeflate("permessage-deflate; server_max_window_bits=7, permessage-deflate", SharedCompressor).accepted);
    uws::DeflateAgreement eight = uws::negotiateDeflate("permessage-deflate; server_max_window_bits=8", SharedCompressor);
    CHECK(eight.accepted);
    CHECK_EQ(eight.serverWindowBits, 0); // zlib cannot deflate with 256 bytes: sent uncompressed
}

// Bug: an empty reason passed a null pointer to memcpy (undefined behaviour under UBSan).
void testClosePayloadWithEmptyReason() {
    char payload[125];
    CHECK_EQ(uws::formatClosePayload(payload, 1000, {}), size_t(2));
    CHECK_EQ(uint8_t(payload[0]), uint8_t(0x03));
    CHECK_EQ(uint8_t(payload[1]), uint8_t(0xE8));
}

} // namespace

int main() {
    RUN_TEST(testRoundTripWithContextTakeover);
    RUN_TEST(testEmptyMessageAfterAnotherStaysInflatable);
    RUN_TEST(testInflateWithoutLimitTerminates);
    RUN_TEST(testInflateStopsAtTheLimit);
    RUN_TEST(testNegotiation);
    RUN_TEST(testClosePayloadWithEmptyReason);
    return check::report("test_deflate");
}
