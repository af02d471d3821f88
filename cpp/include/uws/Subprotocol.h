// Choosing the Sec-WebSocket-Protocol answer of an upgrade (RFC 6455 section 4.2.2).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace uws {

namespace detail {
inline std::string_view trimmedToken(std::string_view token) {
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    return token;
}
} // namespace detail

// offer is the client's comma-separated list ("chat, superchat"). With a server list
// (supported, preferred first) the answer is the first entry of that list the client
// offered, compared exactly, as the websockets library does; empty when they share none,
// and then no Sec-WebSocket-Protocol header is sent (the client decides whether it can go
// on). Without a server list the answer is the client's first entry: an upgrade handler
// that passes its own choice gets exactly that.
inline std::string_view selectSubprotocol(std::string_view offer, const std::vector<std::string> &supported) {
    if (supported.empty()) return detail::trimmedToken(offer.substr(0, offer.find(',')));
    for (const std::string &wanted : supported) {
        std::string_view rest = offer;
        while (!rest.empty()) {
            size_t comma = rest.find(',');
            std::string_view token = detail::trimmedToken(rest.substr(0, comma));
            if (!token.empty() && token == wanted) return wanted;
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    return {};
}

} // namespace uws
