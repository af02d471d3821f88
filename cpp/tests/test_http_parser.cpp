// parseHttpRequest and the query helpers: a valid upgrade request, every prefix of it, each way a
// head can be refused, and what the parsed request holds.
#include <ostream>
#include <string>
#include <vector>

#include "check.h"
#include "uws/HttpDate.h"
#include "uws/HttpParser.h"

namespace uws {
std::ostream &operator<<(std::ostream &out, HttpParseStatus status) {
    switch (status) {
    case HttpParseStatus::Complete: return out << "Complete";
    case HttpParseStatus::Incomplete: return out << "Incomplete";
    case HttpParseStatus::Malformed: return out << "Malformed";
    case HttpParseStatus::HeadTooLarge: return out << "HeadTooLarge";
    case HttpParseStatus::TooManyHeaders: return out << "TooManyHeaders";
    case HttpParseStatus::UnsupportedVersion: return out << "UnsupportedVersion";
    }
    return out << "HttpParseStatus(" << int(status) << ")";
}
} // namespace uws

namespace {

using uws::HttpLimits;
using uws::HttpParseStatus;
using uws::HttpRequest;

const std::string kUpgradeRequest = "GET /chat?room=lobby HTTP/1.1\r\n"
                                    "Host: server.example.com\r\n"
                                    "Upgrade: websocket\r\n"
                                    "Connection: keep-alive, Upgrade\r\n"
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                    "Origin: http://example.com\r\n"
                                    "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                    "Sec-WebSocket-Version: 13\r\n"
                                    "\r\n";

// The parser lowercases names in place and returns views into its input, so each parse gets
// its own heap copy of exactly the given bytes (which also lets ASan see any read past them).
struct Parsed {
    std::vector<char> buffer;
    HttpRequest request;
    size_t headLength = 0;
    HttpParseStatus status = HttpParseStatus::Malformed;
};

void parseInto(Parsed &parsed, const std::string &bytes, const HttpLimits &limits = {}) {
    parsed.buffer.assign(bytes.begin(), bytes.end());
    parsed.headLength = 0;
    parsed.status =
        uws::parseHttpRequest(parsed.buffer.data(), parsed.buffer.size(), limits, parsed.request, parsed.headLength);
}

HttpParseStatus statusOf(const std::string &bytes, const HttpLimits &limits = {}) {
    Parsed parsed;
    parseInto(parsed, bytes, limits);
    return parsed.status;
}

// A literal with NUL bytes in it, all of them kept.
template <size_t N> std::string withNul(const char (&literal)[N]) { return std::string(literal, N - 1); }

std::string requestWithHeaders(const std::vector<std::string> &headerLines) {
    std::string request = "GET / HTTP/1.1\r\n";
    for (const std::string &line : headerLines) {
        request += line + "\r\n";
    }
    return request + "\r\n";
}

void testValidUpgradeRequest() {
    Parsed parsed;
    parseInto(parsed, kUpgradeRequest + "\x81\x85 early frame bytes");
    const HttpRequest &request = parsed.request;
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    CHECK_EQ(parsed.headLength, kUpgradeRequest.size());
    CHECK_EQ(request.method, "GET");
    CHECK_EQ(request.target, "/chat?room=lobby");
    CHECK_EQ(request.path, "/chat");
    CHECK_EQ(request.query, "room=lobby");
    CHECK(!request.http10);
    CHECK_EQ(request.headers.size(), size_t(7));
    CHECK_EQ(request.header("host"), "server.example.com");
    CHECK_EQ(request.header("upgrade"), "websocket");
    CHECK_EQ(request.header("sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK_EQ(request.header("sec-websocket-version"), "13");
    CHECK_EQ(request.header("sec-websocket-protocol"), "chat, superchat");
    CHECK(request.hasHeader("origin"));
    CHECK(!request.hasHeader("cookie"));
    CHECK_EQ(request.header("cookie"), "");
    CHECK(request.headerHasToken("connection", "upgrade"));
    CHECK(request.headerHasToken("upgrade", "websocket"));
}

void testHttp10() {
    Parsed parsed;
    parseInto(parsed, "GET / HTTP/1.0\r\n\r\n");
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    CHECK(parsed.request.http10);
    CHECK_EQ(parsed.request.headers.size(), size_t(0));
    CHECK_EQ(parsed.headLength, size_t(18));
}

void testEveryPrefixIsIncomplete() {
    for (size_t length = 0; length < kUpgradeRequest.size(); length++) {
        check::Scope scope("prefix length ", length);
        CHECK_EQ(statusOf(kUpgradeRequest.substr(0, length)), HttpParseStatus::Incomplete);
    }
    CHECK_EQ(statusOf(kUpgradeRequest), HttpParseStatus::Complete);
}

// RFC 9112 2.2: empty lines before the request line are ignored, so their prefixes too must
// wait for more bytes rather than be refused.
void testLeadingEmptyLines() {
    const std::string request = "\r\n\r\n" + kUpgradeRequest;
    Parsed parsed;
    parseInto(parsed, request);
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    CHECK_EQ(parsed.headLength, request.size());
    CHECK_EQ(parsed.request.method, "GET");
    for (size_t length = 0; length < request.size(); length++) {
        check::Scope scope("prefix length ", length);
        CHECK_EQ(statusOf(request.substr(0, length)), HttpParseStatus::Incomplete);
    }
}

void testMalformed() {
    const std::vector<std::pair<const char *, std::string>> cases = {
        {"method with '('", "GE(T / HTTP/1.1\r\n\r\n"},
        {"method with a control byte", "G\x01T / HTTP/1.1\r\n\r\n"},
        {"method with a non-ASCII byte", "G\xC3\x89T / HTTP/1.1\r\n\r\n"},
        {"empty method", " / HTTP/1.1\r\n\r\n"},
        {"tab after method", "GET\t/ HTTP/1.1\r\n\r\n"},
        {"no space after method", "GET/ HTTP/1.1\r\n\r\n"},
        {"no space before version", "GET /HTTP/1.1\r\n\r\n"},
        {"two spaces after method", "GET  / HTTP/1.1\r\n\r\n"},
        {"two spaces before version", "GET /  HTTP/1.1\r\n\r\n"},
        {"target with a control byte", "GET /a\x01 HTTP/1.1\r\n\r\n"},
        {"target with a non-ASCII byte", "GET /caf\xC3\xA9 HTTP/1.1\r\n\r\n"},
        {"relative target", "GET chat HTTP/1.1\r\n\r\n"},
        {"asterisk target", "GET * HTTP/1.1\r\n\r\n"},
        {"lowercase protocol", "GET / http/1.1\r\n\r\n"},
        {"other protocol", "GET / HTTQ/1.1\r\n\r\n"},
        {"version without dot", "GET / HTTP/11\r\n\r\n"},
        {"version letter", "GET / HTTP/1.x\r\n\r\n"},
        {"two-digit major", "GET / HTTP/10.1\r\n\r\n"},
        {"space after version", "GET / HTTP/1.1 \r\n\r\n"},
        {"bare LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n"},
        {"bare LF after header", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"},
        {"bare LF as final line", "GET / HTTP/1.1\r\nHost: a\r\n\n"},
        {"CR without LF in header", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"},
        {"CR without LF at end", "GET / HTTP/1.1\r\nHost: a\r\n\rX"},
        {"header without colon", "GET / HTTP/1.1\r\nHost server\r\n\r\n"},
        {"space before colon", "GET / HTTP/1.1\r\nHost : server\r\n\r\n"},
        {"empty header name", "GET / HTTP/1.1\r\n: server\r\n\r\n"},
        {"header name with '('", "GET / HTTP/1.1\r\nHo(st: server\r\n\r\n"},
        {"obs-fold with space", "GET / HTTP/1.1\r\nX-Long: a\r\n b\r\n\r\n"},
        {"obs-fold with tab", "GET / HTTP/1.1\r\nX-Long: a\r\n\tb\r\n\r\n"},
        {"NUL in value", withNul("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n")},
        {"DEL in value", "GET / HTTP/1.1\r\nX: a\x7F\r\n\r\n"},
        {"control byte in value", "GET / HTTP/1.1\r\nX: a\x1B[0m\r\n\r\n"},
    };
    for (const auto &[name, bytes] : cases) {
        check::Scope scope(name);
        CHECK_EQ(statusOf(bytes), HttpParseStatus::Malformed);
    }
}

void testUnsupportedVersion() {
    for (const char *version : {"HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"}) {
        check::Scope scope(version);
        const std::string request = std::string("GET / ") + version + "\r\nHost: a\r\n\r\n";
        CHECK_EQ(statusOf(request), HttpParseStatus::UnsupportedVersion);
    }
}

void testHeadTooLarge() {
    HttpLimits limits;
    limits.maxHeadSize = 64;
    const std::string request = requestWithHeaders({"X-Pad: " + std::string(200, 'p')});

    // No end of head within maxHeadSize bytes: refused as soon as that many have arrived.
    CHECK_EQ(statusOf(request.substr(0, 63), limits), HttpParseStatus::Incomplete);
    CHECK_EQ(statusOf(request.substr(0, 64), limits), HttpParseStatus::HeadTooLarge);
    CHECK_EQ(statusOf(request, limits), HttpParseStatus::HeadTooLarge);
    // Inside the request line too.
    CHECK_EQ(statusOf("GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n", limits), HttpParseStatus::HeadTooLarge);

    // A head of exactly maxHeadSize bytes fits; one more byte does not.
    const std::string base = "GET / HTTP/1.1\r\nX: \r\n\r\n";
    const std::string exact = requestWithHeaders({"X: " + std::string(64 - base.size(), 'v')});
    CHECK_EQ(exact.size(), size_t(64));
    Parsed parsed;
    parseInto(parsed, exact + "body", limits);
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    CHECK_EQ(parsed.headLength, size_t(64));
    const std::string oneOver = requestWithHeaders({"X: " + std::string(65 - base.size(), 'v')});
    CHECK_EQ(statusOf(oneOver, limits), HttpParseStatus::HeadTooLarge);

    // The default limit.
    CHECK_EQ(statusOf(requestWithHeaders({"Cookie: " + std::string(16 * 1024, 'c')})), HttpParseStatus::HeadTooLarge);
    CHECK_EQ(statusOf(requestWithHeaders({"Cookie: " + std::string(15 * 1024, 'c')})), HttpParseStatus::Complete);
}

// The parser's own comment: "a stream of CRLFs ends up as 431 like any other".
void testStreamOfEmptyLinesIsTooLarge() {
    for (size_t maxHeadSize : {size_t(64), size_t(65), size_t(16 * 1024)}) {
        check::Scope scope("maxHeadSize ", maxHeadSize);
        HttpLimits limits;
        limits.maxHeadSize = maxHeadSize;
        std::string crlfs;
        while (crlfs.size() < maxHeadSize + 10) {
            crlfs += "\r\n";
        }
        CHECK_EQ(statusOf(crlfs, limits), HttpParseStatus::HeadTooLarge);
    }
}

void testTooManyHeaders() {
    HttpLimits limits;
    limits.maxHeaders = 3;
    CHECK_EQ(statusOf(requestWithHeaders({"A: 1", "B: 2", "C: 3"}), limits), HttpParseStatus::Complete);
    CHECK_EQ(statusOf(requestWithHeaders({"A: 1", "B: 2", "C: 3", "D: 4"}), limits), HttpParseStatus::TooManyHeaders);

    std::vector<std::string> many;
    for (int i = 0; i < 101; i++) {
        many.push_back("X-" + std::to_string(i) + ": v");
    }
    CHECK_EQ(statusOf(requestWithHeaders(many)), HttpParseStatus::TooManyHeaders);
    many.pop_back();
    CHECK_EQ(statusOf(requestWithHeaders(many)), HttpParseStatus::Complete);
}

void testHeaderNamesLowercasedInPlace() {
    Parsed parsed;
    parseInto(parsed, requestWithHeaders({"Sec-WebSocket-KEY: AbC", "X-MiXeD-123: Value"}));
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    if (CHECK_EQ(parsed.request.headers.size(), size_t(2))) {
        CHECK_EQ(parsed.request.headers[0].name, "sec-websocket-key");
        CHECK_EQ(parsed.request.headers[1].name, "x-mixed-123");
    }
    CHECK_EQ(parsed.request.header("sec-websocket-key"), "AbC"); // values keep their case
    CHECK_EQ(parsed.request.header("x-mixed-123"), "Value");
    const std::string inBuffer(parsed.buffer.begin(), parsed.buffer.end());
    CHECK(inBuffer.find("sec-websocket-key: AbC") != std::string::npos);
}

void testValueWhitespaceTrimmed() {
    Parsed parsed;
    parseInto(parsed,
              requestWithHeaders({"A:   spaced  out \t ", "B:\tx", "C:", "D:    ", "E:no-space", "F: \xE9t\xE9"}));
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    const HttpRequest &request = parsed.request;
    CHECK_EQ(request.header("a"), "spaced  out");
    CHECK_EQ(request.header("b"), "x");
    CHECK(request.hasHeader("c"));
    CHECK_EQ(request.header("c"), "");
    CHECK_EQ(request.header("d"), "");
    CHECK_EQ(request.header("e"), "no-space");
    CHECK_EQ(request.header("f"), "\xE9t\xE9"); // obs-text is allowed in values
}

void testHeaderHasToken() {
    Parsed parsed;
    parseInto(parsed, requestWithHeaders({"Connection: keep-alive, Upgrade", "X-List: ,, a ,\tb\t,", "Via: one",
                                          "Via: two, three"}));
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    const HttpRequest &request = parsed.request;
    CHECK(request.headerHasToken("connection", "upgrade"));
    CHECK(request.headerHasToken("connection", "Upgrade"));
    CHECK(request.headerHasToken("connection", "UPGRADE"));
    CHECK(request.headerHasToken("connection", "keep-alive"));
    CHECK(!request.headerHasToken("connection", "close"));
    CHECK(!request.headerHasToken("connection", "grade"));
    CHECK(!request.headerHasToken("connection", "keep-alive, upgrade"));
    CHECK(request.headerHasToken("x-list", "a"));
    CHECK(request.headerHasToken("x-list", "b"));
    CHECK(!request.headerHasToken("x-list", "c"));
    CHECK(request.headerHasToken("via", "one"));   // repeated header lines are one list
    CHECK(request.headerHasToken("via", "three"));
    CHECK(!request.headerHasToken("upgrade", "websocket"));
}

void testPathAndQuery() {
    struct Expected {
        const char *target;
        const char *path;
        const char *query;
    };
    const Expected cases[] = {
        {"/", "/", ""},
        {"/chat", "/chat", ""},
        {"/chat?", "/chat", ""},
        {"/chat?a=1&b=2", "/chat", "a=1&b=2"},
        {"/a/b?x=1?y=2", "/a/b", "x=1?y=2"},
        {"/?q", "/", "q"},
    };
    for (const Expected &c : cases) {
        check::Scope scope(c.target);
        Parsed parsed;
        parseInto(parsed, std::string("GET ") + c.target + " HTTP/1.1\r\n\r\n");
        CHECK_EQ(parsed.status, HttpParseStatus::Complete);
        CHECK_EQ(parsed.request.target, c.target);
        CHECK_EQ(parsed.request.path, c.path);
        CHECK_EQ(parsed.request.query, c.query);
    }
}

// RFC 9112 3.2.2: absolute-form; the authority is dropped, path and query are kept.
void testAbsoluteFormTarget() {
    struct Expected {
        const char *target;
        const char *path;
        const char *query;
    };
    const Expected cases[] = {
        {"http://example.com/chat?x=1", "/chat", "x=1"},
        {"ws://example.com:8080/a/b", "/a/b", ""},
        {"http://example.com", "/", ""},
        {"http://example.com/", "/", ""},
        // The path of an absolute URI may be empty with a query after the authority (RFC 3986 3).
        {"http://example.com?x=1", "/", "x=1"},
        {"http://example.com?next=/a/b", "/", "next=/a/b"},
    };
    for (const Expected &c : cases) {
        check::Scope scope(c.target);
        Parsed parsed;
        parseInto(parsed, std::string("GET ") + c.target + " HTTP/1.1\r\nHost: example.com\r\n\r\n");
        CHECK_EQ(parsed.status, HttpParseStatus::Complete);
        CHECK_EQ(parsed.request.target, c.target);
        CHECK_EQ(parsed.request.path, c.path);
        CHECK_EQ(parsed.request.query, c.query);
    }
}

void testDecodeQueryComponent() {
    struct Expected {
        const char *in;
        bool ok;
        const char *out;
    };
    const Expected cases[] = {
        {"", true, ""},
        {"plain", true, "plain"},
        {"a+b", true, "a b"},
        {"a%20b", true, "a b"},
        {"%2B", true, "+"},
        {"%2b%3D%26", true, "+=&"},
        {"%e2%82%AC", true, "\xE2\x82\xAC"},
        {"100%25", true, "100%"},
        {"%", false, ""},
        {"%4", false, ""},
        {"a%4", false, ""},
        {"%zz", false, ""},
        {"%g0", false, ""},
        {"%0g", false, ""},
    };
    for (const Expected &c : cases) {
        check::Scope scope(c.in);
        std::string out = "stale";
        bool ok = uws::decodeQueryComponent(c.in, out);
        CHECK_EQ(ok, c.ok);
        if (c.ok) {
            CHECK_EQ(out, c.out);
        }
    }
    // An escape cut short by the end of the view, even when the bytes after the view would
    // complete it: the decoder must not look past its input.
    std::string cut = "stale";
    CHECK(!uws::decodeQueryComponent(std::string_view("%41", 2), cut));
    CHECK(!uws::decodeQueryComponent(std::string_view("x%4142", 3), cut));
    std::string value;
    CHECK(!uws::findQueryValue(std::string_view("a=%41", 4), "a", value));

    std::string nul;
    CHECK(uws::decodeQueryComponent("a%00b", nul));
    CHECK_EQ(nul, withNul("a\0b"));
}

void testFindQueryValue() {
    const std::string query = "room=a%20b&token=x+y%2Bz&flag&empty=&na%6De=encoded&room=second&bad=%zz";
    struct Expected {
        const char *key;
        bool found;
        const char *value;
    };
    const Expected cases[] = {
        {"room", true, "a b"}, // the first of two wins
        {"token", true, "x y+z"},
        {"flag", true, ""},
        {"empty", true, ""},
        {"name", true, "encoded"}, // keys are decoded before comparing
        {"missing", false, ""},
        {"roo", false, ""},
        {"bad", false, ""}, // a malformed escape is not a value
    };
    for (const Expected &c : cases) {
        check::Scope scope(c.key);
        std::string value;
        CHECK_EQ(uws::findQueryValue(query, c.key, value), c.found);
        if (c.found) {
            CHECK_EQ(value, c.value);
        }
    }
    std::string value;
    CHECK(!uws::findQueryValue("", "a", value));
    CHECK(uws::findQueryValue("a=1&", "a", value));
    CHECK_EQ(value, "1");
    CHECK(uws::findQueryValue("&&b=2", "b", value));
    CHECK_EQ(value, "2");

    // Straight from a parsed request.
    Parsed parsed;
    parseInto(parsed, "GET /chat?user=J%C3%BCrgen+M&room=1 HTTP/1.1\r\n\r\n");
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    CHECK(uws::findQueryValue(parsed.request.query, "user", value));
    CHECK_EQ(value, "J\xC3\xBCrgen M");
}

void testEqualsIgnoreCase() {
    CHECK(uws::equalsIgnoreCase("WebSocket", "websocket"));
    CHECK(uws::equalsIgnoreCase("", ""));
    CHECK(!uws::equalsIgnoreCase("websocket", "websockets"));
    CHECK(!uws::equalsIgnoreCase("a", "b"));
    CHECK(!uws::equalsIgnoreCase("[", "{")); // differ by 0x20 but are not letters
}

void testReparseClearsPreviousRequest() {
    Parsed parsed;
    parseInto(parsed, kUpgradeRequest);
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    parsed.request.parameters.push_back("stale");
    parseInto(parsed, "GET /other HTTP/1.1\r\nA: b\r\n\r\n");
    CHECK_EQ(parsed.status, HttpParseStatus::Complete);
    CHECK_EQ(parsed.request.headers.size(), size_t(1));
    CHECK_EQ(parsed.request.path, "/other");
    CHECK_EQ(parsed.request.query, "");
    CHECK(parsed.request.parameters.empty());
}

} // namespace

// Response side: what write_header and write_status refuse (response splitting).
void testResponseFieldChecks() {
    CHECK(!uws::checkResponseHeaderName("X-Test"));
    CHECK(!uws::checkResponseHeaderName("!#$%&'*+-.^_`|~09azAZ"));
    CHECK(!uws::checkResponseFieldText("a value\twith tab and \x80obs-text"));
    CHECK(!uws::checkResponseFieldText(""));

    uws::FieldProblem crlf = uws::checkResponseFieldText("a\r\nSet-Cookie: evil=1");
    CHECK_EQ(std::string(crlf.reason), "contains CR");
    CHECK_EQ(crlf.index, size_t(1));
    CHECK_EQ(std::string(uws::checkResponseFieldText("ab\n").reason), "contains LF");
    uws::FieldProblem nul = uws::checkResponseFieldText(std::string("abc\0", 4));
    CHECK_EQ(std::string(nul.reason), "contains NUL");
    CHECK_EQ(nul.index, size_t(3));

    CHECK_EQ(std::string(uws::checkResponseHeaderName("").reason), "is empty");
    CHECK_EQ(std::string(uws::checkResponseHeaderName("X\r\nY").reason), "contains CR");
    for (const char *name : {"X Test", "X:Test", "X(Test)", "X\"", "X/Y", "X@Y", "X\x80"}) {
        check::Scope scope(check::quote(name));
        uws::FieldProblem problem = uws::checkResponseHeaderName(name);
        CHECK(bool(problem));
        CHECK_EQ(problem.index, size_t(1));
    }
}

void testHttpDate() {
    uws::HttpDate date;
    date.set(784111777); // RFC 9110's example
    CHECK_EQ(std::string(date.view()), "Sun, 06 Nov 1994 08:49:37 GMT");
    date.set(0);
    CHECK_EQ(std::string(date.view()), "Thu, 01 Jan 1970 00:00:00 GMT");
    date.set(951782400); // a leap day
    CHECK_EQ(std::string(date.view()), "Tue, 29 Feb 2000 00:00:00 GMT");
    CHECK_EQ(date.view().size(), uws::HttpDate::kLength);
}

int main() {
    RUN_TEST(testResponseFieldChecks);
    RUN_TEST(testHttpDate);
    RUN_TEST(testValidUpgradeRequest);
    RUN_TEST(testHttp10);
    RUN_TEST(testEveryPrefixIsIncomplete);
    RUN_TEST(testLeadingEmptyLines);
    RUN_TEST(testMalformed);
    RUN_TEST(testUnsupportedVersion);
    RUN_TEST(testHeadTooLarge);
    RUN_TEST(testStreamOfEmptyLinesIsTooLarge);
    RUN_TEST(testTooManyHeaders);
    RUN_TEST(testHeaderNamesLowercasedInPlace);
    RUN_TEST(testValueWhitespaceTrimmed);
    RUN_TEST(testHeaderHasToken);
    RUN_TEST(testPathAndQuery);
    RUN_TEST(testAbsoluteFormTarget);
    RUN_TEST(testDecodeQueryComponent);
    RUN_TEST(testFindQueryValue);
    RUN_TEST(testEqualsIgnoreCase);
    RUN_TEST(testReparseClearsPreviousRequest);
    return check::report("test_http_parser");
}
