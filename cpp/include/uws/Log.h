// The core's one way to report what it refused or closed, and why.
#pragma once

#include <functional>
#include <string>

namespace uws {

enum class LogLevel { Debug, Info, Warning, Error };

// Set by the owner (the bindings pass lines to Python's logging); no write: silent.
struct Logger {
    // Whether a line of this level would be kept; empty: every level is. Asked before the
    // line is built, so a dropped level costs no string.
    std::function<bool(LogLevel)> enabled;
    std::function<void(LogLevel, const std::string &)> write;
};

// makeMessage() returns the line; it runs only if the logger keeps this level.
template <typename MakeMessage>
inline void logTo(const Logger &log, LogLevel level, MakeMessage &&makeMessage) {
    if (!log.write || (log.enabled && !log.enabled(level))) return;
    log.write(level, makeMessage());
}

} // namespace uws
