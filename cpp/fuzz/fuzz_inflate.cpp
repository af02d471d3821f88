// libFuzzer target: Inflater::inflate on a client's compressed messages, Deflater round trips,
// and negotiateDeflate on a client's Sec-WebSocket-Extensions offers.
//
// Input layout:
//   bytes 0-1  little-endian: maxLength in bits 0-13 (0..16383); bit 15 set means no limit,
//              SIZE_MAX, which max_payload_length = 2**64 - 1 gives
//   byte 2     bits 0-2: window bits 8 + n; bit 3: reset before every message (the client
//              keeps no context); bits 4-7: the round trip's zlib memLevel
//   bytes 3-4  the compression option for negotiateDeflate (compressor | decompressor << 8)
//   byte 5     length of the offers string that follows
//   rest       messages, each a 2-byte little-endian length and that many bytes
// Checked:
//  - Ok leaves at most maxLength bytes; TooLarge leaves exactly maxLength + 1 (the byte that
//    proved it too large) and happens only when the message inflates past maxLength: a
//    second Inflater with a large limit, fed the same messages, is the reference;
//  - each message, deflated by Deflater with the same window, inflates back to itself, and
//    with a limit one byte short is TooLarge;
//  - negotiateDeflate never accepts with compression disabled or without a
//    permessage-deflate offer, agrees on window bits zlib accepts, and answers with a header
//    that is itself an acceptable offer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "uws/PerMessageDeflate.h"

namespace {

using uws::InflateResult;

// Far above any finite maxLength the input can ask for, and small enough for libFuzzer's RSS
// limit.
constexpr size_t kReferenceLimit = 1 << 20;

bool startsWith(std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
}

void checkInflate(const std::vector<std::string_view> &messages, int windowBits, bool reset, size_t maxLength) {
    uws::Inflater inflater(windowBits);
    uws::Inflater reference(windowBits);
    std::string out, expected;
    for (std::string_view message : messages) {
        InflateResult result = inflater.inflate(message, out, maxLength, reset);
        InflateResult referenceResult = reference.inflate(message, expected, kReferenceLimit, reset);
        switch (result) {
        case InflateResult::Ok:
            FUZZ_CHECK(out.size() <= maxLength);
            if (referenceResult == InflateResult::TooLarge) {
                // Only without a limit can ours go past the reference's.
                FUZZ_CHECK(out.size() > kReferenceLimit);
                FUZZ_CHECK(std::string_view(out).substr(0, expected.size()) == expected);
            } else {
                FUZZ_CHECK(referenceResult == InflateResult::Ok && out == expected);
            }
            break;
        case InflateResult::TooLarge:
            FUZZ_CHECK(out.size() == maxLength + 1);
            FUZZ_CHECK(expected.size() > maxLength);
            FUZZ_CHECK(std::string_view(expected).substr(0, out.size()) == out);
            break;
        case InflateResult::Invalid:
            FUZZ_CHECK(referenceResult == InflateResult::Invalid ||
                       (referenceResult == InflateResult::TooLarge && out.size() > kReferenceLimit));
            FUZZ_CHECK(out.size() <= maxLength);
            break;
        }
        if (referenceResult == InflateResult::Ok && expected.size() <= maxLength) {
            FUZZ_CHECK(result == InflateResult::Ok);
        }
        // A stream that failed restarts; when only one of the two did, their contexts differ
        // from here on.
        if ((result == InflateResult::Ok) != (referenceResult == InflateResult::Ok)) break;
    }
}

void checkRoundTrip(const std::vector<std::string_view> &messages, int windowBits, int memLevel, bool reset) {
    uws::Deflater deflater(windowBits, memLevel);
    uws::Inflater inflater(windowBits);
    std::string compressed, out;
    for (std::string_view message : messages) {
        FUZZ_CHECK(deflater.compress(message, compressed, reset));
        if (reset && !message.empty()) {
            uws::Inflater oneShort(windowBits);
            FUZZ_CHECK(oneShort.inflate(compressed, out, message.size() - 1, true) == InflateResult::TooLarge);
        }
        FUZZ_CHECK(inflater.inflate(compressed, out, message.size(), reset) == InflateResult::Ok);
        FUZZ_CHECK(out == message);
    }
}

void checkNegotiation(std::string_view offers, uint32_t options) {
    uws::DeflateAgreement agreement = uws::negotiateDeflate(offers, options);
    if (!agreement.accepted) {
        FUZZ_CHECK(agreement.responseHeader.empty());
        return;
    }
    FUZZ_CHECK(options != uws::CompressOption::Disabled);
    FUZZ_CHECK(offers.find("permessage-deflate") != std::string_view::npos);
    FUZZ_CHECK(startsWith(agreement.responseHeader, "permessage-deflate"));
    // 0 (never compress) or a window zlib can deflate with.
    FUZZ_CHECK(agreement.serverWindowBits == 0 || (agreement.serverWindowBits >= 9 && agreement.serverWindowBits <= 15));
    if (uws::CompressOption::compressor(options) == 0) FUZZ_CHECK(agreement.serverWindowBits == 0);
    FUZZ_CHECK(agreement.clientWindowBits >= 8 && agreement.clientWindowBits <= 15);
    // The shared decompressor cannot keep a context per client.
    if (uws::CompressOption::decompressor(options) <= 1) FUZZ_CHECK(agreement.clientNoContextTakeover);
    // What we answer uses only parameters and values that we would accept ourselves.
    FUZZ_CHECK(uws::negotiateDeflate(agreement.responseHeader, options).accepted);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz::ByteReader input(data, size);
    const uint16_t lengthField = input.u16();
    const size_t maxLength = (lengthField & 0x8000) ? std::numeric_limits<size_t>::max() : lengthField & 0x3FFF;
    const uint8_t flags = input.byte();
    const int windowBits = 8 + (flags & 7);
    const bool reset = (flags & 8) != 0;
    const int memLevel = std::clamp(flags >> 4, 1, 9);
    const uint32_t options = input.u16();
    const std::string_view offers = input.take(input.byte());
    std::vector<std::string_view> messages;
    while (input.remaining() > 0) messages.push_back(input.take(input.u16()));

    checkInflate(messages, windowBits, reset, maxLength);
    // zlib deflates with 9..15 window bits only; negotiation never picks 8 for our side.
    checkRoundTrip(messages, std::max(windowBits, 9), memLevel, reset);
    checkNegotiation(offers, options);
    return 0;
}
