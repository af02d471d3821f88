// libFuzzer target: WebSocketParser on a client's byte stream.
//
// Input layout:
//   byte 0   settings: bit 0 compressionNegotiated, bits 1-2 maxPayloadLength (one of
//            kMaxPayloadLengths), bit 3 the sink stops at a close frame as WebSocket does
//   byte 1   low 3 bits: how many chunk-size bytes follow (0: the stream goes in whole)
//   ...      that many bytes, each a chunk size minus one, used in turn
//   rest     the stream
// Each chunk is fed from its own exactly sized copy, so a read past it is an ASan report.
// Checked:
//  - after a protocol error nothing more is reported, and consume() returns false;
//  - a text message delivered uncompressed is valid UTF-8, a compressed one only arrives
//    when compression was negotiated, no message exceeds maxPayloadLength;
//  - control payloads stay within 125 bytes, close codes and reasons are valid, and the
//    close payload formatted from a valid reason or text message (cut to fit) stays valid;
//  - bufferedMessageBytes() <= maxPayloadLength after every read;
//  - the events are the same as when the stream arrives in one read.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "uws/Utf8.h"
#include "uws/WebSocketParser.h"

namespace {

using uws::OpCode;

// 0 refuses every data payload; 125 and 126 sit on the 7-bit length boundary; 70000 needs
// a 64-bit length.
constexpr size_t kMaxPayloadLengths[4] = {0, 125, 126, 70000};

struct Event {
    enum Kind { Message, Ping, Pong, Close, ProtocolError } kind;
    OpCode opCode = OpCode::Continuation;
    bool compressed = false;
    uint16_t code = 0;
    std::string data;

    bool operator==(const Event &other) const {
        return kind == other.kind && opCode == other.opCode && compressed == other.compressed &&
               code == other.code && data == other.data;
    }
};

// The close payload we would send with this reason: the reason is cut to fit 125 bytes on a
// code point boundary, so valid UTF-8 stays valid.
void checkClosePayload(std::string_view reason) {
    char payload[125];
    size_t length = uws::formatClosePayload(payload, uws::CloseCode::Normal, reason);
    FUZZ_CHECK(length >= 2 && length <= 125);
    const std::string_view sent(payload + 2, length - 2);
    FUZZ_CHECK(sent == reason.substr(0, sent.size()));
    // Cut only past 123 bytes, and by less than one code point.
    FUZZ_CHECK(reason.size() <= 123 ? sent.size() == reason.size() : sent.size() >= 123 - 3);
    FUZZ_CHECK(uws::isValidUtf8(payload + 2, length - 2));
}

struct RecordingSink {
    size_t maxPayloadLength = 0;
    bool compressionNegotiated = false;
    bool stopAtClose = false;
    std::vector<Event> events;
    bool failed = false;
    bool stopped = false;

    bool onMessage(char *data, size_t length, OpCode opCode, bool compressed) {
        FUZZ_CHECK(!failed && !stopped);
        FUZZ_CHECK(opCode == OpCode::Text || opCode == OpCode::Binary);
        FUZZ_CHECK(length <= maxPayloadLength);
        FUZZ_CHECK(!compressed || compressionNegotiated);
        if (opCode == OpCode::Text && !compressed) {
            FUZZ_CHECK(uws::isValidUtf8(data, length));
            checkClosePayload(std::string_view(data, length));
        }
        events.push_back({Event::Message, opCode, compressed, 0, std::string(data, length)});
        return true;
    }
    bool onPing(char *data, size_t length) {
        FUZZ_CHECK(!failed && !stopped);
        FUZZ_CHECK(length <= 125);
        events.push_back({Event::Ping, OpCode::Ping, false, 0, std::string(data, length)});
        return true;
    }
    bool onPong(char *data, size_t length) {
        FUZZ_CHECK(!failed && !stopped);
        FUZZ_CHECK(length <= 125);
        events.push_back({Event::Pong, OpCode::Pong, false, 0, std::string(data, length)});
        return true;
    }
    bool onClose(uint16_t code, std::string_view reason) {
        FUZZ_CHECK(!failed && !stopped);
        if (code == uws::CloseCode::NoStatus) {
            FUZZ_CHECK(reason.empty());
        } else {
            FUZZ_CHECK(uws::isValidCloseCode(code));
            FUZZ_CHECK(reason.size() <= 123);
            FUZZ_CHECK(uws::isValidUtf8(reason.data(), reason.size()));
        }
        checkClosePayload(reason);
        // WebSocket echoes a close with the code alone.
        checkClosePayload({});
        events.push_back({Event::Close, OpCode::Close, false, code, std::string(reason)});
        stopped = stopAtClose;
        return !stopAtClose;
    }
    void onProtocolError(uint16_t closeCode, const char *why) {
        FUZZ_CHECK(!failed && !stopped);
        FUZZ_CHECK(why != nullptr && why[0] != '\0');
        FUZZ_CHECK(closeCode == uws::CloseCode::ProtocolError || closeCode == uws::CloseCode::InvalidPayload ||
                   closeCode == uws::CloseCode::MessageTooBig);
        events.push_back({Event::ProtocolError, OpCode::Continuation, false, closeCode, {}});
        failed = true;
    }
};

struct Settings {
    size_t maxPayloadLength;
    bool compressionNegotiated;
    bool stopAtClose;
};

// Feeds stream in chunks of the given sizes (cycled; empty: in one read) until the parser stops.
std::vector<Event> run(const Settings &settings, std::string_view stream, const std::vector<size_t> &chunkSizes) {
    uws::WebSocketParser parser;
    parser.maxPayloadLength = settings.maxPayloadLength;
    parser.compressionNegotiated = settings.compressionNegotiated;
    RecordingSink sink;
    sink.maxPayloadLength = settings.maxPayloadLength;
    sink.compressionNegotiated = settings.compressionNegotiated;
    sink.stopAtClose = settings.stopAtClose;

    size_t offset = 0;
    for (size_t i = 0; offset < stream.size(); i++) {
        size_t length = chunkSizes.empty() ? stream.size() : chunkSizes[i % chunkSizes.size()];
        if (length > stream.size() - offset) length = stream.size() - offset;
        std::unique_ptr<char[]> chunk = fuzz::copyOf(stream.data() + offset, length);
        offset += length;
        bool goOn = parser.consume(chunk.get(), length, sink);
        FUZZ_CHECK(goOn == !(sink.failed || sink.stopped));
        FUZZ_CHECK(parser.bufferedMessageBytes() <= settings.maxPayloadLength);
        if (!goOn) break;
    }
    return sink.events;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz::ByteReader input(data, size);
    const uint8_t flags = input.byte();
    const Settings settings{kMaxPayloadLengths[(flags >> 1) & 3], (flags & 1) != 0, (flags & 8) != 0};
    std::vector<size_t> chunkSizes;
    for (unsigned n = input.byte() & 7; n > 0; n--) chunkSizes.push_back(size_t(input.byte()) + 1);
    const std::string_view stream = input.rest();

    std::vector<Event> chunked = run(settings, stream, chunkSizes);
    if (!chunkSizes.empty()) {
        // Where reads split the stream is not the peer's choice: it must not change the events.
        std::vector<Event> whole = run(settings, stream, {});
        FUZZ_CHECK(chunked == whole);
    }
    return 0;
}
