#include "uws/PerMessageDeflate.h"

#include <vector>

namespace uws {

namespace {

constexpr unsigned char kTail[4] = {0x00, 0x00, 0xFF, 0xFF};

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Splits on sep outside double quotes.
std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    bool quoted = false;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '"') quoted = !quoted;
        else if (s[i] == sep && !quoted) {
            parts.push_back(trim(s.substr(start, i - start)));
            start = i + 1;
        }
    }
    parts.push_back(trim(s.substr(start)));
    return parts;
}

// A window-bits value: 8..15 written plainly, optionally quoted. -1 when invalid.
int parseWindowBits(std::string_view value) {
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    if (value.size() == 1 && value[0] >= '8' && value[0] <= '9') return value[0] - '0';
    if (value.size() == 2 && value[0] == '1' && value[1] >= '0' && value[1] <= '5') return 10 + (value[1] - '0');
    return -1;
}

struct Offer {
    bool serverNoContextTakeover = false;
    bool clientNoContextTakeover = false;
    int serverMaxWindowBits = 0; // 0: not offered
    bool clientMaxWindowBitsOffered = false;
    int clientMaxWindowBits = 15;
};

bool parseOffer(const std::vector<std::string_view> &parameters, Offer &offer) {
    bool seen[4] = {};
    for (size_t i = 1; i < parameters.size(); i++) {
        std::string_view parameter = parameters[i];
        size_t eq = parameter.find('=');
        std::string_view name = trim(parameter.substr(0, eq));
        bool hasValue = eq != std::string_view::npos;
        std::string_view value = hasValue ? trim(parameter.substr(eq + 1)) : std::string_view();
        int index;
        if (name == "server_no_context_takeover") {
            index = 0;
            if (hasValue) return false;
            offer.serverNoContextTakeover = true;
        } else if (name == "client_no_context_takeover") {
            index = 1;
            if (hasValue) return false;
            offer.clientNoContextTakeover = true;
        } else if (name == "server_max_window_bits") {
            index = 2;
            offer.serverMaxWindowBits = hasValue ? parseWindowBits(value) : -1;
            if (offer.serverMaxWindowBits < 0) return false;
        } else if (name == "client_max_window_bits") {
            index = 3;
            offer.clientMaxWindowBitsOffered = true;
            if (hasValue) {
                offer.clientMaxWindowBits = parseWindowBits(value);
                if (offer.clientMaxWindowBits < 0) return false;
            }
        } else {
            return false;
        }
        if (seen[index]) return false;
        seen[index] = true;
    }
    return true;
}

} // namespace

void dedicatedCompressorParameters(uint32_t option, int &windowBits, int &memLevel) {
    static const int table[][2] = {{9, 1}, {9, 2}, {10, 3}, {11, 4}, {12, 5}, {13, 6}, {14, 7}, {15, 8}};
    uint32_t index = option < 2 ? 0 : option > 9 ? 7 : option - 2;
    windowBits = table[index][0];
    memLevel = table[index][1];
}

DeflateAgreement negotiateDeflate(std::string_view offers, uint32_t options) {
    DeflateAgreement agreement;
    if (options == CompressOption::Disabled) return agreement;
    for (std::string_view extension : split(offers, ',')) {
        std::vector<std::string_view> parameters = split(extension, ';');
        if (parameters.empty() || parameters[0] != "permessage-deflate") continue;
        Offer offer;
        if (!parseOffer(parameters, offer)) continue;

        agreement.accepted = true;
        std::string &response = agreement.responseHeader;
        response = "permessage-deflate";

        uint32_t compressor = CompressOption::compressor(options);
        if (compressor == 0) {
            agreement.serverWindowBits = 0;
        } else if (compressor == CompressOption::SharedCompressor) {
            agreement.serverWindowBits = 15;
            agreement.serverNoContextTakeover = true;
        } else {
            int memLevel;
            dedicatedCompressorParameters(compressor, agreement.serverWindowBits, memLevel);
            agreement.serverNoContextTakeover = offer.serverNoContextTakeover;
        }
        if (offer.serverMaxWindowBits) {
            if (agreement.serverWindowBits > offer.serverMaxWindowBits) {
                agreement.serverWindowBits = offer.serverMaxWindowBits;
            }
            // zlib cannot deflate with a 256-byte window; with 8 we keep the extension and
            // send every message uncompressed, which RFC 7692 allows.
            if (agreement.serverWindowBits == 8) agreement.serverWindowBits = 0;
            int announced = agreement.serverWindowBits ? agreement.serverWindowBits : offer.serverMaxWindowBits;
            response += "; server_max_window_bits=" + std::to_string(announced);
        }
        if (agreement.serverNoContextTakeover && (compressor != 0 || offer.serverNoContextTakeover)) {
            response += "; server_no_context_takeover";
        }

        uint32_t decompressor = CompressOption::decompressor(options);
        if (decompressor <= 1) {
            // One inflater per loop can only serve clients that reset their context per message.
            agreement.clientNoContextTakeover = true;
            response += "; client_no_context_takeover";
        } else {
            agreement.clientNoContextTakeover = offer.clientNoContextTakeover;
            if (offer.clientNoContextTakeover) response += "; client_no_context_takeover";
            if (offer.clientMaxWindowBitsOffered) {
                int wanted = int(decompressor) + 7; // 2 -> 9 (512 B) .. 8 -> 15 (32 KB)
                agreement.clientWindowBits = wanted < offer.clientMaxWindowBits ? wanted : offer.clientMaxWindowBits;
                response += "; client_max_window_bits=" + std::to_string(agreement.clientWindowBits);
            }
        }
        return agreement;
    }
    return agreement;
}

Deflater::Deflater(int windowBits, int memLevel) : windowBits_(windowBits) {
    // Level 1: most of the ratio on chatty JSON for a fraction of the CPU of the default 6.
    deflateInit2(&stream_, 1, Z_DEFLATED, -windowBits, memLevel, Z_DEFAULT_STRATEGY);
}

Deflater::~Deflater() { deflateEnd(&stream_); }

bool Deflater::compress(std::string_view message, std::string &out, bool resetAfter) {
    out.clear();
    stream_.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(message.data()));
    stream_.avail_in = uInt(message.size());
    size_t chunk = message.size() / 2 + 64;
    int status;
    do {
        size_t used = out.size();
        out.resize(used + chunk);
        stream_.next_out = reinterpret_cast<Bytef *>(&out[used]);
        stream_.avail_out = uInt(chunk);
        status = deflate(&stream_, Z_SYNC_FLUSH);
        out.resize(used + chunk - stream_.avail_out);
        if (status != Z_OK && status != Z_BUF_ERROR) return false;
        chunk *= 2;
    } while (stream_.avail_in > 0 || stream_.avail_out == 0);
    // A sync flush ends with an empty stored block, 00 00 FF FF, which the receiver re-adds.
    if (out.size() >= 4 && std::string_view(out).substr(out.size() - 4) == std::string_view(reinterpret_cast<const char *>(kTail), 4)) {
        out.resize(out.size() - 4);
    }
    if (out.empty()) {
        // zlib flushes nothing twice in a row (an empty message right after another): one
        // 0x00 byte, an empty stored block's header, is what the peer can inflate (RFC 7692 7.2.3.6).
        out.push_back('\0');
    }
    if (resetAfter) deflateReset(&stream_);
    return true;
}

Inflater::Inflater(int windowBits) { inflateInit2(&stream_, -windowBits); }

Inflater::~Inflater() { inflateEnd(&stream_); }

InflateResult Inflater::inflate(std::string_view compressed, std::string &out, size_t maxLength, bool resetBefore) {
    if (resetBefore) inflateReset(&stream_);
    out.clear();
    // Two inputs: the message, then the tail the sender stripped.
    const std::string_view inputs[2] = {compressed, std::string_view(reinterpret_cast<const char *>(kTail), 4)};
    size_t chunk = compressed.size() * 4 + 256;
    for (const std::string_view &input : inputs) {
        stream_.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(input.data()));
        stream_.avail_in = uInt(input.size());
        while (stream_.avail_in > 0) {
            size_t used = out.size();
            // Never let one step produce past maxLength + 1: the +1 tells "too large" apart.
            // (A limit of SIZE_MAX must not wrap that +1 to zero room.)
            size_t room = maxLength - used < SIZE_MAX ? maxLength - used + 1 : SIZE_MAX;
            if (chunk > room) chunk = room;
            if (chunk == 0) chunk = 1;
            out.resize(used + chunk);
            stream_.next_out = reinterpret_cast<Bytef *>(&out[used]);
            stream_.avail_out = uInt(chunk);
            int status = ::inflate(&stream_, Z_SYNC_FLUSH);
            out.resize(used + chunk - stream_.avail_out);
            if (out.size() > maxLength) {
                inflateReset(&stream_);
                return InflateResult::TooLarge;
            }
            if (status == Z_STREAM_END) {
                // A final block: legal, but the stream must restart for the next message.
                inflateReset(&stream_);
                break;
            }
            if (status != Z_OK && status != Z_BUF_ERROR) {
                inflateReset(&stream_);
                return InflateResult::Invalid;
            }
            if (status == Z_BUF_ERROR && stream_.avail_out != 0) break; // no progress possible
            if (chunk < 1024 * 1024) chunk *= 2;
        }
    }
    return InflateResult::Ok;
}

} // namespace uws
