// libFuzzer target: scanRealtimeMessage, the realtime layer's scanner of one JSON object.
//
// The input is the message's bytes, scanned from an exactly sized copy, and checked against
// a reference written here independently: a plain recursive-descent JSON validator (RFC 8259,
// no limits but a recursion guard) that also lists the top-level members. Checked:
//  - soundness: a text the scanner knows is valid JSON for the reference, an object whose keys
//    have no escape and are distinct, with the same count, and each recorded field's raw text
//    is the reference's value text for that key; a plain value has no backslash, no float and
//    no whitespace outside strings; a plain integer is canonical decimal within +-2^53 and
//    its value prints as its text;
//  - completeness for everyday messages: a valid object with ASCII text only, no escape, no
//    fraction or exponent, integers of 15 digits at most, at most 10 levels and kScanMaxKeys
//    distinct keys is known;
//  - a known text followed by one more non-space byte is not;
//  - with items (a BATCH's "messages" scanned with the message): known only when known
//    without, with the same top-level fields; the items are then the reference's elements of
//    that array, in order, each an object whose fields are checked as the message's are.
// And sameness with the byte-at-a-time scanner the word-at-a-time one replaced
// (cpp/tests/realtime_scan_reference.h): the same verdict and every recorded field, without a
// filter, with the dispatcher's filters, and with items (capacities 8 and 2).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../tests/realtime_scan_reference.h"
#include "fuzz_support.h"
#include "uws/RealtimeScan.h"

namespace {

struct Member {
    std::string_view key; // raw, between the quotes
    std::string_view value;
};

// The reference validator. `simple` is cleared by anything outside the everyday subset.
struct Reference {
    std::string_view text;
    size_t at = 0;
    bool simple = true;
    int maxDepth = 0;

    bool end() const { return at >= text.size(); }
    char peek() const { return text[at]; }
    void space() {
        while (!end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) at++;
    }
    static bool hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

    // A string; true when valid. Raw UTF-8 is checked by decoding every sequence.
    bool string() {
        if (end() || peek() != '"') return false;
        at++;
        while (!end()) {
            unsigned char c = static_cast<unsigned char>(text[at]);
            if (c == '"') {
                at++;
                return true;
            }
            if (c < 0x20) return false;
            if (c == '\\') {
                simple = false;
                at++;
                if (end()) return false;
                char e = text[at++];
                if (e == 'u') {
                    if (text.size() - at < 4) return false;
                    for (int i = 0; i < 4; i++) {
                        if (!hex(text[at + i])) return false;
                    }
                    at += 4;
                } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
                    return false;
                }
                continue;
            }
            if (c < 0x80) {
                at++;
                continue;
            }
            simple = false;
            // Decode one sequence and check the code point's range.
            int length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
            if (length == 0 || text.size() - at < size_t(length)) return false;
            uint32_t point = c & (0x7F >> length);
            for (int i = 1; i < length; i++) {
                unsigned char next = static_cast<unsigned char>(text[at + i]);
                if ((next & 0xC0) != 0x80) return false;
                point = (point << 6) | (next & 0x3F);
            }
            uint32_t least = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000;
            if (point < least || point > 0x10FFFF || (point >= 0xD800 && point <= 0xDFFF)) return false;
            at += size_t(length);
        }
        return false;
    }

    bool digits(size_t &count) {
        count = 0;
        while (!end() && peek() >= '0' && peek() <= '9') {
            at++;
            count++;
        }
        return count > 0;
    }

    bool number() {
        if (!end() && peek() == '-') at++;
        if (end()) return false;
        size_t count;
        if (peek() == '0') {
            at++;
        } else if (peek() >= '1' && peek() <= '9') {
            digits(count);
            if (count > 15) simple = false;
        } else {
            return false;
        }
        if (!end() && peek() == '.') {
            simple = false;
            at++;
            if (!digits(count)) return false;
        }
        if (!end() && (peek() == 'e' || peek() == 'E')) {
            simple = false;
            at++;
            if (!end() && (peek() == '+' || peek() == '-')) at++;
            if (!digits(count)) return false;
        }
        return true;
    }

    bool value(int depth, std::vector<Member> *members) {
        if (depth > 200) return false; // a guard for the stack only
        if (depth > maxDepth) maxDepth = depth;
        space();
        if (end()) return false;
        char c = peek();
        if (c == '{' || c == '[') {
            bool object = c == '{';
            char close = object ? '}' : ']';
            at++;
            space();
            if (!end() && peek() == close) {
                at++;
                return true;
            }
            for (;;) {
                space();
                Member member;
                if (object) {
                    size_t keyStart = at;
                    if (!string()) return false;
                    member.key = text.substr(keyStart + 1, at - keyStart - 2);
                    space();
                    if (end() || peek() != ':') return false;
                    at++;
                    space();
                }
                size_t valueStart = at;
                if (!value(depth + 1, nullptr)) return false;
                member.value = text.substr(valueStart, at - valueStart);
                if (members && object) members->push_back(member);
                space();
                if (end()) return false;
                if (peek() == close) {
                    at++;
                    return true;
                }
                if (peek() != ',') return false;
                at++;
            }
        }
        if (c == '"') return string();
        if (text.substr(at, 4) == "true" || text.substr(at, 4) == "null") {
            at += 4;
            return true;
        }
        if (text.substr(at, 5) == "false") {
            at += 5;
            return true;
        }
        return number();
    }
};

void checkField(const uws::ScannedValue &field, std::string_view key, const std::vector<Member> &members) {
    const Member *found = nullptr;
    for (const Member &member : members) {
        if (member.key == key) found = &member;
    }
    FUZZ_CHECK(field.present() == (found != nullptr));
    if (!found) return;
    FUZZ_CHECK(field.raw == found->value);
    if (field.kind == uws::JsonKind::String) {
        FUZZ_CHECK(field.raw.size() >= 2 && field.raw.front() == '"' && field.raw.back() == '"');
        if (field.plain) FUZZ_CHECK(field.raw.find('\\') == std::string_view::npos);
    }
    if (field.plain) {
        // Copyable: no escape, no float, no whitespace outside strings (toggling on quotes is
        // exact without escapes).
        FUZZ_CHECK(field.kind != uws::JsonKind::Number);
        FUZZ_CHECK(field.raw.find('\\') == std::string_view::npos);
        bool inString = false;
        char previous = 0;
        for (char c : field.raw) {
            if (c == '"') inString = !inString;
            if (!inString) {
                FUZZ_CHECK(c != ' ' && c != '\n' && c != '\t' && c != '\r' && c != '.');
                FUZZ_CHECK(!((c == 'e' || c == 'E') && previous >= '0' && previous <= '9')); // an exponent
            }
            previous = c;
        }
    }
    if (field.plainInteger()) {
        FUZZ_CHECK(std::to_string(field.integer) == std::string(field.raw));
        FUZZ_CHECK(field.integer <= (int64_t(1) << 53) && field.integer >= -(int64_t(1) << 53));
        FUZZ_CHECK(field.raw != "-0");
    }
}

// The elements of a JSON array's text, by the reference (the text is known to be valid).
std::vector<std::string_view> elements(std::string_view array) {
    std::vector<std::string_view> out;
    Reference reference{array};
    reference.at = 1;
    reference.space();
    if (!reference.end() && reference.peek() == ']') return out;
    for (;;) {
        size_t start = reference.at;
        if (!reference.value(1, nullptr)) return out;
        out.push_back(array.substr(start, reference.at - start));
        reference.space();
        if (reference.end() || reference.peek() != ',') return out;
        reference.at++;
        reference.space();
    }
}

// The scanner and the reference agree on `text` in every mode.
void checkSameAsReference(std::string_view text) {
    for (int mode = 0; mode < 4; mode++) {
        uws::ScanTypeFilter filter = mode == 0 ? nullptr : uws_reference::topType;
        size_t capacity = mode == 3 ? 2 : 8;
        uws::RealtimeScan itemsA[8], itemsB[8];
        uws::ScannedItems listA{itemsA, capacity, mode == 1 ? nullptr : uws_reference::itemType};
        uws::ScannedItems listB{itemsB, capacity, mode == 1 ? nullptr : uws_reference::itemType};
        bool withItems = mode >= 2;
        uws::RealtimeScan a, b;
        bool knownA = uws::scanRealtimeMessage(text, a, filter, withItems ? &listA : nullptr);
        bool knownB = uws_reference::scanRealtimeMessage(text, b, filter, withItems ? &listB : nullptr);
        FUZZ_CHECK(uws_reference::scanDifference(knownA, a, knownB, b, withItems ? &listA : nullptr,
                                                 withItems ? &listB : nullptr)
                       .empty());
    }
}

void checkFields(const uws::RealtimeScan &scan, const std::vector<Member> &members) {
    checkField(scan.type, "type", members);
    checkField(scan.id, "id", members);
    checkField(scan.topic, "topic", members);
    checkField(scan.data, "data", members);
    checkField(scan.echo, "echo", members);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::unique_ptr<char[]> copy = fuzz::copyOf(reinterpret_cast<const char *>(data), size);
    std::string_view text(copy.get(), size);
    uws::RealtimeScan scan;
    bool known = uws::scanRealtimeMessage(text, scan);
    checkSameAsReference(text);

    Reference reference{text};
    std::vector<Member> members;
    reference.space();
    bool isObject = !reference.end() && reference.peek() == '{';
    bool valid = reference.value(0, &members);
    reference.space();
    valid = valid && reference.end();

    bool distinct = true;
    for (size_t i = 0; i < members.size(); i++) {
        for (size_t j = 0; j < i; j++) {
            if (members[i].key == members[j].key) distinct = false;
        }
    }
    if (known) {
        FUZZ_CHECK(valid && isObject);
        FUZZ_CHECK(distinct);
        FUZZ_CHECK(scan.keys == members.size());
        for (const Member &member : members) FUZZ_CHECK(member.key.find('\\') == std::string_view::npos);
        checkFields(scan, members);
        checkField(scan.messages, "messages", members);
        std::string longer(text);
        longer += 'x';
        uws::RealtimeScan again;
        FUZZ_CHECK(!uws::scanRealtimeMessage(longer, again));
    }
    // Again with items: a subset of the known texts, the same fields, the items checked.
    uws::RealtimeScan itemScans[8];
    uws::ScannedItems items;
    items.scans = itemScans;
    items.capacity = 8;
    uws::RealtimeScan withItems;
    if (uws::scanRealtimeMessage(text, withItems, nullptr, &items)) {
        FUZZ_CHECK(known);
        FUZZ_CHECK(withItems.keys == scan.keys && withItems.type.raw == scan.type.raw && withItems.id.raw == scan.id.raw);
        FUZZ_CHECK(withItems.messages.raw == scan.messages.raw && withItems.messages.kind == scan.messages.kind);
        if (withItems.messages.kind == uws::JsonKind::Array) {
            std::vector<std::string_view> list = elements(withItems.messages.raw);
            FUZZ_CHECK(list.size() == items.count && items.count <= 8);
            for (size_t i = 0; i < list.size() && i < items.count; i++) {
                Reference item{list[i]};
                std::vector<Member> itemMembers;
                FUZZ_CHECK(!list[i].empty() && list[i][0] == '{' && item.value(0, &itemMembers));
                FUZZ_CHECK(itemScans[i].keys == itemMembers.size());
                checkFields(itemScans[i], itemMembers);
            }
        } else {
            FUZZ_CHECK(items.count == 0);
        }
    }
    if (valid && isObject && reference.simple && distinct && reference.maxDepth <= 10 &&
        members.size() <= uws::kScanMaxKeys) {
        FUZZ_CHECK(known);
    }
    return 0;
}
