#include "uws/HttpParser.h"

#include <cstring>

namespace uws {

namespace {

// RFC 9110 tchar.
bool isTokenChar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

// Request-target bytes: visible ASCII; spaces and controls end or break it.
bool isTargetChar(unsigned char c) { return c > 0x20 && c < 0x7F; }

// Field value bytes: visible ASCII, space, tab and obs-text.
bool isFieldValueChar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

} // namespace

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); i++) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

std::string_view HttpRequest::header(std::string_view lowercaseName) const {
    for (const HttpHeader &h : headers) {
        if (h.name == lowercaseName) {
            return h.value;
        }
    }
    return {};
}

std::string HttpRequest::combinedHeader(std::string_view lowercaseName) const {
    std::string combined;
    for (const HttpHeader &h : headers) {
        if (h.name != lowercaseName) continue;
        if (!combined.empty()) combined.append(", ");
        combined.append(h.value);
    }
    return combined;
}

bool HttpRequest::hasHeader(std::string_view lowercaseName) const {
    for (const HttpHeader &h : headers) {
        if (h.name == lowercaseName) {
            return true;
        }
    }
    return false;
}

bool HttpRequest::headerHasToken(std::string_view lowercaseName, std::string_view token) const {
    for (const HttpHeader &h : headers) {
        if (h.name != lowercaseName) {
            continue;
        }
        std::string_view value = h.value;
        while (!value.empty()) {
            size_t comma = value.find(',');
            std::string_view item = value.substr(0, comma);
            while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
            while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
            if (equalsIgnoreCase(item, token)) {
                return true;
            }
            if (comma == std::string_view::npos) {
                break;
            }
            value.remove_prefix(comma + 1);
        }
    }
    return false;
}

void HttpRequest::clear() {
    method = target = path = query = {};
    http10 = false;
    headers.clear();
    parameters.clear();
    parameterNames.clear();
}

HttpParseStatus parseHttpRequest(char *data, size_t length, const HttpLimits &limits, HttpRequest &out,
                                 size_t &headLength) {
    out.clear();
    const size_t end = length < limits.maxHeadSize ? length : limits.maxHeadSize;
    // What to answer when the bytes run out before the head ends.
    const HttpParseStatus starved =
        length < limits.maxHeadSize ? HttpParseStatus::Incomplete : HttpParseStatus::HeadTooLarge;
    size_t pos = 0;

    // RFC 9112 2.2: ignore empty lines before the request line (a client's stray CRLF after
    // a previous body); bounded so that a stream of CRLFs ends up as 431 like any other.
    while (pos < end && data[pos] == '\r') {
        if (pos + 1 == end) return starved;
        if (data[pos + 1] != '\n') return HttpParseStatus::Malformed;
        pos += 2;
    }

    size_t start = pos;
    while (pos < end && isTokenChar((unsigned char)data[pos])) pos++;
    if (pos == end) return starved;
    if (pos == start || data[pos] != ' ') return HttpParseStatus::Malformed;
    out.method = std::string_view(data + start, pos - start);
    pos++;

    start = pos;
    while (pos < end && isTargetChar((unsigned char)data[pos])) pos++;
    if (pos == end) return starved;
    if (pos == start || data[pos] != ' ') return HttpParseStatus::Malformed;
    out.target = std::string_view(data + start, pos - start);
    pos++;

    static constexpr std::string_view kVersionPrefix = "HTTP/";
    for (size_t i = 0; i < kVersionPrefix.size() + 5; i++) {
        if (pos + i == end) return starved;
    }
    if (std::memcmp(data + pos, kVersionPrefix.data(), kVersionPrefix.size()) != 0) {
        return HttpParseStatus::Malformed;
    }
    char major = data[pos + 5], dot = data[pos + 6], minor = data[pos + 7];
    if (major < '0' || major > '9' || dot != '.' || minor < '0' || minor > '9') return HttpParseStatus::Malformed;
    if (data[pos + 8] != '\r' || data[pos + 9] != '\n') return HttpParseStatus::Malformed;
    if (major != '1' || (minor != '0' && minor != '1')) return HttpParseStatus::UnsupportedVersion;
    out.http10 = minor == '0';
    pos += 10;

    // The target: origin-form, or absolute-form whose authority we drop (RFC 9112 3.2.2);
    // the authority ends at the first '/' or '?' (RFC 3986 3.2).
    std::string_view target = out.target;
    if (target.front() != '/') {
        size_t scheme = target.find("://");
        if (scheme == std::string_view::npos) {
            return HttpParseStatus::Malformed;
        }
        size_t pathStart = target.find_first_of("/?", scheme + 3);
        target = pathStart == std::string_view::npos ? std::string_view() : target.substr(pathStart);
    }
    size_t question = target.find('?');
    out.path = target.substr(0, question);
    if (out.path.empty()) out.path = "/";
    out.query = question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

    for (;;) {
        if (pos == end) return starved;
        if (data[pos] == '\r') {
            if (pos + 1 == end) return starved;
            if (data[pos + 1] != '\n') return HttpParseStatus::Malformed;
            headLength = pos + 2;
            return HttpParseStatus::Complete;
        }
        if (out.headers.size() == limits.maxHeaders) return HttpParseStatus::TooManyHeaders;

        start = pos;
        while (pos < end && isTokenChar((unsigned char)data[pos])) {
            data[pos] = lower(data[pos]);
            pos++;
        }
        if (pos == end) return starved;
        // An empty name covers obs-fold (a line starting with whitespace), refused by RFC 9112 5.2.
        if (pos == start || data[pos] != ':') return HttpParseStatus::Malformed;
        std::string_view name(data + start, pos - start);
        pos++;
        while (pos < end && (data[pos] == ' ' || data[pos] == '\t')) pos++;
        start = pos;
        while (pos < end && isFieldValueChar((unsigned char)data[pos])) pos++;
        if (pos == end) return starved;
        if (data[pos] != '\r') return HttpParseStatus::Malformed;
        size_t valueEnd = pos;
        while (valueEnd > start && (data[valueEnd - 1] == ' ' || data[valueEnd - 1] == '\t')) valueEnd--;
        if (pos + 1 == end) return starved;
        if (data[pos + 1] != '\n') return HttpParseStatus::Malformed;
        pos += 2;
        out.headers.push_back({name, std::string_view(data + start, valueEnd - start)});
    }
}

bool decodeQueryComponent(std::string_view in, std::string &out) {
    out.clear();
    out.reserve(in.size());
    for (size_t i = 0; i < in.size(); i++) {
        char c = in[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= in.size()) return false;
            int high = hexValue(in[i + 1]), low = hexValue(in[i + 2]);
            if (high < 0 || low < 0) return false;
            out += char(high * 16 + low);
            i += 2;
        } else {
            out += c;
        }
    }
    return true;
}

bool findQueryValue(std::string_view query, std::string_view key, std::string &value) {
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        size_t eq = pair.find('=');
        std::string_view name = pair.substr(0, eq);
        std::string decodedName;
        if (decodeQueryComponent(name, decodedName) && decodedName == key) {
            std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
            return decodeQueryComponent(raw, value);
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return false;
}

FieldProblem checkResponseFieldText(std::string_view text) {
    for (size_t i = 0; i < text.size(); i++) {
        switch (text[i]) {
        case '\r':
            return {"contains CR", i};
        case '\n':
            return {"contains LF", i};
        case '\0':
            return {"contains NUL", i};
        default:
            break;
        }
    }
    return {};
}

FieldProblem checkResponseHeaderName(std::string_view name) {
    if (name.empty()) return {"is empty", 0};
    if (FieldProblem problem = checkResponseFieldText(name)) return problem;
    for (size_t i = 0; i < name.size(); i++) {
        if (!isTokenChar(static_cast<unsigned char>(name[i]))) return {"has a character that is not allowed in a token", i};
    }
    return {};
}

} // namespace uws
