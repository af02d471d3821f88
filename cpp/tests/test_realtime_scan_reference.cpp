// scanRealtimeMessage (cpp/src/RealtimeScan.cpp, word at a time) against the byte-at-a-time
// scanner it replaced (realtime_scan_reference.h): the same verdict and the same recorded
// fields on a corpus of texts made to hit the new code's edges: every byte value at every
// position of a string (across the 8-byte words), quotes, backslashes and escapes at each
// offset from a word boundary, UTF-8 sequences valid, split, truncated, overlong and
// surrogate, numbers around 18 digits, -0, leading zeros and exponents, nesting at the limit
// and either side of it, every prefix of each text and each text with one byte more. Each
// text is scanned from an exactly sized heap copy (ASan sees a read past its end), without a
// filter, with the dispatcher's filters, and with a BATCH's items.
#include <memory>
#include <string>
#include <vector>

#include "check.h"
#include "realtime_scan_reference.h"
#include "uws/RealtimeScan.h"

namespace {

using uws::RealtimeScan;
using uws::ScannedItems;

size_t compared = 0;

// Scans `text` both ways in every mode and checks they agree.
void same(const std::string &text) {
    std::unique_ptr<char[]> copy(new char[text.size() ? text.size() : 1]);
    std::copy(text.begin(), text.end(), copy.get());
    std::string_view exact(copy.get(), text.size());
    for (int mode = 0; mode < 4; mode++) {
        uws::ScanTypeFilter filter = mode == 0 ? nullptr : uws_reference::topType;
        size_t capacity = mode == 3 ? 2 : 8;
        RealtimeScan itemsA[8], itemsB[8];
        ScannedItems listA{itemsA, capacity, mode == 1 ? nullptr : uws_reference::itemType};
        ScannedItems listB{itemsB, capacity, mode == 1 ? nullptr : uws_reference::itemType};
        bool withItems = mode >= 2;
        RealtimeScan a, b;
        bool knownA = uws::scanRealtimeMessage(exact, a, filter, withItems ? &listA : nullptr);
        bool knownB = uws_reference::scanRealtimeMessage(exact, b, filter, withItems ? &listB : nullptr);
        std::string difference =
            uws_reference::scanDifference(knownA, a, knownB, b, withItems ? &listA : nullptr, withItems ? &listB : nullptr);
        check::Scope scope(check::quote(text) + " mode " + std::to_string(mode));
        CHECK_EQ(difference, std::string());
        compared++;
    }
}

// `text`, each of its prefixes and it with one more byte (a space, a quote, an 'x').
void sameWithEdges(const std::string &text) {
    for (size_t length = 0; length <= text.size(); length++) same(text.substr(0, length));
    for (char more : {' ', '"', 'x', '}'}) same(text + more);
}

std::vector<std::string> messages() {
    return {
        R"({"type":"PING","id":1234})",
        R"({"type":"PUBLISH","topic":"bench/none","data":{"seq":1234,"text":"abcdefghij"},"id":1234})",
        R"({"type":"SUBSCRIBE","topic":"bench/3","id":1234})",
        R"({"type":"BATCH","id":1234,"messages":[{"type":"PING","id":1},{"type":"PING","id":2},{"type":"PING","id":3}]})",
        R"({"type":"BATCH","messages":[ {"type":"PING","id":1} ,{"type":"SUBSCRIBE","topic":"a","x":[{"y":2}]},{}]})",
        R"({"type":"BATCH","messages":[{"type":"ECHO"}]})",
        R"({"type":"ECHO","id":"r-1","ts":1764777600123,"text":"hello world"})",
        " \t\r\n{ \"type\" :\t\"PING\" ,\n\"id\" : -0 , \"data\" : [ 1 , { \"a\" : [ ] } ] , \"echo\" : true } \n",
        R"({"a":"\"\\\/\b\f\n\r\t\u0041\u00e9\uFFFF\u0000","b":"\ud800","c":"\uDFFF","d":"\uD7FF\uE000"})",
        R"({"data":{"a":1,"a":2},"echo":false,"topic":null,"id":[true,false,null]})",
        R"({"data":{"\u0061":1,"b":{"c":{}}},"id":{"x":1, "y":2}})",
        R"({"type":"PING","type":"PING"})",
        R"({"id":1,"id":1})",
        R"({"x":1,"y":2,"x":3})",
        R"({"messages":[],"messages":[]})",
        R"({"typ\u0065":"PING"})",
        R"({"type":"P\u0049NG","id":1})",
        R"({"type":1,"id":2})",
        R"({"tYpe":"PING","ID":1,"topics":"a","dat":1,"echoes":2,"message":3,"messagesX":4})",
        R"({"messages" : [{"type":"PING"}],"id" :1,"topic"  :"a","type"
:"PING","data"	:{},"echo" :true})",
        R"({"messages":"x","messages!":1,"id:":2,"type:":3,"typ":4,"i":5,"":6})",
        R"({"type":"PUBLISH","topic":"a","data":[{"type":"x","id":1,"topic":2}],"echo":false,"id":0})",
        "{\"type\":\"caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC \xEF\xBF\xBF \xF4\x8F\xBF\xBF\"}",
    };
}

void testMessagesAndTheirEdges() {
    for (const std::string &text : messages()) sameWithEdges(text);
}

// Every byte at every position of a text, the string positions crossing word boundaries.
void testEveryByteAtEveryPosition() {
    const std::string text = R"({"type":"PUBLISH","topic":"abcdefghijklmnopqrstuvw","id":12})";
    for (size_t position = 0; position < text.size(); position++) {
        for (int byte = 0; byte < 256; byte++) {
            std::string changed = text;
            changed[position] = char(byte);
            same(changed);
        }
    }
}

// A stop byte (or escape, or UTF-8 sequence) at each offset of strings of each length.
void testStopsAtEveryOffset() {
    const std::string stops[] = {
        "\"", "\\", "\\\"", "\\\\", "\\/", "\\n", "\\u0041", "\\u00", "\\uD800", "\\uDBFF\\uDC00", "\\x", "\x01",
        "\x1F", "\x7F", "\x80", "\xC2\x80", "\xC2", "\xC1\xBF", "\xC0\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xE0\x9F\xBF",
        "\xE0\x80\x80", "\xED\x9F\xBF", "\xED\xA0\x80", "\xEF\xBF\xBF", "\xE2\x82", "\xF0\x90\x80\x80", "\xF0\x8F\xBF\xBF",
        "\xF4\x8F\xBF\xBF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xF0\x9F\x98", "\xFF", "\xFE", " ", "~",
    };
    for (const std::string &stop : stops) {
        for (size_t length = 0; length <= 24; length++) {
            for (size_t offset = 0; offset <= length; offset++) {
                std::string body(length, 'a');
                body.insert(offset, stop);
                same("{\"type\":\"PING\",\"topic\":\"" + body + "\",\"id\":1}");
                same("{\"" + body + "\":1}");
                same("{\"t\":\"" + body + "\"}");
                same("{\"t\":\"" + body); // the string at the end of the text
            }
        }
    }
}

void testNumbers() {
    const std::string numbers[] = {
        "0", "-0", "00", "01", "-01", "-", "--1", "+1", "1", "-1", "12345678901234567", "123456789012345678",
        "1234567890123456789", "12345678901234567890", "999999999999999999", "-999999999999999999",
        "9007199254740992", "9007199254740993", "-9007199254740992", "-9007199254740993", "18446744073709551615",
        "18446744073709551616", "1.5", "-0.0", "0.", ".5", "1.e1", "1e5", "1E+2", "1e-2", "1e", "1e+", "1e100",
        "1e400", "1e99", "1e09", "0e0", "-0e-0", "1.00000000000000000000000000000000000000", "1.000000000000000000000000000000000000000",
        "1.0000000000000000000000000000000000000000", "0x10", "1_000", "Infinity", "NaN", "true", "tru", "false", "fals",
        "falsE", "null", "nul", "nulL",
    };
    for (const std::string &number : numbers) {
        sameWithEdges("{\"id\":" + number + "}");
        same("{\"id\":" + number + ",\"type\":\"PING\"}");
        same("{\"data\":[" + number + "],\"id\":" + number + " }");
    }
}

void testNesting() {
    for (int depth = uws::kScanMaxDepth - 4; depth <= uws::kScanMaxDepth + 2; depth++) {
        same("{\"data\":" + std::string(size_t(depth), '[') + std::string(size_t(depth), ']') + "}");
        std::string objects = "{\"data\":";
        for (int i = 0; i < depth; i++) objects += "{\"a\":";
        objects += "1";
        for (int i = 0; i < depth; i++) objects += "}";
        same(objects + "}");
        same(R"({"type":"BATCH","messages":[{"type":"PING","a":)" + std::string(size_t(depth), '[') +
             std::string(size_t(depth), ']') + "}]}");
    }
}

void testKeyCounts() {
    for (size_t count = uws::kScanMaxKeys - 1; count <= uws::kScanMaxKeys + 1; count++) {
        std::string text = "{";
        for (size_t i = 0; i < count; i++) text += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
        same(text + "}");
        same(text + ",\"type\":\"PING\"}");
        std::string nested = "{\"data\":" + text + "}}";
        same(nested);
    }
}

} // namespace

// The canonical PING ({"type":"PING","id":N}, read in one pass) and its near misses: each id
// of testNumbers' and of 15-17 digits, alone and as BATCH items, every byte at every position
// of it, and the text cut or extended at every length.
void testCanonicalPing() {
    const std::string ids[] = {
        "0", "-0", "00", "01", "-1", "1", "9", "10", "1234", "123456789012345", "999999999999999", "1234567890123456",
        "9007199254740992", "9007199254740993", "9999999999999999", "12345678901234567", "99999999999999999", "1.0",
        "1e2", "1 ", " 1", "\"1\"", "null", "true", "[1]", "{}", "", "1,\"x\":2", "1,\"id\":2", "1,\"type\":\"PING\"",
    };
    for (const std::string &id : ids) {
        std::string ping = "{\"type\":\"PING\",\"id\":" + id + "}";
        sameWithEdges(ping);
        same(R"({"type":"BATCH","messages":[)" + ping + "," + ping + "]}");
        same(R"({"type":"BATCH","id":7,"messages":[)" + ping + R"(,{"type":"PING","id":2}],"x":1})");
    }
    const std::string text = R"({"type":"PING","id":1234567})";
    for (size_t position = 0; position < text.size(); position++) {
        for (int byte = 0; byte < 256; byte++) {
            std::string changed = text;
            changed[position] = char(byte);
            same(changed);
            same(R"({"type":"BATCH","messages":[)" + changed + "]}");
        }
    }
}

int main() {
    RUN_TEST(testCanonicalPing);
    RUN_TEST(testMessagesAndTheirEdges);
    RUN_TEST(testEveryByteAtEveryPosition);
    RUN_TEST(testStopsAtEveryOffset);
    RUN_TEST(testNumbers);
    RUN_TEST(testNesting);
    RUN_TEST(testKeyCounts);
    std::printf("test_realtime_scan_reference: %zu scans compared\n", compared);
    return check::report("test_realtime_scan_reference");
}
