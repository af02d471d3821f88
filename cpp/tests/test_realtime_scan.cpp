// scanRealtimeMessage: what it knows (valid JSON objects, their fields recorded as they are in
// the text) and what it must leave to the decoder ("I don't know": invalid JSON, duplicate or
// escaped top-level keys, surrogate escapes, numbers orjson may read otherwise, deep nesting).
#include <string>

#include "check.h"
#include "uws/RealtimeScan.h"

namespace {

using uws::JsonKind;
using uws::RealtimeScan;
using uws::scanRealtimeMessage;

bool known(const std::string &text) {
    RealtimeScan scan;
    return scanRealtimeMessage(text, scan);
}

void testFieldsOfAPing() {
    RealtimeScan scan;
    CHECK(scanRealtimeMessage(R"( {"type" : "PING", "id":42, "extra": {"a":[1,2.5e3,true,null]}} )", scan));
    CHECK(scan.type.plainString());
    CHECK_EQ(scan.type.text(), std::string_view("PING"));
    CHECK(scan.id.plainInteger());
    CHECK_EQ(scan.id.integer, int64_t(42));
    CHECK_EQ(scan.id.raw, std::string_view("42"));
    CHECK(!scan.topic.present());
    CHECK(!scan.data.present());
    CHECK_EQ(scan.keys, size_t(3));
}

void testFieldKinds() {
    RealtimeScan scan;
    CHECK(scanRealtimeMessage(R"({"type":"PUBLISH","topic":"a\/b","data":{"x":[1]},"id":"r-1"})", scan));
    CHECK(scan.topic.kind == JsonKind::String);
    CHECK(!scan.topic.plain); // an escape
    CHECK(scan.data.kind == JsonKind::Object);
    CHECK_EQ(scan.data.raw, std::string_view(R"({"x":[1]})"));
    CHECK(scan.id.plainString());
    CHECK_EQ(scan.id.text(), std::string_view("r-1"));

    CHECK(scanRealtimeMessage(R"({"id":null,"type":1})", scan));
    CHECK(scan.id.kind == JsonKind::Null);
    CHECK(scan.type.kind == JsonKind::Integer);
    CHECK(scanRealtimeMessage(R"({"id":-0})", scan));
    CHECK(scan.id.kind == JsonKind::Integer);
    CHECK(!scan.id.plain); // -0 is written back as 0
    CHECK(scanRealtimeMessage(R"({"id":9007199254740992})", scan));
    CHECK(scan.id.plain);
    CHECK(scanRealtimeMessage(R"({"id":9007199254740993})", scan));
    CHECK(!scan.id.plain);
    CHECK(scanRealtimeMessage(R"({"id":-9007199254740992})", scan));
    CHECK(scan.id.plain);
    CHECK_EQ(scan.id.integer, -int64_t(9007199254740992));
    CHECK(scanRealtimeMessage(R"({"id":1.0})", scan));
    CHECK(scan.id.kind == JsonKind::Number);
    CHECK(scanRealtimeMessage(R"({"id":1e2})", scan));
    CHECK(scan.id.kind == JsonKind::Number);
    CHECK(scanRealtimeMessage(R"({"id":[],"data":[]})", scan));
    CHECK(scan.id.kind == JsonKind::Array);
    CHECK(scanRealtimeMessage("{}", scan));
    CHECK_EQ(scan.keys, size_t(0));
    CHECK(!scan.type.present());
    CHECK(scanRealtimeMessage("{\"type\":\"caf\xC3\xA9 \xF0\x9F\x98\x80\"}", scan));
    CHECK(scan.type.plainString());
}

void testPlainValues() {
    // plain: orjson.dumps(orjson.loads(raw)) == raw, so the raw text can be copied.
    struct {
        const char *data;
        bool plain;
    } cases[] = {
        {R"({"a":[1,"x",true,false,null,{"b":{}}],"c":[]})", true},
        {R"({"a":[1, 2]})", false},
        {R"([[1.5] ,2])", false}, // the space after a child that is not plain
        {"[\n [\n  [\n   null\n  ]\n ]\n]", false},
        {R"({"a" :1})", false},
        {R"({"a": 1})", false},
        {R"({"a":1 })", false},
        {R"([ ])", false},
        {R"({"a":1,"a":2})", false},
        {R"({"\u0061":1})", false},
        {R"(["\n"])", false},
        {R"([1.5])", false},
        {R"([1e2])", false},
        {R"([-0])", false},
        {R"([9007199254740993])", false},
        {R"("caf\u00e9")", false},
        {"\"caf\xC3\xA9\"", true},
        {"true", true},
        {"null", true},
        {"-12", true},
    };
    for (const auto &c : cases) {
        check::Scope scope(c.data);
        RealtimeScan scan;
        std::string text = std::string("{\"data\":") + c.data + ",\"echo\":true}";
        CHECK(scanRealtimeMessage(text, scan));
        CHECK_EQ(scan.data.plain, c.plain);
        CHECK_EQ(scan.data.raw, std::string_view(c.data));
        CHECK(scan.echo.kind == JsonKind::True);
    }
}

void testValidJsonIsKnown() {
    const char *texts[] = {
        R"({"a":"\"\\\/\b\f\n\r\t\u0041\u00e9\uFFFF\u0000"})",
        "{\"a\":\"\x7F\"}",
        R"({"a":-0.5e-99,"b":1E+2,"c":0,"d":-1,"e":123456789012345678})",
        "\t\r\n {\"a\" \t:\r\n[ ] , \"b\":{ }}\n",
        R"({"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})", // 30 arrays: depth 31
    };
    for (const char *text : texts) {
        check::Scope scope(text);
        CHECK(known(text));
    }
}

void testUnknown() {
    const std::string texts[] = {
        "", " ", "[]", "\"PING\"", "1", "null", "{", "}", "{\"type\":\"PING\"", "{\"type\":\"PING\"}x",
        "{\"type\":\"PING\"}{}", "{\"type\":\"PING\",}", "{\"type\" \"PING\"}", "{\"type\":}", "{type:1}",
        "{'type':1}", "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":{\"b\"}}", "{\"a\":{\"b\":1,}}", "{\"a\":tru}",
        "{\"a\":True}", "{\"a\":nul}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":-Infinity}", "{\"a\":01}",
        "{\"a\":-01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":+1}", "{\"a\":1e}", "{\"a\":1e+}",
        "{\"a\":0x10}", "{\"a\":1e400}", "{\"a\":1e100}", "{\"a\":1234567890123456789}",
        "{\"a\":1.00000000000000000000000000000000000000000}", "{\"a\":\"\\x41\"}", "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\uD83D\\uDE00\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\\"}", std::string("{\"a\":\"\x01\"}"),
        "{\"a\":\"tab\there\"}", "{\"a\":\"\xC3\"}", "{\"a\":\"\xC0\x80\"}", "{\"a\":\"\xED\xA0\x80\"}",
        "{\"a\":\"\xF4\x90\x80\x80\"}", "{\"a\":\"\xFF\"}", "\xEF\xBB\xBF{}", "\x0C{}", "{}\x0C",
        std::string("{}\0", 3), "{\"a\":1,\"a\":2}", "{\"type\":\"PING\",\"type\":\"PONG\"}",
        "{\"typ\\u0065\":\"PING\"}", "{\"\\u0061\":1}", "{\"a\":1}// comment", "{\"a\":/*x*/1}",
        std::string("{\"a\":") + std::string(32, '[') + std::string(32, ']') + "}",
    };
    for (const std::string &text : texts) {
        check::Scope scope(check::quote(text));
        CHECK(!known(text));
    }
}

int onlyPing(std::string_view type) { return type == "PING" ? 7 : -1; }

void testFilterStopsAtTheType() {
    RealtimeScan scan;
    CHECK(scanRealtimeMessage(R"({"type":"PING","id":1})", scan, onlyPing));
    CHECK_EQ(scan.id.raw, std::string_view("1"));
    CHECK_EQ(scan.typeCode, 7);
    CHECK(!scanRealtimeMessage(R"({"type":"ECHO","id":1})", scan, onlyPing));
    CHECK(!scanRealtimeMessage(R"({"type":"P\u0049NG"})", scan, onlyPing));
    CHECK(!scanRealtimeMessage(R"({"type":1})", scan, onlyPing));
    // Unfiltered, the rest would be read: here it is invalid, and not read.
    CHECK(!scanRealtimeMessage(R"({"type":"ECHO",)", scan, onlyPing));
    CHECK(scanRealtimeMessage(R"({"id":1,"type":"PING"})", scan, onlyPing));
    CHECK_EQ(scan.typeCode, 7);
    CHECK(!scanRealtimeMessage(R"({"type":"PING",})", scan, onlyPing)); // still validated
}

void testKeyLimit() {
    std::string text = "{";
    for (size_t i = 0; i < uws::kScanMaxKeys; i++) text += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
    CHECK(known(text + "}"));
    CHECK(!known(text + ",\"one more\":1}"));
}

void testEveryPrefixOfAKnownTextIsUnknown() {
    std::string text = R"({"type":"PUBLISH","topic":"news","data":{"a":[1,-2.5,"x\n",null,true,false]},"id":7})";
    CHECK(known(text));
    for (size_t length = 0; length < text.size(); length++) {
        check::Scope scope(std::to_string(length));
        CHECK(!known(text.substr(0, length)));
    }
}

// Every type but BATCH, its code its length.
int notBatch(std::string_view type) { return type != "BATCH" ? int(type.size()) : -1; }

void testBatchItemsScannedWithTheMessage() {
    RealtimeScan scan;
    RealtimeScan storage[4];
    uws::ScannedItems items;
    items.scans = storage;
    items.capacity = 4;
    items.filter = notBatch;
    const std::string batch =
        R"({"type":"BATCH","id":3,"messages":[ {"type":"PING","id":1} ,{"type":"SUBSCRIBE","topic":"a","x":[{"y":2}]},{}]})";
    CHECK(scanRealtimeMessage(batch, scan, nullptr, &items));
    CHECK_EQ(items.count, size_t(3));
    CHECK(scan.messages.kind == JsonKind::Array);
    CHECK(!scan.messages.plain);
    CHECK_EQ(scan.messages.raw.front(), '[');
    CHECK_EQ(scan.messages.raw.back(), ']');
    CHECK_EQ(storage[0].type.text(), std::string_view("PING"));
    CHECK_EQ(storage[0].id.raw, std::string_view("1"));
    CHECK_EQ(storage[0].keys, size_t(2));
    CHECK_EQ(storage[0].typeCode, 4); // the filter's code, recorded by the canonical PING's match
    CHECK_EQ(storage[1].typeCode, 9); // and by the general loop
    CHECK_EQ(storage[2].typeCode, -1); // no type
    CHECK_EQ(scan.typeCode, -1);       // no filter
    CHECK_EQ(storage[1].topic.raw, std::string_view(R"("a")"));
    CHECK(!storage[1].id.present());
    CHECK_EQ(storage[2].keys, size_t(0));
    CHECK(!storage[2].type.present());
    // Without items the same text is known, "messages" a plain value like any other.
    CHECK(scanRealtimeMessage(batch, scan));
    CHECK(scan.messages.kind == JsonKind::Array);
    // Known with items only when every element is a known object of an accepted type, and
    // there are no more than the capacity.
    const std::string unknown[] = {
        R"({"type":"BATCH","messages":[7]})", R"({"type":"BATCH","messages":[{"type":"PING"},"x"]})",
        R"({"type":"BATCH","messages":[{"type":"BATCH","messages":[]}]})",
        R"({"type":"BATCH","messages":[{"type":"PING","id":1,"id":2}]})",
        R"({"type":"BATCH","messages":[{"a":1},{"a":2},{"a":3},{"a":4},{"a":5}]})",
        R"({"type":"BATCH","messages":[{"type":"PING"},]})", R"({"type":"BATCH","messages":[{"type":"PING"}})",
        R"({"type":"BATCH","messages":[{"a":1e400}]})",
    };
    for (const std::string &text : unknown) {
        check::Scope scope(text);
        CHECK(!scanRealtimeMessage(text, scan, nullptr, &items));
    }
    CHECK(scanRealtimeMessage(R"({"type":"BATCH","messages":[{"a":1},{"a":2},{"a":3},{"a":4}]})", scan, nullptr, &items));
    CHECK_EQ(items.count, size_t(4));
    CHECK(scanRealtimeMessage(R"({"type":"BATCH","messages":[ ]})", scan, nullptr, &items));
    CHECK_EQ(items.count, size_t(0));
    CHECK(scan.messages.kind == JsonKind::Array);
    CHECK(scanRealtimeMessage(R"({"type":"BATCH","messages":{"a":1}})", scan, nullptr, &items));
    CHECK(scan.messages.kind == JsonKind::Object);
    CHECK_EQ(items.count, size_t(0));
    CHECK(scanRealtimeMessage(R"({"type":"PING"})", scan, nullptr, &items));
    CHECK(!scan.messages.present());
    // An item's nesting counts from the message (the message 1, the array 2, the item 3):
    // past kScanMaxDepth inside an item is unknown, at it known, with items or without.
    std::string deep = R"({"messages":[{"a":)" + std::string(uws::kScanMaxDepth - 2, '[') +
                       std::string(uws::kScanMaxDepth - 2, ']') + "}]}";
    CHECK(!scanRealtimeMessage(deep, scan, nullptr, &items));
    CHECK(!scanRealtimeMessage(deep, scan));
    std::string shallower = R"({"messages":[{"a":)" + std::string(uws::kScanMaxDepth - 3, '[') +
                            std::string(uws::kScanMaxDepth - 3, ']') + "}]}";
    CHECK(scanRealtimeMessage(shallower, scan, nullptr, &items));
    CHECK(scanRealtimeMessage(shallower, scan));
}

} // namespace

int main() {
    RUN_TEST(testFieldsOfAPing);
    RUN_TEST(testFieldKinds);
    RUN_TEST(testPlainValues);
    RUN_TEST(testValidJsonIsKnown);
    RUN_TEST(testUnknown);
    RUN_TEST(testFilterStopsAtTheType);
    RUN_TEST(testKeyLimit);
    RUN_TEST(testEveryPrefixOfAKnownTextIsUnknown);
    RUN_TEST(testBatchItemsScannedWithTheMessage);
    return check::report("test_realtime_scan");
}
