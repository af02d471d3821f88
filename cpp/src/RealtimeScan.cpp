// The realtime message scanner (see RealtimeScan.h for what it knows and what it leaves to
// the decoder). One pass over the bytes, recursive for nested values with the depth bounded.
#include "uws/RealtimeScan.h"

#include <cstring>

namespace uws {

namespace {

// An object's keys so far, to find duplicates. Left uninitialized: the common message stops
// at its type, and zeroing the arrays cost more than scanning it.
struct KeyList {
    const char *data[kScanMaxKeys];
    size_t size[kScanMaxKeys];
    size_t count = 0;

    // False when the key was there already or the list is full.
    bool add(std::string_view key) {
        if (count == kScanMaxKeys) return false;
        for (size_t i = 0; i < count; i++) {
            if (size[i] == key.size() && std::memcmp(data[i], key.data(), key.size()) == 0) return false;
        }
        data[count] = key.data();
        size[count] = key.size();
        count++;
        return true;
    }
};

struct Scanner {
    const unsigned char *at;
    const unsigned char *end;

    bool atEnd() const { return at == end; }

    // True when there was any.
    bool skipSpace() {
        const unsigned char *start = at;
        while (at != end && (*at == ' ' || *at == '\n' || *at == '\r' || *at == '\t')) at++;
        return at != start;
    }

    bool literal(const char *word, size_t length) {
        if (size_t(end - at) < length || std::memcmp(at, word, length) != 0) return false;
        at += length;
        return true;
    }

    static int hexDigit(unsigned char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    // One UTF-8 sequence starting at a byte >= 0x80 (RFC 3629: no overlong forms, no
    // surrogates, nothing above U+10FFFF).
    bool utf8Sequence() {
        unsigned char lead = *at;
        size_t length;
        unsigned char low = 0x80, high = 0xBF;
        if (lead >= 0xC2 && lead <= 0xDF) {
            length = 2;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            length = 3;
            if (lead == 0xE0) low = 0xA0;
            if (lead == 0xED) high = 0x9F;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            length = 4;
            if (lead == 0xF0) low = 0x90;
            if (lead == 0xF4) high = 0x8F;
        } else {
            return false;
        }
        if (size_t(end - at) < length) return false;
        if (at[1] < low || at[1] > high) return false;
        for (size_t i = 2; i < length; i++) {
            if (at[i] < 0x80 || at[i] > 0xBF) return false;
        }
        at += length;
        return true;
    }

    // A string at its opening quote; `escaped` tells whether it had an escape.
    bool string(bool &escaped) {
        at++; // the quote
        escaped = false;
        while (at != end) {
            unsigned char c = *at;
            if (c == '"') {
                at++;
                return true;
            }
            if (c < 0x20) return false;
            if (c == '\\') {
                escaped = true;
                if (++at == end) return false;
                unsigned char e = *at++;
                if (e == 'u') {
                    if (end - at < 4) return false;
                    int value = 0;
                    for (int i = 0; i < 4; i++) {
                        int digit = hexDigit(at[i]);
                        if (digit < 0) return false;
                        value = value * 16 + digit;
                    }
                    if (value >= 0xD800 && value <= 0xDFFF) return false; // pairs left to the decoder
                    at += 4;
                } else if (!std::strchr("\"\\/bfnrt", e) || e == 0) {
                    return false;
                }
            } else if (c >= 0x80) {
                if (!utf8Sequence()) return false;
            } else {
                at++;
            }
        }
        return false;
    }

    // A number at its first character (a digit or '-'). `integer` tells whether it had no
    // fraction or exponent; `canonical` and `value` are set for an integer within +-2^53
    // that is not -0 (leading zeros are invalid JSON anyway).
    bool number(bool &integer, bool &canonical, int64_t &value) {
        bool negative = false;
        if (*at == '-') {
            negative = true;
            at++;
        }
        size_t digits = 0;
        uint64_t magnitude = 0;
        if (at == end) return false;
        if (*at == '0') {
            at++;
            digits = 1;
        } else if (*at >= '1' && *at <= '9') {
            while (at != end && *at >= '0' && *at <= '9') {
                if (digits < 19) magnitude = magnitude * 10 + uint64_t(*at - '0');
                digits++;
                at++;
            }
        } else {
            return false;
        }
        integer = true;
        size_t allDigits = digits;
        if (at != end && *at == '.') {
            integer = false;
            at++;
            size_t fraction = 0;
            while (at != end && *at >= '0' && *at <= '9') {
                fraction++;
                at++;
            }
            if (fraction == 0) return false;
            allDigits += fraction;
        }
        if (at != end && (*at == 'e' || *at == 'E')) {
            integer = false;
            at++;
            if (at != end && (*at == '+' || *at == '-')) at++;
            size_t exponent = 0;
            while (at != end && *at >= '0' && *at <= '9') {
                exponent++;
                at++;
            }
            if (exponent == 0 || exponent > 2) return false;
        }
        if (integer) {
            if (digits > 18) return false; // orjson reads it as a float, or as a big int
            const uint64_t limit = uint64_t(1) << 53;
            canonical = magnitude <= limit && !(negative && magnitude == 0);
            value = negative ? -int64_t(magnitude) : int64_t(magnitude);
        } else {
            canonical = false;
            if (allDigits > kScanMaxNumberDigits) return false;
        }
        return true;
    }

    // An array or object at its opening bracket, nested at `depth` + 1.
    bool container(int depth, bool &plain) {
        if (depth + 1 > kScanMaxDepth) return false;
        bool object = *at == '{';
        unsigned char close = object ? '}' : ']';
        KeyList keys; // for the duplicates that orjson would merge (then not plain)
        at++;
        if (skipSpace()) plain = false;
        if (at != end && *at == close) {
            at++;
            return true;
        }
        for (;;) {
            if (object) {
                const unsigned char *keyStart = at + 1;
                bool escaped;
                if (at == end || *at != '"' || !string(escaped)) return false;
                if (plain) {
                    std::string_view key(reinterpret_cast<const char *>(keyStart), size_t(at - 1 - keyStart));
                    if (escaped || !keys.add(key)) plain = false;
                }
                if (skipSpace()) plain = false;
                if (at == end || *at != ':') return false;
                at++;
                if (skipSpace()) plain = false;
            }
            bool childPlain;
            if (!value(depth + 1, nullptr, childPlain)) return false;
            bool spaced = skipSpace();
            if (!childPlain || spaced) plain = false;
            if (at == end) return false;
            if (*at == close) {
                at++;
                return true;
            }
            if (*at != ',') return false;
            at++;
            if (skipSpace()) plain = false;
        }
    }

    // Any value, nested at `depth` (the top-level object is 1). `plain` is set when
    // orjson.dumps(orjson.loads(text)) gives the text back: see ScannedValue::plain.
    bool value(int depth, ScannedValue *out, bool &plain) {
        if (at == end) return false;
        const unsigned char *start = at;
        JsonKind kind;
        int64_t integer = 0;
        plain = true;
        switch (*at) {
        case '{':
        case '[':
            if (!container(depth, plain)) return false;
            kind = *start == '{' ? JsonKind::Object : JsonKind::Array;
            break;
        case '"': {
            bool escaped;
            if (!string(escaped)) return false;
            kind = JsonKind::String;
            plain = !escaped;
            break;
        }
        case 't':
            if (!literal("true", 4)) return false;
            kind = JsonKind::True;
            break;
        case 'f':
            if (!literal("false", 5)) return false;
            kind = JsonKind::False;
            break;
        case 'n':
            if (!literal("null", 4)) return false;
            kind = JsonKind::Null;
            break;
        default: {
            if (*at != '-' && !(*at >= '0' && *at <= '9')) return false;
            bool isInteger = false;
            if (!number(isInteger, plain, integer)) return false;
            kind = isInteger ? JsonKind::Integer : JsonKind::Number;
            if (!isInteger) plain = false;
        }
        }
        if (out) {
            out->kind = kind;
            out->raw = std::string_view(reinterpret_cast<const char *>(start), size_t(at - start));
            out->plain = plain;
            out->integer = integer;
        }
        return true;
    }
};

} // namespace

bool scanRealtimeMessage(std::string_view message, RealtimeScan &out, ScanTypeFilter filter) {
    out = RealtimeScan();
    Scanner scanner{reinterpret_cast<const unsigned char *>(message.data()),
                    reinterpret_cast<const unsigned char *>(message.data()) + message.size()};
    scanner.skipSpace();
    if (scanner.atEnd() || *scanner.at != '{') return false;
    scanner.at++;
    scanner.skipSpace();
    KeyList keys;
    if (!scanner.atEnd() && *scanner.at == '}') {
        scanner.at++;
    } else {
        for (;;) {
            if (scanner.atEnd() || *scanner.at != '"') return false;
            const char *keyStart = reinterpret_cast<const char *>(scanner.at) + 1;
            bool escaped;
            if (!scanner.string(escaped) || escaped) return false;
            std::string_view key(keyStart, size_t(reinterpret_cast<const char *>(scanner.at) - 1 - keyStart));
            if (!keys.add(key)) return false;
            scanner.skipSpace();
            if (scanner.atEnd() || *scanner.at != ':') return false;
            scanner.at++;
            scanner.skipSpace();
            ScannedValue *field = nullptr;
            if (key == "type") field = &out.type;
            else if (key == "id") field = &out.id;
            else if (key == "topic") field = &out.topic;
            else if (key == "data") field = &out.data;
            else if (key == "echo") field = &out.echo;
            else if (key == "messages") field = &out.messages;
            ScannedValue ignored;
            bool plain;
            if (!scanner.value(1, field ? field : &ignored, plain)) return false;
            if (filter && field == &out.type && !(out.type.plainString() && filter(out.type.text()))) return false;
            scanner.skipSpace();
            if (scanner.atEnd()) return false;
            if (*scanner.at == '}') {
                scanner.at++;
                break;
            }
            if (*scanner.at != ',') return false;
            scanner.at++;
            scanner.skipSpace();
        }
    }
    scanner.skipSpace();
    if (!scanner.atEnd()) return false;
    out.keys = keys.count;
    return true;
}

bool scanArrayItems(std::string_view array, std::string_view *items, size_t max, size_t &count) {
    count = 0;
    Scanner scanner{reinterpret_cast<const unsigned char *>(array.data()),
                    reinterpret_cast<const unsigned char *>(array.data()) + array.size()};
    if (scanner.atEnd() || *scanner.at != '[') return false;
    scanner.at++;
    scanner.skipSpace();
    if (!scanner.atEnd() && *scanner.at == ']') {
        scanner.at++;
    } else {
        for (;;) {
            const unsigned char *start = scanner.at;
            bool plain;
            // Depth 1: the array was scanned within the limit at its own depth, so are its items here.
            if (count == max || !scanner.value(1, nullptr, plain)) return false;
            items[count++] = std::string_view(reinterpret_cast<const char *>(start), size_t(scanner.at - start));
            scanner.skipSpace();
            if (scanner.atEnd()) return false;
            if (*scanner.at == ']') {
                scanner.at++;
                break;
            }
            if (*scanner.at != ',') return false;
            scanner.at++;
            scanner.skipSpace();
        }
    }
    return scanner.atEnd();
}

} // namespace uws
