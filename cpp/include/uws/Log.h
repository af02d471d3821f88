// The core's one way to report what it refused or closed, and why.
#pragma once

#include <functional>
#include <string>

namespace uws {

enum class LogLevel { Debug, Info, Warning, Error };

// Set by the owner (the bindings pass lines to Python's logging); empty: silent.
using Logger = std::function<void(LogLevel, const std::string &)>;

inline void logTo(const Logger &log, LogLevel level, const std::string &message) {
    if (log) log(level, message);
}

} // namespace uws
