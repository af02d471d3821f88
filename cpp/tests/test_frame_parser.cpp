// WebSocketParser and the framing helpers, by feeding client frames built here and recording
// the sink's events. Every stream is fed whole, a byte at a time and in seeded random pieces,
// and must give the same events each way: where reads split the bytes is not the peer's choice.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "uws/Utf8.h"
#include "uws/WebSocketParser.h"

namespace {

using uws::OpCode;

// ---- a client-side encoder --------------------------------------------------------------

constexpr uint8_t kFin = 0x80;
constexpr uint8_t kRsv1 = 0x40;
constexpr uint8_t kRsv2 = 0x20;
constexpr uint8_t kRsv3 = 0x10;
constexpr uint8_t kMask[4] = {0x37, 0xFA, 0x21, 0x3D}; // RFC 6455 5.7's example key

constexpr uint8_t op(OpCode opCode) { return uint8_t(opCode); }

// A header declaring payloadLength in the shortest form, masked unless told otherwise.
std::string header(uint8_t firstByte, uint64_t payloadLength, bool masked = true) {
    std::string out(1, char(firstByte));
    const uint8_t maskBit = masked ? 0x80 : 0;
    if (payloadLength < 126) {
        out += char(maskBit | payloadLength);
    } else if (payloadLength <= 0xFFFF) {
        out += char(maskBit | 126);
        out += char(payloadLength >> 8);
        out += char(payloadLength);
    } else {
        out += char(maskBit | 127);
        for (int shift = 56; shift >= 0; shift -= 8) {
            out += char(payloadLength >> shift);
        }
    }
    if (masked) {
        out.append(reinterpret_cast<const char *>(kMask), 4);
    }
    return out;
}

std::string frame(uint8_t firstByte, const std::string &payload, bool masked = true) {
    std::string out = header(firstByte, payload.size(), masked);
    for (size_t i = 0; i < payload.size(); i++) {
        out += masked ? char(payload[i] ^ kMask[i & 3]) : payload[i];
    }
    return out;
}

std::string closePayload(uint16_t code, const std::string &reason = "") {
    return std::string{char(code >> 8), char(code & 0xFF)} + reason;
}

std::string text(size_t length) {
    std::string out;
    for (size_t i = 0; i < length; i++) {
        out += char('a' + i % 26);
    }
    return out;
}

std::string binary(size_t length) {
    std::string out;
    for (size_t i = 0; i < length; i++) {
        out += char((i * 167 + 13) & 0xFF); // all byte values, and not valid UTF-8
    }
    return out;
}

const std::string kKosme = "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"; // "κόσμε"

// ---- a recording sink -------------------------------------------------------------------

struct Event {
    enum Kind { Message, Ping, Pong, Close, Error } kind;
    OpCode opCode = OpCode::Continuation;
    bool compressed = false;
    std::string data;   // payload, or close reason
    uint16_t code = 0;  // close code, or the protocol error's close code
    std::string why;    // the protocol error's text: shown, not compared

    bool operator==(const Event &other) const {
        return kind == other.kind && opCode == other.opCode && compressed == other.compressed &&
               data == other.data && code == other.code;
    }
};

std::ostream &operator<<(std::ostream &out, const Event &event) {
    static const char *kinds[] = {"message", "ping", "pong", "close", "error"};
    out << kinds[event.kind];
    if (event.kind == Event::Message) {
        out << " opcode " << int(event.opCode) << (event.compressed ? " compressed" : "");
    }
    if (event.kind == Event::Close || event.kind == Event::Error) {
        out << " " << event.code;
    }
    if (event.kind == Event::Error) {
        return out << " (" << event.why << ")";
    }
    const size_t shown = event.data.size() < 24 ? event.data.size() : 24;
    out << " " << event.data.size() << " bytes " << check::quote(std::string_view(event.data).substr(0, shown));
    return out << (shown < event.data.size() ? "..." : "");
}

Event message(OpCode opCode, std::string payload, bool compressed = false) {
    return {Event::Message, opCode, compressed, std::move(payload), 0, ""};
}
Event ping(std::string payload) { return {Event::Ping, OpCode::Continuation, false, std::move(payload), 0, ""}; }
Event pong(std::string payload) { return {Event::Pong, OpCode::Continuation, false, std::move(payload), 0, ""}; }
Event closed(uint16_t code, std::string reason = "") {
    return {Event::Close, OpCode::Continuation, false, std::move(reason), code, ""};
}
Event refused(uint16_t code) { return {Event::Error, OpCode::Continuation, false, "", code, ""}; }

struct RecordingSink {
    std::vector<Event> events;
    // Stop (return false) from the callback that records this many events; 0: never.
    size_t stopAtEvent = 0;

    bool record(Event event) {
        events.push_back(std::move(event));
        return events.size() != stopAtEvent;
    }
    bool onMessage(char *data, size_t length, OpCode opCode, bool compressed) {
        return record(message(opCode, std::string(data, length), compressed));
    }
    bool onPing(char *data, size_t length) { return record(ping(std::string(data, length))); }
    bool onPong(char *data, size_t length) { return record(pong(std::string(data, length))); }
    bool onClose(uint16_t code, std::string_view reason) { return record(closed(code, std::string(reason))); }
    void onProtocolError(uint16_t closeCode, const char *why) {
        events.push_back({Event::Error, OpCode::Continuation, false, "", closeCode, why});
    }
};

// ---- feeding ----------------------------------------------------------------------------

struct Config {
    size_t maxPayloadLength = 16 * 1024 * 1024;
    bool compressionNegotiated = false;
    size_t stopAtEvent = 0;
};

const Config kCompression{16 * 1024 * 1024, true};

struct Outcome {
    std::vector<Event> events;
    bool stopped = false; // consume() returned false
};

// Feeds wire in pieces of the given sizes, each in a heap buffer of exactly that size so that
// ASan sees any read past a read's end; stops at the first consume() that returns false.
Outcome feed(const std::string &wire, const std::vector<size_t> &pieces, const Config &config) {
    uws::WebSocketParser parser;
    parser.maxPayloadLength = config.maxPayloadLength;
    parser.compressionNegotiated = config.compressionNegotiated;
    RecordingSink sink;
    sink.stopAtEvent = config.stopAtEvent;
    Outcome outcome;
    size_t offset = 0;
    for (size_t size : pieces) {
        std::unique_ptr<char[]> buffer(new char[size ? size : 1]);
        wire.copy(buffer.get(), size, offset);
        offset += size;
        if (!parser.consume(buffer.get(), size, sink)) {
            outcome.stopped = true;
            break;
        }
    }
    outcome.events = std::move(sink.events);
    return outcome;
}

std::vector<size_t> whole(size_t total) { return {total}; }

std::vector<size_t> bytewise(size_t total) { return std::vector<size_t>(total, 1); }

std::vector<size_t> randomPieces(size_t total, size_t maxPiece, unsigned seed) {
    std::mt19937 random(seed);
    std::uniform_int_distribution<size_t> pieceSize(1, maxPiece);
    std::vector<size_t> pieces;
    while (total > 0) {
        size_t size = std::min(pieceSize(random), total);
        pieces.push_back(size);
        total -= size;
    }
    return pieces;
}

struct Split {
    const char *name;
    std::vector<size_t> pieces;
};

std::vector<Split> splitsOf(size_t total) {
    return {
        {"whole", whole(total)},
        {"1-byte pieces", bytewise(total)},
        {"random pieces up to 3", randomPieces(total, 3, 1)},
        {"random pieces up to 16", randomPieces(total, 16, 2)},
        {"random pieces up to 200", randomPieces(total, 200, 3)},
        {"random pieces up to 70000", randomPieces(total, 70000, 4)},
        {"empty reads between bytes", [&] {
             std::vector<size_t> pieces;
             for (size_t i = 0; i < total; i++) {
                 pieces.push_back(0);
                 pieces.push_back(1);
             }
             return pieces;
         }()},
    };
}

// Every split of wire gives exactly the expected events; consume() stops exactly when the last
// event is a protocol error or the sink asked to stop.
void expectEvents(const std::string &wire, const std::vector<Event> &expected, const Config &config = {}) {
    const bool expectStop =
        (!expected.empty() && expected.back().kind == Event::Error) || (config.stopAtEvent != 0);
    for (const Split &split : splitsOf(wire.size())) {
        check::Scope scope(split.name);
        Outcome outcome = feed(wire, split.pieces, config);
        CHECK_EQ(outcome.events, expected);
        CHECK_EQ(outcome.stopped, expectStop);
    }
}

// ---- messages ---------------------------------------------------------------------------

void testMessagesAtEveryLengthClass() {
    const size_t lengths[] = {0, 1, 125, 126, 127, 65535, 65536, 70001};
    for (size_t length : lengths) {
        check::Scope scope("payload length ", length);
        expectEvents(frame(kFin | op(OpCode::Text), text(length)), {message(OpCode::Text, text(length))});
        expectEvents(frame(kFin | op(OpCode::Binary), binary(length)), {message(OpCode::Binary, binary(length))});
    }
}

// The encoder's own length forms, so that the test above covers 7-, 16- and 64-bit lengths.
void testEncoderLengthForms() {
    CHECK_EQ(header(kFin | 1, 125).size(), size_t(2 + 4));
    CHECK_EQ(header(kFin | 1, 126).size(), size_t(4 + 4));
    CHECK_EQ(header(kFin | 1, 65535).size(), size_t(4 + 4));
    CHECK_EQ(header(kFin | 1, 65536).size(), size_t(10 + 4));
}

void testManyFramesInOneStream() {
    std::string wire = frame(kFin | op(OpCode::Text), "hello") + frame(kFin | op(OpCode::Ping), "are you there") +
                       frame(kFin | op(OpCode::Binary), binary(300)) + frame(kFin | op(OpCode::Pong), "") +
                       frame(kFin | op(OpCode::Text), kKosme) + frame(kFin | op(OpCode::Ping), text(125)) +
                       frame(kFin | op(OpCode::Close), closePayload(1000, "bye"));
    expectEvents(wire, {message(OpCode::Text, "hello"), ping("are you there"), message(OpCode::Binary, binary(300)),
                        pong(""), message(OpCode::Text, kKosme), ping(text(125)), closed(1000, "bye")});
}

void testFragmentedMessageWithInterleavedControlFrames() {
    std::string wire = frame(op(OpCode::Text), "Hel") + frame(kFin | op(OpCode::Ping), "p1") +
                       frame(op(OpCode::Continuation), "lo, ") + frame(kFin | op(OpCode::Pong), "p2") +
                       frame(op(OpCode::Continuation), "") + frame(kFin | op(OpCode::Ping), "") +
                       frame(kFin | op(OpCode::Continuation), "world");
    expectEvents(wire, {ping("p1"), pong("p2"), ping(""), message(OpCode::Text, "Hello, world")});

    // A code point split between fragments is fine; so are empty first and last fragments.
    const std::string kosmeSplit = frame(op(OpCode::Text), "") + frame(op(OpCode::Continuation), kKosme.substr(0, 3)) +
                                   frame(op(OpCode::Continuation), kKosme.substr(3, 1)) +
                                   frame(op(OpCode::Continuation), kKosme.substr(4)) +
                                   frame(kFin | op(OpCode::Continuation), "");
    expectEvents(kosmeSplit, {message(OpCode::Text, kKosme)});

    const std::string big = binary(70000);
    std::string binaryWire = frame(op(OpCode::Binary), big.substr(0, 30000)) +
                             frame(kFin | op(OpCode::Ping), "mid") +
                             frame(kFin | op(OpCode::Continuation), big.substr(30000));
    // Then an unfragmented message right after: the fragmented one must have been closed.
    binaryWire += frame(kFin | op(OpCode::Text), "next");
    expectEvents(binaryWire, {ping("mid"), message(OpCode::Binary, big), message(OpCode::Text, "next")});
}

void testBufferedMessageBytes() {
    uws::WebSocketParser parser;
    RecordingSink sink;
    std::string first = frame(op(OpCode::Binary), binary(40));
    std::string second = frame(kFin | op(OpCode::Continuation), binary(2));
    CHECK(parser.consume(first.data(), first.size(), sink));
    CHECK_EQ(parser.bufferedMessageBytes(), size_t(40));
    CHECK(parser.consume(second.data(), second.size(), sink));
    CHECK_EQ(parser.bufferedMessageBytes(), size_t(0));
    CHECK_EQ(sink.events.size(), size_t(1));
}

// ---- close frames -----------------------------------------------------------------------

void testCloseFrames() {
    expectEvents(frame(kFin | op(OpCode::Close), ""), {closed(uws::CloseCode::NoStatus)});
    for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
                          4999}) {
        check::Scope scope("close code ", code);
        expectEvents(frame(kFin | op(OpCode::Close), closePayload(code)), {closed(code)});
    }
    expectEvents(frame(kFin | op(OpCode::Close), closePayload(1000, kKosme)), {closed(1000, kKosme)});
    const std::string longestReason = text(123);
    expectEvents(frame(kFin | op(OpCode::Close), closePayload(4999, longestReason)), {closed(4999, longestReason)});
}

// ---- protocol errors --------------------------------------------------------------------

struct ErrorCase {
    ErrorCase(std::string name, std::string wire, std::vector<Event> expected, Config config = {})
        : name(std::move(name)), wire(std::move(wire)), expected(std::move(expected)), config(config) {}

    std::string name;
    std::string wire;
    std::vector<Event> expected; // ends with the error
    Config config;
};

std::vector<ErrorCase> errorCases() {
    using namespace uws::CloseCode;
    std::vector<ErrorCase> cases = {
        {"unmasked text", frame(kFin | op(OpCode::Text), "hi", false), {refused(ProtocolError)}},
        {"unmasked ping", frame(kFin | op(OpCode::Ping), "", false), {refused(ProtocolError)}},
        {"unmasked after a good frame",
         frame(kFin | op(OpCode::Text), "ok") + frame(kFin | op(OpCode::Binary), "x", false),
         {message(OpCode::Text, "ok"), refused(ProtocolError)}},
        {"RSV1 without compression", frame(kFin | kRsv1 | op(OpCode::Text), "hi"), {refused(ProtocolError)}},
        {"RSV2", frame(kFin | kRsv2 | op(OpCode::Text), "hi"), {refused(ProtocolError)}},
        {"RSV3", frame(kFin | kRsv3 | op(OpCode::Binary), "hi"), {refused(ProtocolError)}},
        {"RSV2 with compression", frame(kFin | kRsv2 | op(OpCode::Text), "hi"), {refused(ProtocolError)}, kCompression},
        {"RSV1 on a ping with compression", frame(kFin | kRsv1 | op(OpCode::Ping), ""), {refused(ProtocolError)},
         kCompression},
        {"RSV1 on a continuation with compression",
         frame(kRsv1 | op(OpCode::Text), "a") + frame(kFin | kRsv1 | op(OpCode::Continuation), "b"),
         {refused(ProtocolError)}, kCompression},
        {"ping over 125 bytes", frame(kFin | op(OpCode::Ping), text(126)), {refused(ProtocolError)}},
        {"pong over 125 bytes, header only", header(kFin | op(OpCode::Pong), 70000), {refused(ProtocolError)}},
        {"close over 125 bytes", frame(kFin | op(OpCode::Close), closePayload(1000, text(124))),
         {refused(ProtocolError)}},
        {"fragmented ping", frame(op(OpCode::Ping), "a"), {refused(ProtocolError)}},
        {"fragmented close", frame(op(OpCode::Close), closePayload(1000)), {refused(ProtocolError)}},
        {"continuation without a start", frame(kFin | op(OpCode::Continuation), "x"), {refused(ProtocolError)}},
        {"non-final continuation without a start", frame(op(OpCode::Continuation), "x"), {refused(ProtocolError)}},
        {"continuation after a finished message",
         frame(kFin | op(OpCode::Text), "a") + frame(kFin | op(OpCode::Continuation), "b"),
         {message(OpCode::Text, "a"), refused(ProtocolError)}},
        {"text inside a fragmented message",
         frame(op(OpCode::Text), "a") + frame(kFin | op(OpCode::Text), "b"), {refused(ProtocolError)}},
        {"binary inside a fragmented message",
         frame(op(OpCode::Binary), "a") + frame(kFin | op(OpCode::Ping), "p") + frame(op(OpCode::Binary), "b"),
         {ping("p"), refused(ProtocolError)}},
        {"64-bit length with the top bit set",
         std::string("\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x00", 10) +
             std::string(reinterpret_cast<const char *>(kMask), 4),
         {refused(ProtocolError)}},
        {"close with a 1-byte payload", frame(kFin | op(OpCode::Close), "\x03"), {refused(ProtocolError)}},

        {"invalid UTF-8 in a text frame", frame(kFin | op(OpCode::Text), "ab\xFF" "cd"), {refused(InvalidPayload)}},
        {"surrogate in a text frame", frame(kFin | op(OpCode::Text), "\xED\xA0\x80"), {refused(InvalidPayload)}},
        {"text frame ending inside a code point", frame(kFin | op(OpCode::Text), "abc\xE2\x82"),
         {refused(InvalidPayload)}},
        {"big text frame with a bad byte", frame(kFin | op(OpCode::Text), text(70000) + "\xC0\x80"),
         {refused(InvalidPayload)}},
        {"code point broken across fragments",
         frame(op(OpCode::Text), "ok\xCE") + frame(kFin | op(OpCode::Continuation), "A"), {refused(InvalidPayload)}},
        {"text message ending inside a code point",
         frame(op(OpCode::Text), "ok") + frame(kFin | op(OpCode::Continuation), "\xF0\x9F\x98"),
         {refused(InvalidPayload)}},
        {"invalid UTF-8 in a close reason", frame(kFin | op(OpCode::Close), closePayload(1000, "bad \xFF")),
         {refused(InvalidPayload)}},
        {"close reason ending inside a code point", frame(kFin | op(OpCode::Close), closePayload(1000, "\xCE")),
         {refused(InvalidPayload)}},

        // maxPayloadLength 1000: refused from the header, before any payload is sent.
        {"frame over the limit, header only", header(kFin | op(OpCode::Binary), 1001), {refused(MessageTooBig)},
         {1000, false}},
        {"text frame over the limit, header only", header(kFin | op(OpCode::Text), 1001), {refused(MessageTooBig)},
         {1000, false}},
        {"fragments over the limit, header only",
         frame(op(OpCode::Binary), binary(600)) + frame(kFin | op(OpCode::Ping), "p") +
             frame(op(OpCode::Continuation), binary(300)) + header(kFin | op(OpCode::Continuation), 101),
         {ping("p"), refused(MessageTooBig)}, {1000, false}},
        {"first fragment over the limit, header only", header(op(OpCode::Text), 1001), {refused(MessageTooBig)},
         {1000, false}},
        {"default limit, header only", header(kFin | op(OpCode::Binary), 16 * 1024 * 1024 + 1),
         {refused(MessageTooBig)}},
        {"64-bit length, header only", header(kFin | op(OpCode::Binary), uint64_t(1) << 40), {refused(MessageTooBig)}},
        {"largest 64-bit length, header only", header(kFin | op(OpCode::Binary), (uint64_t(1) << 63) - 1),
         {refused(MessageTooBig)}},
    };

    // Fail fast: the error comes with the first bad fragment (or bytes), not at the message's end.
    cases.push_back({"first fragment with bad UTF-8, nothing after", frame(op(OpCode::Text), "ok\xFF"),
                     {refused(InvalidPayload)}});
    cases.push_back({"second fragment with bad UTF-8, nothing after",
                     frame(op(OpCode::Text), "fine ") + frame(op(OpCode::Continuation), "\xED\xBF\xBF more"),
                     {refused(InvalidPayload)}});
    std::string partialFrame = frame(kFin | op(OpCode::Text), "abc\xF5" + text(5000));
    partialFrame.resize(header(kFin | op(OpCode::Text), 5004).size() + 4);
    cases.push_back({"bad byte early in a frame still arriving", partialFrame, {refused(InvalidPayload)}});

    for (uint8_t opCode : {3, 4, 5, 6, 7, 11, 12, 13, 14, 15}) {
        cases.push_back({"opcode " + std::to_string(opCode), frame(kFin | opCode, "x"), {refused(ProtocolError)}});
        cases.push_back({"non-final opcode " + std::to_string(opCode), frame(opCode, ""), {refused(ProtocolError)}});
    }
    for (uint16_t code : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
        cases.push_back({"close code " + std::to_string(code), frame(kFin | op(OpCode::Close), closePayload(code)),
                         {refused(ProtocolError)}});
    }
    return cases;
}

void testProtocolErrors() {
    for (const ErrorCase &c : errorCases()) {
        check::Scope scope(c.name);
        expectEvents(c.wire, c.expected, c.config);
    }
}

void testLimitIsInclusive() {
    const Config limit{1000, false};
    expectEvents(frame(kFin | op(OpCode::Binary), binary(1000)), {message(OpCode::Binary, binary(1000))}, limit);
    expectEvents(frame(op(OpCode::Text), text(600)) + frame(kFin | op(OpCode::Continuation), text(400)),
                 {message(OpCode::Text, text(600) + text(400))}, limit);
    // Control frames are bounded by 125 bytes, not by the message limit.
    const Config tiny{10, false};
    expectEvents(frame(kFin | op(OpCode::Ping), text(100)), {ping(text(100))}, tiny);
    // Each message starts counting afresh.
    expectEvents(frame(op(OpCode::Binary), binary(700)) + frame(kFin | op(OpCode::Continuation), binary(300)) +
                     frame(kFin | op(OpCode::Binary), binary(1000)),
                 {message(OpCode::Binary, binary(700) + binary(300)), message(OpCode::Binary, binary(1000))}, limit);
}

void testBinaryIsNotValidated() {
    const std::string invalidUtf8 = "\xFF\xC0\x80\xED\xA0\x80\xF4\x90\x80\x80";
    expectEvents(frame(kFin | op(OpCode::Binary), invalidUtf8), {message(OpCode::Binary, invalidUtf8)});
    expectEvents(frame(kFin | op(OpCode::Ping), invalidUtf8), {ping(invalidUtf8)});
}

// With permessage-deflate negotiated, RSV1 marks a compressed message, which the sink validates
// after inflating: the parser must pass its bytes through untouched.
void testCompressedMessages() {
    const std::string deflated("\xF2\x48\xCD\xC9\xC9\x07\x00\xFF", 8);
    expectEvents(frame(kFin | kRsv1 | op(OpCode::Text), deflated), {message(OpCode::Text, deflated, true)},
                 kCompression);
    expectEvents(frame(kRsv1 | op(OpCode::Text), deflated.substr(0, 3)) +
                     frame(kFin | op(OpCode::Ping), "") +
                     frame(kFin | op(OpCode::Continuation), deflated.substr(3)),
                 {ping(""), message(OpCode::Text, deflated, true)}, kCompression);
    expectEvents(frame(kFin | op(OpCode::Text), "plain") + frame(kFin | kRsv1 | op(OpCode::Binary), deflated),
                 {message(OpCode::Text, "plain"), message(OpCode::Binary, deflated, true)}, kCompression);
}

void testSinkCanStopParsing() {
    const std::string wire = frame(kFin | op(OpCode::Text), "one") + frame(kFin | op(OpCode::Ping), "two") +
                             frame(kFin | op(OpCode::Text), "three");
    Config stopAtFirst;
    stopAtFirst.stopAtEvent = 1;
    expectEvents(wire, {message(OpCode::Text, "one")}, stopAtFirst);
    Config stopAtPing;
    stopAtPing.stopAtEvent = 2;
    expectEvents(wire, {message(OpCode::Text, "one"), ping("two")}, stopAtPing);
    Config stopAtClose;
    stopAtClose.stopAtEvent = 1;
    expectEvents(frame(kFin | op(OpCode::Close), closePayload(1000)) + frame(kFin | op(OpCode::Text), "after"),
                 {closed(1000)}, stopAtClose);
}

// ---- helpers ----------------------------------------------------------------------------

void testUnmaskInPlace() {
    const uint8_t mask[4] = {0xA1, 0x02, 0xF3, 0x5C};
    int mismatches = 0;
    for (unsigned offset = 0; offset < 4; offset++) {
        for (size_t length = 0; length <= 40; length++) {
            // And every alignment of the data, since the fast path moves 8 bytes at a time.
            for (size_t alignment = 0; alignment < 8; alignment++) {
                std::vector<char> original(alignment + length);
                for (size_t i = 0; i < original.size(); i++) {
                    original[i] = char(i * 31 + length);
                }
                std::vector<char> actual = original;
                bool ascii = uws::unmaskInPlace(actual.data() + alignment, length, mask, offset);
                std::vector<char> expected = original;
                bool expectedAscii = true;
                for (size_t i = 0; i < length; i++) {
                    expected[alignment + i] = char(original[alignment + i] ^ mask[(offset + i) % 4]);
                    expectedAscii = expectedAscii && uint8_t(expected[alignment + i]) < 0x80;
                }
                if (actual != expected || ascii != expectedAscii) {
                    mismatches++;
                    check::Scope scope("offset ", offset, " length ", length, " alignment ", alignment);
                    CHECK_EQ(actual, expected);
                    CHECK_EQ(ascii, expectedAscii);
                }
            }
        }
    }
    CHECK_EQ(mismatches, 0);

    // The ASCII answer for one byte of 0x80 or above at each place (the rest ASCII), unmasked
    // from every offset: false; the same text all ASCII: true.
    for (unsigned offset = 0; offset < 4; offset++) {
        for (size_t length = 1; length <= 40; length++) {
            for (size_t high = 0; high <= length; high++) { // high == length: none
                std::vector<char> plain(length, 'a');
                if (high < length) plain[high] = char(0x80 | (high & 0x7F));
                std::vector<char> masked = plain;
                for (size_t i = 0; i < length; i++) masked[i] = char(plain[i] ^ mask[(offset + i) % 4]);
                bool ascii = uws::unmaskInPlace(masked.data(), length, mask, offset);
                if (masked != plain || ascii != (high == length)) {
                    mismatches++;
                    check::Scope scope("offset ", offset, " length ", length, " high byte at ", high);
                    CHECK_EQ(masked, plain);
                    CHECK_EQ(ascii, high == length);
                }
            }
        }
    }
    CHECK_EQ(mismatches, 0);

    // Unmasking in two pieces, the second at the first's end offset, equals one pass.
    std::string data = binary(37);
    std::string onePass = data;
    uws::unmaskInPlace(onePass.data(), onePass.size(), mask, 0);
    for (size_t cut = 0; cut <= data.size(); cut++) {
        check::Scope scope("cut at ", cut);
        std::string twoPasses = data;
        uws::unmaskInPlace(twoPasses.data(), cut, mask, 0);
        uws::unmaskInPlace(twoPasses.data() + cut, twoPasses.size() - cut, mask, unsigned(cut & 3));
        CHECK_EQ(twoPasses, onePass);
    }
}

std::vector<int> headerBytes(OpCode opCode, size_t length, bool fin = true, bool compressed = false) {
    char out[uws::kMaxServerHeaderSize + 1];
    out[uws::kMaxServerHeaderSize] = 0x55; // must stay untouched
    size_t size = uws::formatFrameHeader(out, opCode, length, fin, compressed);
    CHECK(size <= uws::kMaxServerHeaderSize);
    CHECK_EQ(int(out[uws::kMaxServerHeaderSize]), 0x55);
    std::vector<int> bytes;
    for (size_t i = 0; i < size && i < uws::kMaxServerHeaderSize; i++) {
        bytes.push_back(uint8_t(out[i]));
    }
    return bytes;
}

void testFormatFrameHeader() {
    using Bytes = std::vector<int>;
    CHECK_EQ(headerBytes(OpCode::Text, 0), (Bytes{0x81, 0x00}));
    CHECK_EQ(headerBytes(OpCode::Binary, 125), (Bytes{0x82, 0x7D}));
    CHECK_EQ(headerBytes(OpCode::Text, 126), (Bytes{0x81, 0x7E, 0x00, 0x7E}));
    CHECK_EQ(headerBytes(OpCode::Binary, 300), (Bytes{0x82, 0x7E, 0x01, 0x2C}));
    CHECK_EQ(headerBytes(OpCode::Binary, 65535), (Bytes{0x82, 0x7E, 0xFF, 0xFF}));
    CHECK_EQ(headerBytes(OpCode::Binary, 65536), (Bytes{0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}));
    CHECK_EQ(headerBytes(OpCode::Text, 0x12345678), (Bytes{0x81, 0x7F, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78}));
    if constexpr (sizeof(size_t) == 8) {
        CHECK_EQ(headerBytes(OpCode::Binary, size_t(0x0102030405060708ULL)),
                 (Bytes{0x82, 0x7F, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}));
    }
    CHECK_EQ(headerBytes(OpCode::Text, 5, false), (Bytes{0x01, 0x05}));
    CHECK_EQ(headerBytes(OpCode::Continuation, 5, true), (Bytes{0x80, 0x05}));
    CHECK_EQ(headerBytes(OpCode::Text, 5, true, true), (Bytes{0xC1, 0x05}));
    CHECK_EQ(headerBytes(OpCode::Close, 2), (Bytes{0x88, 0x02}));
    CHECK_EQ(headerBytes(OpCode::Ping, 0), (Bytes{0x89, 0x00}));
    CHECK_EQ(headerBytes(OpCode::Pong, 125), (Bytes{0x8A, 0x7D}));
}

void testFormatClosePayload() {
    char out[125];
    size_t size = uws::formatClosePayload(out, 1000, "bye");
    CHECK_EQ(std::string(out, size), std::string("\x03\xE8" "bye"));
    size = uws::formatClosePayload(out, 4999, "");
    CHECK_EQ(std::string(out, size), std::string("\x13\x87"));

    size = uws::formatClosePayload(out, 1001, text(200));
    CHECK_EQ(size, size_t(125));
    CHECK_EQ(std::string(out + 2, size - 2), text(123));

    // A reason cut at 123 bytes loses the code point the cut would split, never half of it.
    for (size_t asciiBefore = 118; asciiBefore <= 123; asciiBefore++) {
        check::Scope scope("ascii before multibyte ", asciiBefore);
        const std::string reason = text(asciiBefore) + "\xF0\x9F\x98\x80" + "tail";
        size = uws::formatClosePayload(out, 1000, reason);
        CHECK(size <= 125);
        CHECK(uws::isValidUtf8(out + 2, size - 2));
        const bool emojiFits = asciiBefore + 4 <= 123;
        const size_t kept = emojiFits ? std::min(asciiBefore + 8, size_t(123)) : asciiBefore;
        CHECK_EQ(size, 2 + kept);
        CHECK_EQ(std::string(out + 2, size - 2), reason.substr(0, size - 2));
    }

    // What the server formats, the parser accepts.
    const std::string reason = text(121) + kKosme;
    size = uws::formatClosePayload(out, 1000, reason);
    const std::string payload(out, size);
    expectEvents(frame(kFin | op(OpCode::Close), payload), {closed(1000, payload.substr(2))});
}

void testIsValidCloseCode() {
    int disagreements = 0;
    for (uint32_t code = 0; code <= 0xFFFF; code++) {
        bool expected = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                        (code >= 3000 && code <= 4999);
        disagreements += expected != uws::isValidCloseCode(uint16_t(code));
    }
    CHECK_EQ(disagreements, 0);
    CHECK(!uws::isValidCloseCode(uws::CloseCode::NoStatus));
    CHECK(!uws::isValidCloseCode(uws::CloseCode::Abnormal));
}

} // namespace

int main() {
    RUN_TEST(testEncoderLengthForms);
    RUN_TEST(testMessagesAtEveryLengthClass);
    RUN_TEST(testManyFramesInOneStream);
    RUN_TEST(testFragmentedMessageWithInterleavedControlFrames);
    RUN_TEST(testBufferedMessageBytes);
    RUN_TEST(testCloseFrames);
    RUN_TEST(testProtocolErrors);
    RUN_TEST(testLimitIsInclusive);
    RUN_TEST(testBinaryIsNotValidated);
    RUN_TEST(testCompressedMessages);
    RUN_TEST(testSinkCanStopParsing);
    RUN_TEST(testUnmaskInPlace);
    RUN_TEST(testFormatFrameHeader);
    RUN_TEST(testFormatClosePayload);
    RUN_TEST(testIsValidCloseCode);
    return check::report("test_frame_parser");
}
