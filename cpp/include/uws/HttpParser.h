// A strict, bounded HTTP/1.1 request-head parser (RFC 9112). It does no I/O: it reads a
// buffer the caller owns, lowercases header names in place, and returns views into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace uws {

struct HttpLimits {
    // 16 KiB covers real browsers' heads with large cookies; more is refused with 431.
    size_t maxHeadSize = 16 * 1024;
    unsigned maxHeaders = 100;
};

enum class HttpParseStatus : uint8_t {
    Complete,
    Incomplete,         // a valid prefix; wait for more bytes
    Malformed,          // 400
    HeadTooLarge,       // 431
    TooManyHeaders,     // 431
    UnsupportedVersion, // 505
};

struct HttpHeader {
    std::string_view name; // lowercase
    std::string_view value;
};

// One parsed request head. Views point into the buffer that was parsed and are valid only
// while it is.
struct HttpRequest {
    std::string_view method;
    std::string_view target; // path and query as sent
    std::string_view path;
    std::string_view query;  // without '?'
    bool http10 = false;
    std::vector<HttpHeader> headers;
    // Filled by the router for ':name' segments and a trailing '*'.
    std::vector<std::string_view> parameters;
    std::vector<std::string_view> parameterNames;

    // Empty view when absent; name must be lowercase.
    std::string_view header(std::string_view lowercaseName) const;
    bool hasHeader(std::string_view lowercaseName) const;
    // Every field line of name joined with ", " (RFC 9110 5.3): list headers such as
    // Sec-WebSocket-Extensions may arrive split over several lines.
    std::string combinedHeader(std::string_view lowercaseName) const;
    // Does a comma-separated header contain token (case-insensitive)?
    bool headerHasToken(std::string_view lowercaseName, std::string_view token) const;

    void clear();
};

// Parses the head at the start of data. On Complete, headLength is the byte count of the head
// including its final empty line; whatever follows belongs to the body or the next protocol.
HttpParseStatus parseHttpRequest(char *data, size_t length, const HttpLimits &limits, HttpRequest &out,
                                 size_t &headLength);

// Percent-decodes a query value ('+' as space). Returns false on a malformed escape.
bool decodeQueryComponent(std::string_view in, std::string &out);

// The decoded value of key in a query string ("a=1&b=2"); nullopt-like: returns false if absent.
bool findQueryValue(std::string_view query, std::string_view key, std::string &value);

bool equalsIgnoreCase(std::string_view a, std::string_view b);

// What is wrong with a response's header name, header value or status text, for the writer
// to refuse it: reason is null when the text may be sent. CR, LF and NUL would let the text
// end its field and start one the sender chose (response splitting), so no text may hold them;
// a name must also be a token (RFC 9110 5.1).
struct FieldProblem {
    const char *reason = nullptr;
    size_t index = 0; // of the offending byte
    explicit operator bool() const { return reason != nullptr; }
};
FieldProblem checkResponseHeaderName(std::string_view name);
FieldProblem checkResponseFieldText(std::string_view text);

} // namespace uws
