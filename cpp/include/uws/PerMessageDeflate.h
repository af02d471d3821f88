// permessage-deflate (RFC 7692) with zlib: negotiation from the client's offer, and
// deflate/inflate streams with the message tail (00 00 FF FF) handled.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace uws {

// The compression option of a route: the low byte picks the compressor, the next the
// decompressor (values as uws_py.CompressOptions).
namespace CompressOption {
constexpr uint32_t Disabled = 0;
constexpr uint32_t SharedCompressor = 1;          // 2..9: dedicated, 3 KB .. 256 KB
constexpr uint32_t SharedDecompressor = 1u << 8;  // 2..8 << 8: dedicated, 512 B .. 32 KB
inline uint32_t compressor(uint32_t options) { return options & 0xFF; }
inline uint32_t decompressor(uint32_t options) { return (options >> 8) & 0xFF; }
} // namespace CompressOption

// What was agreed with one client.
struct DeflateAgreement {
    bool accepted = false;
    // Our compressor: 0 = we never compress; else the window bits we may use (9..15).
    int serverWindowBits = 0;
    bool serverNoContextTakeover = true;
    // The client compresses with at most this window; we inflate with it.
    int clientWindowBits = 15;
    bool clientNoContextTakeover = false;
    std::string responseHeader; // the Sec-WebSocket-Extensions value to send back
};

// Reads the client's offers in order and accepts the first valid permessage-deflate one;
// malformed offers (unknown or duplicate parameters, bad values) are skipped, never
// accepted. With options == Disabled nothing is accepted.
DeflateAgreement negotiateDeflate(std::string_view offers, uint32_t options);

class Deflater {
public:
    Deflater(int windowBits, int memLevel);
    ~Deflater();
    Deflater(const Deflater &) = delete;
    Deflater &operator=(const Deflater &) = delete;
    // Compresses one message into out (replacing it), without the 00 00 FF FF tail.
    // resetAfter: forget the context (no context takeover).
    bool compress(std::string_view message, std::string &out, bool resetAfter);
    int windowBits() const { return windowBits_; }

private:
    z_stream stream_{};
    int windowBits_;
};

enum class InflateResult { Ok, TooLarge, Invalid };

class Inflater {
public:
    explicit Inflater(int windowBits = 15);
    ~Inflater();
    Inflater(const Inflater &) = delete;
    Inflater &operator=(const Inflater &) = delete;
    // Inflates one message into out (replacing it), producing at most maxLength bytes: a
    // compression bomb stops there with TooLarge. resetBefore: the peer keeps no context.
    InflateResult inflate(std::string_view compressed, std::string &out, size_t maxLength, bool resetBefore);

private:
    z_stream stream_{};
};

// Window bits and zlib memLevel of the dedicated compressor option 2..9 (3 KB .. 256 KB of
// zlib state: (1 << (windowBits + 2)) + (1 << (memLevel + 9)) bytes).
void dedicatedCompressorParameters(uint32_t option, int &windowBits, int &memLevel);

// Default of WebSocketBehavior::compressionThreshold: below it deflate's framing (block
// headers and the sync flush) costs more than it saves on typical JSON.
constexpr size_t kDefaultCompressThreshold = 64;

} // namespace uws
