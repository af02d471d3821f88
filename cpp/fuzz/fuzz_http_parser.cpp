// libFuzzer target: parseHttpRequest, and the query helpers on what it parsed.
//
// The input is the bytes a client sent. Every parse runs on its own exactly sized copy,
// because the parser lowercases header names in place. Checked:
//  - on Complete: headLength <= size and the limit, the head ends with CRLF, the header
//    count is within the limit, every view lies inside the head, header names are
//    nonempty lowercase token characters followed by ':', values carry no CR, LF or
//    surrounding whitespace;
//  - the status agrees with parsing prefixes (Incomplete means "a valid prefix", and any
//    other answer is already decided by the bytes it looked at) and with the other limits;
//  - parsing is idempotent on the lowercased buffer;
//  - decodeQueryComponent shrinks by exactly 2 bytes per escape and never fails without one;
//    findQueryValue finds the first key and agrees with decoding its value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "uws/HttpParser.h"

namespace {

using uws::HttpLimits;
using uws::HttpParseStatus;
using uws::HttpRequest;

// Small enough that short inputs reach both 431 answers.
const HttpLimits kSmallLimits{256, 4};
const HttpLimits kDefaultLimits{};

bool isTokenChar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(char(c)) != std::string_view::npos;
}

bool isLowercaseToken(std::string_view name) {
    if (name.empty()) return false;
    for (unsigned char c : name) {
        if (!isTokenChar(c) || (c >= 'A' && c <= 'Z')) return false;
    }
    return true;
}

struct Parse {
    std::unique_ptr<char[]> buffer;
    size_t size = 0;
    HttpRequest request;
    HttpParseStatus status = HttpParseStatus::Malformed;
    size_t headLength = 0;

    Parse(const char *data, size_t length, const HttpLimits &limits)
        : buffer(fuzz::copyOf(data, length)), size(length) {
        status = uws::parseHttpRequest(buffer.get(), size, limits, request, headLength);
    }
};

void checkComplete(const Parse &parse, const HttpLimits &limits) {
    const char *head = parse.buffer.get();
    const size_t headLength = parse.headLength;
    const HttpRequest &request = parse.request;
    FUZZ_CHECK(headLength <= parse.size);
    FUZZ_CHECK(headLength <= limits.maxHeadSize);
    FUZZ_CHECK(headLength >= 2 && head[headLength - 2] == '\r' && head[headLength - 1] == '\n');
    FUZZ_CHECK(request.headers.size() <= limits.maxHeaders);

    FUZZ_CHECK(!request.method.empty() && fuzz::isInside(request.method, head, headLength));
    for (unsigned char c : request.method) FUZZ_CHECK(isTokenChar(c));
    FUZZ_CHECK(!request.target.empty() && fuzz::isInside(request.target, head, headLength));
    // The path is a view of the target, or "/" when an absolute-form target has none.
    FUZZ_CHECK(!request.path.empty() && request.path.front() == '/');
    FUZZ_CHECK(request.path == "/" || fuzz::isInside(request.path, request.target.data(), request.target.size()));
    FUZZ_CHECK(fuzz::isInside(request.query, request.target.data(), request.target.size()));
    if (!request.query.empty()) FUZZ_CHECK(request.query.data()[-1] == '?');
    FUZZ_CHECK(request.path.find('?') == std::string_view::npos);

    for (const uws::HttpHeader &header : request.headers) {
        FUZZ_CHECK(isLowercaseToken(header.name));
        FUZZ_CHECK(fuzz::isInside(header.name, head, headLength));
        FUZZ_CHECK(header.name.data()[header.name.size()] == ':');
        FUZZ_CHECK(fuzz::isInside(header.value, head, headLength));
        FUZZ_CHECK(header.value.find_first_of("\r\n") == std::string_view::npos);
        if (!header.value.empty()) {
            FUZZ_CHECK(header.value.front() != ' ' && header.value.front() != '\t');
            FUZZ_CHECK(header.value.back() != ' ' && header.value.back() != '\t');
        }
        // header() answers with the first header of that name.
        const uws::HttpHeader *first = &header;
        for (const uws::HttpHeader &earlier : request.headers) {
            if (earlier.name == header.name) {
                first = &earlier;
                break;
            }
        }
        FUZZ_CHECK(request.hasHeader(header.name));
        FUZZ_CHECK(request.header(header.name).data() == first->value.data());
    }
    // Exercised for memory errors; the answer is not predicted here.
    (void)request.headerHasToken("connection", "upgrade");
    (void)request.headerHasToken("sec-websocket-extensions", "permessage-deflate");
}

// A prefix of the input (shorter than the head limit) either is still undecided, or was
// decided by bytes the whole input shares.
void checkPrefix(const char *data, size_t size, const Parse &whole, size_t prefixLength, const HttpLimits &limits) {
    if (prefixLength >= size || prefixLength >= limits.maxHeadSize) return;
    Parse prefix(data, prefixLength, limits);
    const bool wholeUndecided =
        whole.status == HttpParseStatus::Incomplete ||
        (whole.status == HttpParseStatus::Complete && prefixLength < whole.headLength);
    if (wholeUndecided) {
        FUZZ_CHECK(prefix.status == HttpParseStatus::Incomplete);
    } else if (prefix.status != HttpParseStatus::Incomplete) {
        FUZZ_CHECK(prefix.status == whole.status);
        if (prefix.status == HttpParseStatus::Complete) FUZZ_CHECK(prefix.headLength == whole.headLength);
    }
}

size_t countOf(std::string_view text, char c) {
    size_t n = 0;
    for (char x : text) n += x == c;
    return n;
}

void checkQueryHelpers(std::string_view query) {
    std::string decoded;
    bool ok = uws::decodeQueryComponent(query, decoded);
    if (ok) {
        FUZZ_CHECK(decoded.size() == query.size() - 2 * countOf(query, '%'));
    } else {
        FUZZ_CHECK(countOf(query, '%') > 0);
    }

    std::string value;
    (void)uws::findQueryValue(query, "", value);
    (void)uws::findQueryValue(query, "token", value);

    // The first pair's key, when it decodes, is found, and its value is that pair's value.
    std::string_view pair = query.substr(0, query.find('&'));
    size_t eq = pair.find('=');
    std::string key;
    if (!query.empty() && uws::decodeQueryComponent(pair.substr(0, eq), key)) {
        std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
        std::string expected;
        bool valueOk = uws::decodeQueryComponent(raw, expected);
        bool found = uws::findQueryValue(query, key, value);
        FUZZ_CHECK(found == valueOk);
        if (found) FUZZ_CHECK(value == expected);
    }
}

void checkWithLimits(const char *data, size_t size, const HttpLimits &limits, Parse &parse) {
    if (parse.status == HttpParseStatus::Complete) {
        checkComplete(parse, limits);
        checkQueryHelpers(parse.request.query);
    }
    // The parser only lowercases bytes it accepted as a name: parsing its output again gives
    // the same answer.
    HttpRequest again;
    size_t headLength = 0;
    HttpParseStatus status = uws::parseHttpRequest(parse.buffer.get(), parse.size, limits, again, headLength);
    FUZZ_CHECK(status == parse.status);
    if (status == HttpParseStatus::Complete) {
        FUZZ_CHECK(headLength == parse.headLength);
        FUZZ_CHECK(again.headers.size() == parse.request.headers.size());
    }

    if (parse.status == HttpParseStatus::Complete) checkPrefix(data, size, parse, parse.headLength - 1, limits);
    checkPrefix(data, size, parse, size / 2, limits);
    checkPrefix(data, size, parse, size - 1, limits);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    const char *data = reinterpret_cast<const char *>(bytes);
    Parse small(data, size, kSmallLimits);
    Parse normal(data, size, kDefaultLimits);
    checkWithLimits(data, size, kSmallLimits, small);
    checkWithLimits(data, size, kDefaultLimits, normal);

    // A head that fits the small limits parses the same under the default ones, and one
    // that does not was refused by the small limits with a 431.
    if (small.status == HttpParseStatus::Complete) {
        FUZZ_CHECK(normal.status == HttpParseStatus::Complete);
        FUZZ_CHECK(normal.headLength == small.headLength);
        FUZZ_CHECK(normal.request.headers.size() == small.request.headers.size());
    }
    if (normal.status == HttpParseStatus::Complete && small.status != HttpParseStatus::Complete) {
        FUZZ_CHECK(normal.headLength > kSmallLimits.maxHeadSize ||
                   normal.request.headers.size() > kSmallLimits.maxHeaders);
        FUZZ_CHECK(small.status == HttpParseStatus::HeadTooLarge || small.status == HttpParseStatus::TooManyHeaders);
    }

    // The query helpers also see raw bytes, not only what the parser let through.
    checkQueryHelpers(std::string_view(data, size));
    return 0;
}
