// RFC 6455 framing without I/O: bytes in, events out, frames formatted into buffers.
//
// WebSocketParser works in place on the caller's buffer: it unmasks payloads where they lie
// and hands out views, so a small unfragmented message reaches the sink without a copy.
// Only a message split over frames or reads is gathered into the parser's own buffer, which
// never grows past maxPayloadLength (checked from each frame's header before its payload
// arrives).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "uws/Utf8.h"

namespace uws {

enum class OpCode : uint8_t {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
};

namespace CloseCode {
constexpr uint16_t Normal = 1000;
constexpr uint16_t GoingAway = 1001;
constexpr uint16_t ProtocolError = 1002;
constexpr uint16_t UnsupportedData = 1003;
constexpr uint16_t NoStatus = 1005;   // never on the wire: "the close frame had no code"
constexpr uint16_t Abnormal = 1006;   // never on the wire: "the connection dropped"
constexpr uint16_t InvalidPayload = 1007;
constexpr uint16_t PolicyViolation = 1008;
constexpr uint16_t MessageTooBig = 1009;
constexpr uint16_t InternalError = 1011;
} // namespace CloseCode

// Codes a peer may put in a close frame (RFC 6455 7.4 and the IANA registry).
inline bool isValidCloseCode(uint16_t code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

// XORs len bytes with the 4-byte mask, starting at mask position offset; 16 bytes per step,
// then 8 and 4, then single bytes. Returns whether every unmasked byte is ASCII (below 0x80),
// found in the same pass: a text message of ASCII (most JSON is) needs no UTF-8 check then.
inline bool unmaskInPlace(char *data, size_t length, const uint8_t mask[4], unsigned offset) {
    uint8_t rotated[4] = {mask[offset & 3], mask[(offset + 1) & 3], mask[(offset + 2) & 3], mask[(offset + 3) & 3]};
    uint32_t mask32;
    std::memcpy(&mask32, rotated, 4);
    const uint64_t mask64 = (uint64_t(mask32) << 32) | mask32;
    uint64_t seen = 0; // every unmasked byte ORed into its lane
    size_t i = 0;
    for (; i + 16 <= length; i += 16) {
        uint64_t a, b;
        std::memcpy(&a, data + i, 8);
        std::memcpy(&b, data + i + 8, 8);
        a ^= mask64;
        b ^= mask64;
        std::memcpy(data + i, &a, 8);
        std::memcpy(data + i + 8, &b, 8);
        seen |= a | b;
    }
    if (i + 8 <= length) {
        uint64_t a;
        std::memcpy(&a, data + i, 8);
        a ^= mask64;
        std::memcpy(data + i, &a, 8);
        seen |= a;
        i += 8;
    }
    if (i + 4 <= length) {
        uint32_t a;
        std::memcpy(&a, data + i, 4);
        a ^= mask32;
        std::memcpy(data + i, &a, 4);
        seen |= a;
        i += 4;
    }
    for (; i < length; i++) {
        data[i] = char(data[i] ^ rotated[i & 3]);
        seen |= uint8_t(data[i]);
    }
    return (seen & 0x8080808080808080ULL) == 0;
}

// Largest frame header a server writes: 2 + 8 bytes (servers never mask).
constexpr size_t kMaxServerHeaderSize = 10;

// Writes an unmasked frame header; returns its size (2, 4 or 10).
inline size_t formatFrameHeader(char *out, OpCode opCode, size_t payloadLength, bool fin = true,
                                bool compressed = false) {
    out[0] = char((fin ? 0x80 : 0) | (compressed ? 0x40 : 0) | uint8_t(opCode));
    if (payloadLength < 126) {
        out[1] = char(payloadLength);
        return 2;
    }
    if (payloadLength <= 0xFFFF) {
        out[1] = 126;
        out[2] = char(payloadLength >> 8);
        out[3] = char(payloadLength);
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) {
        out[2 + i] = char(uint64_t(payloadLength) >> (56 - 8 * i));
    }
    return 10;
}

// A close payload: 2-byte code then the reason cut to fit 125 bytes. Returns its size.
size_t formatClosePayload(char out[125], uint16_t code, std::string_view reason);

// The parser's per-connection state. Sink is any type with:
//   bool onMessage(char *data, size_t length, OpCode opCode, bool compressed);
//   bool onPing(char *data, size_t length);
//   bool onPong(char *data, size_t length);
//   bool onClose(uint16_t code, std::string_view reason);   // code 1005 for an empty close
//   void onProtocolError(uint16_t closeCode, const char *why);
// A callback returning false stops consume() (the connection is closing).
class WebSocketParser {
public:
    size_t maxPayloadLength = 16 * 1024 * 1024;
    // With permessage-deflate, RSV1 on a message's first frame marks it compressed; the sink
    // inflates it and validates UTF-8 afterwards.
    bool compressionNegotiated = false;

    // Returns false when parsing stopped: a protocol error was reported or the sink said stop.
    template <class Sink> bool consume(char *data, size_t length, Sink &sink);

    // Bytes held for a message in progress (for memory accounting).
    size_t bufferedMessageBytes() const { return message_.size(); }

private:
    template <class Sink> bool startFrame(const uint8_t *header, char *&data, size_t &length, Sink &sink);
    template <class Sink> bool finishFrame(Sink &sink);
    template <class Sink> bool dispatchControl(OpCode opCode, char *payload, size_t length, Sink &sink);
    template <class Sink> bool fail(Sink &sink, uint16_t code, const char *why) {
        sink.onProtocolError(code, why);
        return false;
    }

    static size_t headerSize(uint8_t secondByte) {
        uint8_t length7 = secondByte & 0x7F;
        return 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + ((secondByte & 0x80) ? 4 : 0);
    }

    uint64_t remaining_ = 0;  // payload bytes of the current frame still to come
    uint8_t mask_[4] = {};
    uint8_t maskOffset_ = 0;
    OpCode frameOpCode_ = OpCode::Continuation;
    bool frameFin_ = false;
    bool inPayload_ = false;
    uint8_t headerLength_ = 0; // bytes of a header split across reads, kept in header_
    uint8_t header_[14] = {};

    OpCode messageOpCode_ = OpCode::Continuation; // Continuation: no fragmented message open
    bool messageCompressed_ = false;
    Utf8Validator utf8_;
    std::string message_;
    std::string control_;
};

template <class Sink> bool WebSocketParser::consume(char *data, size_t length, Sink &sink) {
    while (length > 0) {
        if (inPayload_) {
            size_t chunk = remaining_ < length ? size_t(remaining_) : length;
            unmaskInPlace(data, chunk, mask_, maskOffset_);
            maskOffset_ = uint8_t((maskOffset_ + chunk) & 3);
            if (uint8_t(frameOpCode_) >= 8) {
                control_.append(data, chunk);
            } else {
                if (messageOpCode_ == OpCode::Text && !messageCompressed_ &&
                    !utf8_.feed(reinterpret_cast<unsigned char *>(data), chunk)) {
                    return fail(sink, CloseCode::InvalidPayload, "invalid UTF-8 in text message");
                }
                message_.append(data, chunk);
            }
            data += chunk;
            length -= chunk;
            remaining_ -= chunk;
            if (remaining_ == 0 && !finishFrame(sink)) {
                return false;
            }
            continue;
        }

        const uint8_t *header;
        if (headerLength_ == 0 && length >= 2 && length >= headerSize(uint8_t(data[1]))) {
            header = reinterpret_cast<const uint8_t *>(data);
            size_t size = headerSize(header[1]);
            data += size;
            length -= size;
        } else {
            while (headerLength_ < 2 && length > 0) {
                header_[headerLength_++] = uint8_t(*data++);
                length--;
            }
            if (headerLength_ < 2) {
                return true;
            }
            size_t size = headerSize(header_[1]);
            while (headerLength_ < size && length > 0) {
                header_[headerLength_++] = uint8_t(*data++);
                length--;
            }
            if (headerLength_ < size) {
                return true;
            }
            headerLength_ = 0;
            header = header_;
        }
        if (!startFrame(header, data, length, sink)) {
            return false;
        }
    }
    return true;
}

template <class Sink>
bool WebSocketParser::startFrame(const uint8_t *header, char *&data, size_t &length, Sink &sink) {
    const bool fin = header[0] & 0x80;
    const uint8_t reserved = header[0] & 0x70;
    const OpCode opCode = OpCode(header[0] & 0x0F);
    const bool isControl = uint8_t(opCode) >= 8;
    if (!(header[1] & 0x80)) {
        return fail(sink, CloseCode::ProtocolError, "unmasked client frame");
    }
    uint64_t payloadLength = header[1] & 0x7F;
    const uint8_t *maskKey = header + 2;
    if (payloadLength == 126) {
        payloadLength = (uint64_t(header[2]) << 8) | header[3];
        maskKey = header + 4;
    } else if (payloadLength == 127) {
        payloadLength = 0;
        for (int i = 0; i < 8; i++) {
            payloadLength = (payloadLength << 8) | header[2 + i];
        }
        if (payloadLength >> 63) {
            return fail(sink, CloseCode::ProtocolError, "64-bit payload length with the top bit set");
        }
        maskKey = header + 10;
    }

    bool compressed = false;
    if (isControl) {
        if (opCode != OpCode::Close && opCode != OpCode::Ping && opCode != OpCode::Pong) {
            return fail(sink, CloseCode::ProtocolError, "unknown opcode");
        }
        if (reserved) {
            return fail(sink, CloseCode::ProtocolError, "reserved bits set on a control frame");
        }
        if (!fin) {
            return fail(sink, CloseCode::ProtocolError, "fragmented control frame");
        }
        if (payloadLength > 125) {
            return fail(sink, CloseCode::ProtocolError, "control frame payload over 125 bytes");
        }
    } else {
        if (opCode != OpCode::Continuation && opCode != OpCode::Text && opCode != OpCode::Binary) {
            return fail(sink, CloseCode::ProtocolError, "unknown opcode");
        }
        if (opCode == OpCode::Continuation) {
            if (messageOpCode_ == OpCode::Continuation) {
                return fail(sink, CloseCode::ProtocolError, "continuation frame without a message to continue");
            }
            if (reserved) {
                return fail(sink, CloseCode::ProtocolError, "reserved bits set on a continuation frame");
            }
        } else {
            if (messageOpCode_ != OpCode::Continuation) {
                return fail(sink, CloseCode::ProtocolError, "new message before the fragmented one ended");
            }
            compressed = reserved & 0x40;
            if ((reserved & 0x30) || (compressed && !compressionNegotiated)) {
                return fail(sink, CloseCode::ProtocolError, "reserved bits set without a negotiated extension");
            }
        }
        if (payloadLength > maxPayloadLength || message_.size() + payloadLength > maxPayloadLength) {
            return fail(sink, CloseCode::MessageTooBig, "message over max_payload_length");
        }
    }

    // Fast path: a whole control frame, or a whole unfragmented message, already in the buffer.
    if (payloadLength <= length && (isControl || (fin && opCode != OpCode::Continuation))) {
        bool ascii = unmaskInPlace(data, size_t(payloadLength), maskKey, 0);
        char *payload = data;
        data += payloadLength;
        length -= size_t(payloadLength);
        if (isControl) {
            return dispatchControl(opCode, payload, size_t(payloadLength), sink);
        }
        if (opCode == OpCode::Text && !compressed && !ascii && !isValidUtf8(payload, size_t(payloadLength))) {
            return fail(sink, CloseCode::InvalidPayload, "invalid UTF-8 in text message");
        }
        return sink.onMessage(payload, size_t(payloadLength), opCode, compressed);
    }

    std::memcpy(mask_, maskKey, 4);
    maskOffset_ = 0;
    frameOpCode_ = opCode;
    frameFin_ = fin;
    remaining_ = payloadLength;
    if (!isControl && opCode != OpCode::Continuation) {
        messageOpCode_ = opCode;
        messageCompressed_ = compressed;
        utf8_.reset();
        message_.clear();
    }
    if (!isControl) {
        message_.reserve(message_.size() + size_t(payloadLength));
    }
    if (payloadLength == 0) {
        return finishFrame(sink);
    }
    inPayload_ = true;
    return true;
}

template <class Sink> bool WebSocketParser::finishFrame(Sink &sink) {
    inPayload_ = false;
    if (uint8_t(frameOpCode_) >= 8) {
        std::string payload;
        payload.swap(control_);
        return dispatchControl(frameOpCode_, payload.data(), payload.size(), sink);
    }
    if (!frameFin_) {
        return true;
    }
    OpCode opCode = messageOpCode_;
    messageOpCode_ = OpCode::Continuation;
    if (opCode == OpCode::Text && !messageCompressed_ && !utf8_.complete()) {
        return fail(sink, CloseCode::InvalidPayload, "text message ends inside a UTF-8 sequence");
    }
    std::string message;
    message.swap(message_);
    return sink.onMessage(message.data(), message.size(), opCode, messageCompressed_);
}

template <class Sink>
bool WebSocketParser::dispatchControl(OpCode opCode, char *payload, size_t length, Sink &sink) {
    if (opCode == OpCode::Ping) {
        return sink.onPing(payload, length);
    }
    if (opCode == OpCode::Pong) {
        return sink.onPong(payload, length);
    }
    if (length == 0) {
        return sink.onClose(CloseCode::NoStatus, {});
    }
    if (length == 1) {
        return fail(sink, CloseCode::ProtocolError, "close frame with a 1-byte payload");
    }
    uint16_t code = uint16_t((uint8_t(payload[0]) << 8) | uint8_t(payload[1]));
    if (!isValidCloseCode(code)) {
        return fail(sink, CloseCode::ProtocolError, "invalid close code");
    }
    if (!isValidUtf8(payload + 2, length - 2)) {
        return fail(sink, CloseCode::InvalidPayload, "invalid UTF-8 in close reason");
    }
    return sink.onClose(code, std::string_view(payload + 2, length - 2));
}

} // namespace uws
