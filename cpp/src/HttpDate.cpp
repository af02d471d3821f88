#include "uws/HttpDate.h"

#include <cstdio>

namespace uws {

void HttpDate::set(std::time_t seconds) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    // Years past 9999 would not fit the fixed width: such a clock is wrong anyway.
    int year = utc.tm_year + 1900;
    if (year > 9999) year = 9999;
    std::snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[utc.tm_wday % 7], utc.tm_mday,
                  months[utc.tm_mon % 12], year, utc.tm_hour, utc.tm_min, utc.tm_sec);
}

} // namespace uws
