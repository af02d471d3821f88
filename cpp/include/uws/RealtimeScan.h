// A strict scanner for one realtime protocol message (a JSON object), without decoding it.
//
// The realtime layer's native dispatcher answers the built-ins (PING, SUBSCRIBE, ...) from the
// bytes when this scanner knows the message: it reads the top-level object once, validates the
// whole text as JSON (RFC 8259), and records where the fields "type", "id", "topic" and "data"
// are (and "echo", PUBLISH's flag, and "messages", a BATCH's items: scanned as messages too
// when the caller asks). It has two answers only: "known" (scanRealtimeMessage returns true: the text is JSON
// that orjson.loads accepts, with the fields as recorded) and "I don't know" (false: the caller
// decodes the message as before, and that path accepts or words the error). It says "I don't
// know" for everything where its result might differ from orjson.loads followed by the Python
// path's dict lookups:
//  - invalid JSON of any kind (the decoder words the error);
//  - a top-level key with an escape, two equal top-level keys (the decoder keeps the last
//    value), more than kScanMaxKeys top-level keys;
//  - nesting deeper than kScanMaxDepth (orjson's own limit is deeper: no text at its limit
//    is known);
//  - an escaped surrogate (\uD800-\uDFFF: orjson pairs them or refuses a lone one);
//  - a number orjson might not read as the same value: an integer of more than 18 digits, a
//    fraction or exponent with more than kScanMaxNumberDigits digits or an exponent of more
//    than two digits (1e400 is an error in orjson, 1e99 is not);
//  - bytes that are not UTF-8 (a text frame's are checked by the core already).
// It uses no Python: fuzzed by cpp/fuzz/fuzz_realtime_scan.cpp, unit tested by
// cpp/tests/test_realtime_scan.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace uws {

constexpr int kScanMaxDepth = 32;
constexpr size_t kScanMaxKeys = 32;
constexpr size_t kScanMaxNumberDigits = 40;

enum class JsonKind : uint8_t { Absent, Null, True, False, Integer, Number, String, Array, Object };

// One top-level field's value. The members are ordered largest first (32 bytes, no holes but
// the tail), so that clearing a RealtimeScan, which every scan does, is a few wide stores.
struct ScannedValue {
    // The value's text as it is in the message (a string with its quotes).
    std::string_view raw;
    int64_t integer = 0; // a plain integer's value
    JsonKind kind = JsonKind::Absent;
    // orjson.dumps(orjson.loads(raw)) is `raw` again, so the text can be copied into a reply
    // for the value: a string without escape (its UTF-8 is `text()`); an integer canonical
    // (no leading zeros, not -0) and within +-2^53 (its value is `integer`); true, false,
    // null; an array or object without any whitespace whose elements are all plain, an
    // object's keys escape-free and distinct (at most kScanMaxKeys). Never a fraction or
    // exponent (orjson writes floats its own way).
    bool plain = false;

    bool present() const { return kind != JsonKind::Absent; }
    bool plainString() const { return kind == JsonKind::String && plain; }
    bool plainInteger() const { return kind == JsonKind::Integer && plain; }
    // A string's contents between its quotes (its UTF-8 when plain).
    std::string_view text() const { return raw.size() >= 2 ? raw.substr(1, raw.size() - 2) : std::string_view(); }
};

struct RealtimeScan {
    ScannedValue type, id, topic, data, echo, messages;
    size_t keys = 0; // top-level keys
    // The filter's code for the type (see ScanTypeFilter); -1 without a filter or a "type".
    int typeCode = -1;
};

// Which types the caller answers from a scan, and its code for each (so that the caller does
// not tell the types apart again): a code >= 0 for a type it accepts, recorded as the scan's
// typeCode, or a negative number. The scan stops at the "type" field when its value is not an
// escape-free string that this accepts. It must answer for the type alone (the same code
// every time): a scan may reuse its answer for a type it asked about before.
using ScanTypeFilter = int (*)(std::string_view type);

// A BATCH's items, scanned in the same pass as the message (scanRealtimeMessage's `items`).
struct ScannedItems {
    RealtimeScan *scans = nullptr; // room for `capacity` (constructed here as they are scanned)
    size_t capacity = 0;
    ScanTypeFilter filter = nullptr; // applied to each item's type
    size_t count = 0;                // set by the scan
};

// True when `message` is known (see above), with its fields in `out`; false: "I don't know"
// (or, with a filter, a type the caller does not want: the rest of the text is not read).
// With `items`, a top-level "messages" that is an array is known only when each of its
// elements is an object known as a message (items->filter applied to its type; an item's
// own "messages" is not split), at most items->capacity of them: they are recorded in
// order, their count in items->count (0 without such an array), and messages.plain is
// false. Any other "messages" value is recorded as the other fields are.
bool scanRealtimeMessage(std::string_view message, RealtimeScan &out, ScanTypeFilter filter = nullptr,
                         ScannedItems *items = nullptr);

} // namespace uws
