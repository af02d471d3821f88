// permessage-deflate (RFC 7692) for the client: each sent message is compressed on its own
// (no context takeover, always allowed to the client), received messages go through one
// inflater whose window persists, which decodes correctly whether or not the server resets its
// compressor between messages.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

class Deflate {
public:
    Deflate() {
        if (deflateInit2(&compressor_, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK ||
            inflateInit2(&decompressor_, -15) != Z_OK)
            throw std::runtime_error("zlib init failed");
    }
    ~Deflate() {
        deflateEnd(&compressor_);
        inflateEnd(&decompressor_);
    }
    Deflate(const Deflate &) = delete;
    Deflate &operator=(const Deflate &) = delete;

    // Appends the compressed form of data to out (without the trailing 00 00 ff ff).
    void compress(const uint8_t *data, size_t length, std::vector<uint8_t> &out) {
        deflateReset(&compressor_);
        size_t start = out.size();
        out.resize(start + deflateBound(&compressor_, length) + 16);
        compressor_.next_in = const_cast<uint8_t *>(data);
        compressor_.avail_in = unsigned(length);
        compressor_.next_out = out.data() + start;
        compressor_.avail_out = unsigned(out.size() - start);
        deflate(&compressor_, Z_SYNC_FLUSH);
        size_t produced = out.size() - start - compressor_.avail_out;
        out.resize(start + produced - 4);
    }

    // Replaces out with the decompressed message; false on corrupt input.
    bool decompress(const uint8_t *data, size_t length, std::vector<uint8_t> &out) {
        static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
        out.clear();
        if (!feed(data, length, out)) return false;
        return feed(tail, 4, out);
    }

private:
    bool feed(const uint8_t *data, size_t length, std::vector<uint8_t> &out) {
        decompressor_.next_in = const_cast<uint8_t *>(data);
        decompressor_.avail_in = unsigned(length);
        do {
            size_t start = out.size();
            out.resize(start + kChunk);
            decompressor_.next_out = out.data() + start;
            decompressor_.avail_out = kChunk;
            int status = inflate(&decompressor_, Z_SYNC_FLUSH);
            out.resize(out.size() - decompressor_.avail_out);
            if (status == Z_BUF_ERROR) break;  // no progress possible: input consumed, output flushed
            if (status != Z_OK) return false;
        } while (decompressor_.avail_in > 0 || decompressor_.avail_out == 0);
        return true;
    }

    static constexpr unsigned kChunk = 16384;

    z_stream compressor_{};
    z_stream decompressor_{};
};
