// logTo: a line of a level the logger does not keep is neither built nor written; one of a
// kept level is built once and written as built; a logger with no write is silent.
#include <string>
#include <utility>
#include <vector>

#include "check.h"
#include "uws/Log.h"

namespace {

using uws::Logger;
using uws::LogLevel;
using uws::logTo;

struct Recorder {
    int built = 0;
    std::vector<std::pair<LogLevel, std::string>> written;

    Logger logger(LogLevel lowest) {
        Logger log;
        log.enabled = [lowest](LogLevel level) { return int(level) >= int(lowest); };
        log.write = [this](LogLevel level, const std::string &message) { written.emplace_back(level, message); };
        return log;
    }

    std::string build(const std::string &text) {
        built++;
        return text;
    }
};

void testLevelBelowTheLoggersIsNotBuilt() {
    Recorder r;
    Logger log = r.logger(LogLevel::Warning);
    logTo(log, LogLevel::Debug, [&] { return r.build("debug"); });
    logTo(log, LogLevel::Info, [&] { return r.build("info"); });
    CHECK_EQ(r.built, 0);
    CHECK_EQ(r.written.size(), size_t(0));
}

void testLevelAtOrAboveTheLoggersIsBuiltAndWritten() {
    Recorder r;
    Logger log = r.logger(LogLevel::Warning);
    logTo(log, LogLevel::Warning, [&] { return r.build("closing 127.0.0.1 with 1002"); });
    logTo(log, LogLevel::Info, [&] { return r.build("dropped"); });
    logTo(log, LogLevel::Error, [&] { return r.build("accept paused"); });
    CHECK_EQ(r.built, 2);
    CHECK_EQ(r.written.size(), size_t(2));
    if (r.written.size() == 2) {
        CHECK(r.written[0].first == LogLevel::Warning);
        CHECK_EQ(r.written[0].second, std::string("closing 127.0.0.1 with 1002"));
        CHECK(r.written[1].first == LogLevel::Error);
        CHECK_EQ(r.written[1].second, std::string("accept paused"));
    }
}

void testLevelChangedBetweenLinesTakesEffect() {
    Recorder r;
    LogLevel lowest = LogLevel::Error;
    Logger log;
    log.enabled = [&lowest](LogLevel level) { return int(level) >= int(lowest); };
    log.write = [&r](LogLevel level, const std::string &message) { r.written.emplace_back(level, message); };
    logTo(log, LogLevel::Info, [&] { return r.build("before"); });
    lowest = LogLevel::Info;
    logTo(log, LogLevel::Info, [&] { return r.build("after"); });
    CHECK_EQ(r.built, 1);
    CHECK_EQ(r.written.size(), size_t(1));
    if (!r.written.empty()) CHECK_EQ(r.written[0].second, std::string("after"));
}

void testNoEnabledKeepsEveryLevel() {
    Recorder r;
    Logger log;
    log.write = [&r](LogLevel level, const std::string &message) { r.written.emplace_back(level, message); };
    logTo(log, LogLevel::Debug, [&] { return r.build("debug"); });
    CHECK_EQ(r.built, 1);
    CHECK_EQ(r.written.size(), size_t(1));
}

void testNoWriteIsSilentAndBuildsNothing() {
    Recorder r;
    Logger log;
    log.enabled = [](LogLevel) { return true; };
    logTo(log, LogLevel::Error, [&] { return r.build("error"); });
    logTo(Logger{}, LogLevel::Error, [&] { return r.build("error"); });
    CHECK_EQ(r.built, 0);
}

} // namespace

int main() {
    RUN_TEST(testLevelBelowTheLoggersIsNotBuilt);
    RUN_TEST(testLevelAtOrAboveTheLoggersIsBuiltAndWritten);
    RUN_TEST(testLevelChangedBetweenLinesTakesEffect);
    RUN_TEST(testNoEnabledKeepsEveryLevel);
    RUN_TEST(testNoWriteIsSilentAndBuildsNothing);
    return check::report("test_log");
}
