// The Date header's value (RFC 9110 5.6.7, IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT").
#pragma once

#include <ctime>
#include <string_view>

namespace uws {

struct HttpDate {
    static constexpr size_t kLength = 29;

    // Formats seconds since the epoch (UTC); English names whatever the C locale says.
    void set(std::time_t seconds);
    std::string_view view() const { return {text, kLength}; }

    // Room for what snprintf could write for any broken-down time; kLength are used.
    char text[64] = {};
};

} // namespace uws
