// The realtime scanner as it was before the word-at-a-time rewrite (session 8), kept as the
// reference the new cpp/src/RealtimeScan.cpp is checked against: the same verdict and every
// recorded field on every input (cpp/tests/test_realtime_scan.cpp on a corpus of tricky texts,
// cpp/fuzz/fuzz_realtime_scan.cpp on every fuzz input). Test-only: byte at a time, simple to
// read, about 22 instructions per byte. Its types are the real ones (uws/RealtimeScan.h).
#pragma once

#include <cstring>
#include <new>
#include <string>
#include <string_view>

#include "uws/RealtimeScan.h"

namespace uws_reference {

using uws::JsonKind;
using uws::kScanMaxDepth;
using uws::kScanMaxKeys;
using uws::kScanMaxNumberDigits;
using uws::RealtimeScan;
using uws::ScannedItems;
using uws::ScannedValue;
using uws::ScanTypeFilter;


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

    // An object at `at` ({), at `depth` (the top-level message is 1), its fields recorded in
    // `out` (set here), the filter applied to its type; with `items`, its "messages" array's
    // elements scanned the same way into them.
    bool message(int depth, RealtimeScan &out, ScanTypeFilter filter, ScannedItems *items) {
        if (atEnd() || *at != '{') return false;
        at++;
        skipSpace();
        KeyList keys;
        if (!atEnd() && *at == '}') {
            at++;
            out.keys = 0;
            return true;
        }
        for (;;) {
            if (atEnd() || *at != '"') return false;
            const char *keyStart = reinterpret_cast<const char *>(at) + 1;
            bool escaped;
            if (!string(escaped) || escaped) return false;
            std::string_view key(keyStart, size_t(reinterpret_cast<const char *>(at) - 1 - keyStart));
            if (!keys.add(key)) return false;
            skipSpace();
            if (atEnd() || *at != ':') return false;
            at++;
            skipSpace();
            ScannedValue *field = nullptr;
            if (key == "type") field = &out.type;
            else if (key == "id") field = &out.id;
            else if (key == "topic") field = &out.topic;
            else if (key == "data") field = &out.data;
            else if (key == "echo") field = &out.echo;
            else if (key == "messages") field = &out.messages;
            if (items && field == &out.messages && !atEnd() && *at == '[') {
                if (!itemsOf(depth, out.messages, *items)) return false;
            } else {
                ScannedValue ignored;
                bool plain;
                if (!value(depth, field ? field : &ignored, plain)) return false;
                if (filter && field == &out.type) {
                    int code = out.type.plainString() ? filter(out.type.text()) : -1;
                    if (code < 0) return false;
                    out.typeCode = code;
                }
            }
            skipSpace();
            if (atEnd()) return false;
            if (*at == '}') {
                at++;
                break;
            }
            if (*at != ',') return false;
            at++;
            skipSpace();
        }
        out.keys = keys.count;
        return true;
    }

    // The "messages" array of an object at `depth`, at `at` ([): each element an object scanned
    // as a message into items.scans (their own "messages" not split), at most items.capacity.
    bool itemsOf(int depth, ScannedValue &array, ScannedItems &items) {
        if (depth + 2 > kScanMaxDepth) return false;
        const unsigned char *start = at;
        at++;
        skipSpace();
        if (!atEnd() && *at == ']') {
            at++;
        } else {
            for (;;) {
                if (items.count == items.capacity) return false;
                RealtimeScan *item = new (&items.scans[items.count]) RealtimeScan();
                if (!message(depth + 2, *item, items.filter, nullptr)) return false;
                items.count++;
                skipSpace();
                if (atEnd()) return false;
                if (*at == ']') {
                    at++;
                    break;
                }
                if (*at != ',') return false;
                at++;
                skipSpace();
            }
        }
        array.kind = JsonKind::Array;
        array.raw = std::string_view(reinterpret_cast<const char *>(start), size_t(at - start));
        array.plain = false; // not worked out here
        return true;
    }
};

} // namespace

// For the comparisons: the dispatcher's filters (a BATCH's items, the top level), with a
// distinct code per type, so that a code recorded for the wrong type, or not at all, is a
// difference.
inline int itemType(std::string_view type) {
    if (type == "PING") return 0;
    if (type == "SUBSCRIBE") return 1;
    if (type == "UNSUBSCRIBE") return 2;
    if (type == "PUBLISH") return 3;
    return -1;
}

inline int topType(std::string_view type) { return type == "BATCH" ? 4 : itemType(type); }

inline bool scanRealtimeMessage(std::string_view message, RealtimeScan &out, ScanTypeFilter filter = nullptr,
                                ScannedItems *items = nullptr) {
    out = RealtimeScan();
    if (items) items->count = 0;
    Scanner scanner{reinterpret_cast<const unsigned char *>(message.data()),
                    reinterpret_cast<const unsigned char *>(message.data()) + message.size()};
    scanner.skipSpace();
    if (!scanner.message(1, out, filter, items)) return false;
    scanner.skipSpace();
    return scanner.atEnd();
}

} // namespace uws_reference

namespace uws_reference {

// How two scans of the same text differ, or "" when they do not: the verdict, and for a known
// text every field (kind, raw span by address and length, plain, integer), the key count, and
// with items their count and each item the same way. A text both leave unknown is not
// compared further (callers read nothing of an unknown scan).
inline std::string scanDifference(bool knownA, const RealtimeScan &a, bool knownB, const RealtimeScan &b,
                                  const ScannedItems *itemsA = nullptr, const ScannedItems *itemsB = nullptr) {
    if (knownA != knownB) return knownA ? "known, the reference's unknown" : "unknown, the reference's known";
    if (!knownA) return "";
    const char *names[] = {"type", "id", "topic", "data", "echo", "messages"};
    const ScannedValue *fieldsA[] = {&a.type, &a.id, &a.topic, &a.data, &a.echo, &a.messages};
    const ScannedValue *fieldsB[] = {&b.type, &b.id, &b.topic, &b.data, &b.echo, &b.messages};
    for (int i = 0; i < 6; i++) {
        const ScannedValue &x = *fieldsA[i], &y = *fieldsB[i];
        if (x.kind != y.kind) return std::string(names[i]) + ": kind";
        if (x.raw.data() != y.raw.data() || x.raw.size() != y.raw.size()) return std::string(names[i]) + ": raw";
        if (x.plain != y.plain) return std::string(names[i]) + ": plain";
        if (x.integer != y.integer) return std::string(names[i]) + ": integer";
    }
    if (a.keys != b.keys) return "keys";
    if (a.typeCode != b.typeCode) return "typeCode";
    if (itemsA && itemsB) {
        if (itemsA->count != itemsB->count) return "items: count";
        for (size_t i = 0; i < itemsA->count; i++) {
            std::string item = scanDifference(true, itemsA->scans[i], true, itemsB->scans[i]);
            if (!item.empty()) return "item " + std::to_string(i) + ": " + item;
        }
    }
    return "";
}

} // namespace uws_reference
