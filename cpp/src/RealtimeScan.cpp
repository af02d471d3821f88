// The realtime message scanner (see RealtimeScan.h for what it knows and what it leaves to
// the decoder). One pass over the bytes, recursive for nested values with the depth bounded.
//
// Where the time went (callgrind, session 8): string bodies, whitespace tests, the top-level
// keys and the value dispatch. String bodies are skipped a 64-bit word at a time (stopMask),
// the byte expected next is tested before any space is skipped (messages rarely have any), a
// known top-level key is matched with its quote and colon in one masked word compare, and a
// value's first byte is classed by a table. Every load stays inside the text: a word is read
// only when eight bytes remain, the rest byte by byte. The verdicts and recorded fields are those
// of the byte-at-a-time scanner kept in cpp/tests/realtime_scan_reference.h, which the unit
// test and the fuzz target compare this one against.
#include "uws/RealtimeScan.h"

#include <cstring>
#include <new>

namespace uws {

namespace {

constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighs = 0x8080808080808080ull;

// Eight bytes from `p` as a number whose lowest byte is p[0].
inline uint64_t loadWord(const unsigned char *p) {
    uint64_t word;
    std::memcpy(&word, p, sizeof word);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    word = __builtin_bswap64(word);
#endif
    return word;
}

// The high bit of each byte of `word` that ends a run of plain string bytes: '"', '\\', a
// control byte (< 0x20) or a byte >= 0x80. Exact up to and including the first such byte
// (the lowest set bit), which is all that is used: below it no byte borrows in the three
// subtractions, and each one sets its byte's high bit only for a stop byte (a quote or
// backslash XORs to 0, a control byte minus 0x20 wraps, a byte >= 0x80 has it already).
inline uint64_t stopMask(uint64_t word) {
    uint64_t quote = word ^ (kOnes * '"');
    uint64_t backslash = word ^ (kOnes * '\\');
    return ((quote - kOnes) | (backslash - kOnes) | (word - kOnes * 0x20) | word) & kHighs;
}

// Bytes a string's body holds as they are (the complement of stopMask's stops).
inline bool plainStringByte(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

// The number loadWord gives for the bytes of `text` (up to 8, the rest zero).
constexpr uint64_t wordOf(const char *text) {
    uint64_t word = 0;
    for (int i = 0; i < 8 && text[i]; i++) word |= uint64_t(uint8_t(text[i])) << (8 * i);
    return word;
}

// What a value's first byte starts: one table load and a dense switch rather than a compare
// tree over the bytes.
enum class ValueStart : uint8_t { Invalid, Space, Container, String, True, False, Null, Number };

struct ValueStartTable {
    ValueStart of[256] = {};
    constexpr ValueStartTable() {
        for (unsigned char c : {' ', '\t', '\n', '\r'}) of[c] = ValueStart::Space;
        of[uint8_t('{')] = of[uint8_t('[')] = ValueStart::Container;
        of[uint8_t('"')] = ValueStart::String;
        of[uint8_t('t')] = ValueStart::True;
        of[uint8_t('f')] = ValueStart::False;
        of[uint8_t('n')] = ValueStart::Null;
        of[uint8_t('-')] = ValueStart::Number;
        for (int c = '0'; c <= '9'; c++) of[c] = ValueStart::Number;
    }
    constexpr ValueStart operator[](unsigned char c) const { return of[c]; }
};
constexpr ValueStartTable kValueStart;

inline bool isDigit(unsigned char c) { return unsigned(c - '0') < 10; }

// An object's keys so far, to find duplicates. Left uninitialized: the common message stops
// at its type, and zeroing the arrays cost more than scanning it.
struct KeyList {
    const char *data[kScanMaxKeys];
    size_t size[kScanMaxKeys];
    size_t count = 0;

    // False when the key was there already or the list is full.
    bool add(std::string_view key) {
        if (count == kScanMaxKeys) return false;
        return addNew(key);
    }

    // False when the key was there already (room is the caller's to check).
    bool addNew(std::string_view key) {
        for (size_t i = 0; i < count; i++) {
            if (size[i] == key.size() && std::memcmp(data[i], key.data(), key.size()) == 0) return false;
        }
        data[count] = key.data();
        size[count] = key.size();
        count++;
        return true;
    }
};

// The field a top-level key names, or null: by length first, then one fixed-size compare.
ScannedValue *fieldNamed(RealtimeScan &out, const char *key, size_t size) {
    switch (size) {
    case 2:
        return key[0] == 'i' && key[1] == 'd' ? &out.id : nullptr;
    case 4:
        if (std::memcmp(key, "type", 4) == 0) return &out.type;
        if (std::memcmp(key, "data", 4) == 0) return &out.data;
        if (std::memcmp(key, "echo", 4) == 0) return &out.echo;
        return nullptr;
    case 5:
        return std::memcmp(key, "topic", 5) == 0 ? &out.topic : nullptr;
    case 8:
        return std::memcmp(key, "messages", 8) == 0 ? &out.messages : nullptr;
    default:
        return nullptr;
    }
}

// `out = RealtimeScan()`, field by field: a whole temporary built and copied cost about 50
// instructions (a memset too, as `rep stos`), this about 25 stores.
void clear(RealtimeScan &out) {
    for (ScannedValue *field : {&out.type, &out.id, &out.topic, &out.data, &out.echo, &out.messages}) *field = ScannedValue();
    out.keys = 0;
    out.typeCode = -1;
}

struct Scanner {
    const unsigned char *at;
    const unsigned char *end;
    // The code the last filter asked gave PING (canonicalPing's, kept for the next PING: a
    // BATCH's items are mostly PINGs, and a filter is a function of the type alone).
    ScanTypeFilter pingFilter = nullptr;
    int pingCode = -1;

    bool atEnd() const { return at == end; }

    // True when there was any. Every JSON space byte is <= ' ', so one compare settles the
    // common case of none.
    bool skipSpace() {
        if (at == end || *at > ' ') return false;
        const unsigned char *p = at;
        while (p != end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
        bool any = p != at;
        at = p;
        return any;
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

    // Moves `at` to the next byte of a string's body that is not plain (see stopMask), or to
    // the end.
    // (The loops here run on local pointers: a byte read could alias the member `at`, which
    // would otherwise be stored and reloaded on every step.)
    void skipPlainRun() {
        const unsigned char *p = at;
        while (end - p >= 8) {
            uint64_t stops = stopMask(loadWord(p));
            if (stops != 0) {
                at = p + (__builtin_ctzll(stops) >> 3);
                return;
            }
            p += 8;
        }
        while (p != end && plainStringByte(*p)) p++;
        at = p;
    }

    // One escape at its backslash.
    bool escape() {
        if (++at == end) return false;
        unsigned char e = *at++;
        switch (e) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            return true;
        case 'u': {
            if (end - at < 4) return false;
            int value = 0;
            for (int i = 0; i < 4; i++) {
                int digit = hexDigit(at[i]);
                if (digit < 0) return false;
                value = value * 16 + digit;
            }
            if (value >= 0xD800 && value <= 0xDFFF) return false; // pairs left to the decoder
            at += 4;
            return true;
        }
        default:
            return false;
        }
    }

    // A string at its opening quote; `escaped` tells whether it had an escape.
    bool string(bool &escaped) {
        at++; // the quote
        bool anyEscape = false;
        for (;;) {
            skipPlainRun();
            if (at == end) return false;
            unsigned char c = *at;
            if (c == '"') {
                at++;
                escaped = anyEscape;
                return true;
            }
            if (c == '\\') {
                anyEscape = true;
                if (!escape()) return false;
            } else if (c >= 0x80) {
                if (!utf8Sequence()) return false;
            } else {
                return false; // a control byte
            }
        }
    }

    // Digits from `at`; how many.
    size_t digitRun() {
        const unsigned char *start = at, *p = at;
        while (p != end && isDigit(*p)) p++;
        at = p;
        return size_t(p - start);
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
        if (at == end) return false;
        const unsigned char *first = at;
        // Wraps past 19 digits (unsigned): only read for 18 digits at most.
        uint64_t magnitude = 0;
        if (*at == '0') {
            at++;
        } else if (isDigit(*at)) {
            const unsigned char *p = at;
            unsigned digit = unsigned(*p - '0');
            do {
                magnitude = magnitude * 10 + digit;
                if (++p == end) break;
                digit = unsigned(*p - '0');
            } while (digit < 10);
            at = p;
        } else {
            return false;
        }
        size_t digits = size_t(at - first);
        integer = true;
        size_t allDigits = digits;
        if (at != end && *at == '.') {
            integer = false;
            at++;
            size_t fraction = digitRun();
            if (fraction == 0) return false;
            allDigits += fraction;
        }
        if (at != end && (*at == 'e' || *at == 'E')) {
            integer = false;
            at++;
            if (at != end && (*at == '+' || *at == '-')) at++;
            size_t exponent = digitRun();
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

    // true, false or null at its first letter: `word` of `length` (4 or 5) bytes.
    bool literal(const char *word, size_t length) {
        if (size_t(end - at) < length) return false;
        if (std::memcmp(at, word, 4) != 0 || (length == 5 && at[4] != word[4])) return false;
        at += length;
        return true;
    }

    // Takes `c` if it is next; else skips any space (then not `plain`) and takes `c` if it is
    // next then.
    bool takeInside(unsigned char c, bool &plain) {
        if (at != end && *at == c) {
            at++;
            return true;
        }
        if (skipSpace()) plain = false;
        if (at != end && *at == c) {
            at++;
            return true;
        }
        return false;
    }

    // An array or object at its opening bracket, nested at `depth` + 1.
    bool container(int depth, bool &plain) {
        if (depth + 1 > kScanMaxDepth) return false;
        bool object = *at == '{';
        unsigned char close = object ? '}' : ']';
        KeyList keys; // for the duplicates that orjson would merge (then not plain)
        at++;
        if (takeInside(close, plain)) return true;
        for (;;) {
            if (object) {
                const unsigned char *keyStart = at + 1;
                bool escaped;
                if (at == end || *at != '"' || !string(escaped)) return false;
                if (plain) {
                    std::string_view key(reinterpret_cast<const char *>(keyStart), size_t(at - 1 - keyStart));
                    if (escaped || !keys.add(key)) plain = false;
                }
                if (!takeInside(':', plain)) return false;
                if (skipSpace()) plain = false;
            }
            bool childPlain;
            if (!value(depth + 1, nullptr, childPlain)) return false;
            if (!childPlain) plain = false;
            if (takeInside(',', plain)) {
                if (skipSpace()) plain = false;
                continue;
            }
            if (at == end || *at != close) return false;
            at++;
            return true;
        }
    }

    // Any value, nested at `depth` (the top-level object is 1). `plain` is set when
    // orjson.dumps(orjson.loads(text)) gives the text back: see ScannedValue::plain.
    // Inlined where it is read (a call and its register saves per value cost more than a
    // scalar's scan); the recursion is container's call. Space before the value is skipped
    // here (a case of the dispatch rather than a test before it); a container skips it first
    // itself, as it counts against the container's `plain`.
    __attribute__((always_inline)) bool value(int depth, ScannedValue *out, bool &plain) {
        if (at == end) return false;
        const unsigned char *start = at;
        JsonKind kind;
        int64_t integer = 0;
        plain = true;
    dispatch:
        switch (kValueStart[*at]) {
        case ValueStart::Space:
            skipSpace();
            if (at == end) return false;
            start = at;
            goto dispatch;
        case ValueStart::Container:
            if (!container(depth, plain)) return false;
            kind = *start == '{' ? JsonKind::Object : JsonKind::Array;
            break;
        case ValueStart::String: {
            bool escaped;
            if (!string(escaped)) return false;
            kind = JsonKind::String;
            plain = !escaped;
            break;
        }
        case ValueStart::True:
            if (!literal("true", 4)) return false;
            kind = JsonKind::True;
            break;
        case ValueStart::False:
            if (!literal("false", 5)) return false;
            kind = JsonKind::False;
            break;
        case ValueStart::Null:
            if (!literal("null", 4)) return false;
            kind = JsonKind::Null;
            break;
        case ValueStart::Number: {
            bool isInteger = false;
            if (!number(isInteger, plain, integer)) return false;
            kind = isInteger ? JsonKind::Integer : JsonKind::Number;
            if (!isInteger) plain = false;
            break;
        }
        default:
            return false;
        }
        if (out) {
            out->kind = kind;
            out->raw = std::string_view(reinterpret_cast<const char *>(start), size_t(at - start));
            out->plain = plain;
            out->integer = integer;
        }
        return true;
    }

    // Skips any space, then takes `c` if it is next (it usually is, with no space before it).
    bool take(unsigned char c) {
        if (at != end && *at == c) {
            at++;
            return true;
        }
        skipSpace();
        if (at != end && *at == c) {
            at++;
            return true;
        }
        return false;
    }

    // A top-level key at its opening quote, and the colon after it: the field it names (null
    // for another key) and its text. A known key is matched with its closing quote and the
    // colon in one masked word compare; anything else (an unknown key, an escape, space before
    // the colon, a key near the end of the text) is read as a string, then named.
    bool keyAndColon(RealtimeScan &out, ScannedValue *&field, std::string_view &text) {
        const unsigned char *body = at + 1;
        if (end - body >= 8) {
            uint64_t word = loadWord(body);
            field = nullptr;
            size_t size = 0;
            switch (word & 0xFF) {
            case 'i':
                if ((word & 0xFFFFFFFF) == wordOf("id\":")) field = &out.id, size = 2;
                break;
            case 't':
                if ((word & 0xFFFFFFFFFFFF) == wordOf("type\":")) field = &out.type, size = 4;
                else if ((word & 0xFFFFFFFFFFFFFF) == wordOf("topic\":")) field = &out.topic, size = 5;
                break;
            case 'd':
                if ((word & 0xFFFFFFFFFFFF) == wordOf("data\":")) field = &out.data, size = 4;
                break;
            case 'e':
                if ((word & 0xFFFFFFFFFFFF) == wordOf("echo\":")) field = &out.echo, size = 4;
                break;
            case 'm':
                if (word == wordOf("messages") && end - body >= 10 && body[8] == '"' && body[9] == ':')
                    field = &out.messages, size = 8;
                break;
            }
            if (field) {
                text = std::string_view(reinterpret_cast<const char *>(body), size);
                at = body + size + 2;
                return true;
            }
        }
        bool escaped;
        if (!string(escaped) || escaped) return false;
        text = std::string_view(reinterpret_cast<const char *>(body), size_t(at - 1 - body));
        field = fieldNamed(out, text.data(), text.size());
        return take(':');
    }

    // An object at `at` ({), at `depth` (the top-level message is 1), its fields recorded in
    // `out` (set here), the filter applied to its type; with `items`, its "messages" array's
    // elements scanned the same way into them. A second key naming a field finds the field
    // present; other keys are listed to find their duplicates.
    // {"type":"PING","id":N}: the PING our clients send (the JavaScript client's request()
    // writes its keys in this order), N a canonical integer of 1-16 digits within 2^53.
    // Recorded as the loop in message() records it, in one pass: true when taken; false when
    // the text is any other, for message() to read (it is also false when the filter refuses
    // PING, and message() then refuses it too).
    bool canonicalPing(RealtimeScan &out, ScanTypeFilter filter) {
        constexpr size_t kHead = 20; // {"type":"PING","id":
        if (size_t(end - at) < kHead + 2 || loadWord(at) != wordOf("{\"type\":") ||
            loadWord(at + 8) != wordOf("\"PING\",\"") || (loadWord(at + 12) >> 32) != (wordOf("id\":") & 0xFFFFFFFF)) {
            return false;
        }
        const unsigned char *digits = at + kHead, *p = digits;
        uint64_t magnitude = 0;
        while (p != end && isDigit(*p) && p - digits < 17) magnitude = magnitude * 10 + unsigned(*p++ - '0');
        size_t count = size_t(p - digits);
        if (count == 0 || count > 16 || (count > 1 && *digits == '0') || magnitude > (uint64_t(1) << 53) || p == end ||
            *p != '}') {
            return false;
        }
        if (filter != pingFilter) {
            pingCode = filter ? filter(std::string_view(reinterpret_cast<const char *>(at) + 9, 4)) : -1;
            pingFilter = filter;
        }
        if (filter && pingCode < 0) return false;
        out.typeCode = pingCode;
        out.type.kind = JsonKind::String;
        out.type.raw = std::string_view(reinterpret_cast<const char *>(at) + 8, 6);
        out.type.plain = true;
        out.id.kind = JsonKind::Integer;
        out.id.raw = std::string_view(reinterpret_cast<const char *>(digits), count);
        out.id.plain = true;
        out.id.integer = int64_t(magnitude);
        out.keys = 2;
        at = p + 1;
        return true;
    }

    bool message(int depth, RealtimeScan &out, ScanTypeFilter filter, ScannedItems *items) {
        if (atEnd() || *at != '{') return false;
        if (canonicalPing(out, filter)) return true;
        at++;
        KeyList others;
        size_t count = 0;
        if ((atEnd() || *at != '"') && take('}')) {
            out.keys = 0;
            return true;
        }
        for (;;) {
            if (atEnd() || *at != '"') {
                skipSpace();
                if (atEnd() || *at != '"') return false;
            }
            ScannedValue *field;
            std::string_view name;
            if (!keyAndColon(out, field, name)) return false;
            if (count == kScanMaxKeys) return false;
            if (field ? field->present() : !others.addNew(name)) return false;
            count++;
            if (field == &out.messages && items) skipSpace();
            if (field == &out.messages && items && !atEnd() && *at == '[') {
                if (!itemsOf(depth, out.messages, *items)) return false;
            } else {
                bool plain;
                if (!value(depth, field, plain)) return false;
                // (A string's raw text has its two quotes: text() without its checks.)
                if (filter && field == &out.type) {
                    int code = out.type.plainString()
                                   ? filter(std::string_view(out.type.raw.data() + 1, out.type.raw.size() - 2))
                                   : -1;
                    if (code < 0) return false;
                    out.typeCode = code;
                }
            }
            if (!atEnd() && *at == ',') {
                at++;
                continue;
            }
            if (!atEnd() && *at == '}') {
                at++;
                break;
            }
            if (take(',')) continue;
            if (atEnd() || *at != '}') return false;
            at++;
            break;
        }
        out.keys = count;
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
                RealtimeScan *item = new (&items.scans[items.count]) RealtimeScan; // cleared by its initializers
                // message() tries the canonical PING first too; tried here, a PING item is
                // taken without message()'s own setting up.
                bool ping = !atEnd() && *at == '{' && canonicalPing(*item, items.filter);
                if (!ping && !message(depth + 2, *item, items.filter, nullptr)) return false;
                items.count++;
                if (take(',')) {
                    skipSpace();
                    continue;
                }
                if (atEnd() || *at != ']') return false;
                at++;
                break;
            }
        }
        array.kind = JsonKind::Array;
        array.raw = std::string_view(reinterpret_cast<const char *>(start), size_t(at - start));
        array.plain = false; // not worked out here
        return true;
    }
};

} // namespace

bool scanRealtimeMessage(std::string_view message, RealtimeScan &out, ScanTypeFilter filter, ScannedItems *items) {
    clear(out);
    if (items) items->count = 0;
    Scanner scanner{reinterpret_cast<const unsigned char *>(message.data()),
                    reinterpret_cast<const unsigned char *>(message.data()) + message.size()};
    scanner.skipSpace();
    if (!scanner.message(1, out, filter, items)) return false;
    scanner.skipSpace();
    return scanner.atEnd();
}

} // namespace uws
