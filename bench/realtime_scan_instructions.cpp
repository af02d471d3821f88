// The strict realtime scanner (cpp/src/RealtimeScan.cpp) alone, on the messages of
// bench/realtime_instructions.py, for callgrind: bench/realtime_scan_instructions.sh builds
// this and prints the instructions per message and per byte of each kind.
//
//   realtime_scan_instructions KIND COUNT   scans KIND's message COUNT times
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "uws/RealtimeScan.h"

namespace {

// The dispatcher's filters (cpp/bindings/PyRealtime.cpp's scannedType and scannedTopType).
bool itemType(std::string_view type) {
    return type == "PING" || type == "SUBSCRIBE" || type == "UNSUBSCRIBE" || type == "PUBLISH";
}

bool topType(std::string_view type) { return itemType(type) || type == "BATCH"; }

std::string message(const char *kind) {
    if (std::strcmp(kind, "ping") == 0) return R"({"type":"PING","id":1234})";
    if (std::strcmp(kind, "publish-none") == 0)
        return R"({"type":"PUBLISH","topic":"bench/none","data":{"seq":1234,"text":"abcdefghij"},"id":1234})";
    if (std::strcmp(kind, "subscribe") == 0) return R"({"type":"SUBSCRIBE","topic":"bench/3","id":1234})";
    if (std::strcmp(kind, "batch") == 0)
        return R"({"type":"BATCH","id":1234,"messages":[{"type":"PING","id":1},{"type":"PING","id":2},)"
               R"({"type":"PING","id":3},{"type":"PING","id":4}]})";
    if (std::strcmp(kind, "echo") == 0) return R"({"type":"ECHO","id":1234,"ts":1764777600123,"text":"hello world"})";
    return std::string();
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 3 || message(argv[1]).empty()) {
        std::fprintf(stderr, "usage: %s ping|publish-none|subscribe|batch|echo COUNT\n", argv[0]);
        return 2;
    }
    std::string text = message(argv[1]);
    long count = std::atol(argv[2]);
    uws::RealtimeScan items[32];
    uws::ScannedItems list;
    list.scans = items;
    list.capacity = 32;
    list.filter = itemType;
    long known = 0;
    for (long i = 0; i < count; i++) {
        uws::RealtimeScan scan;
        known += uws::scanRealtimeMessage(text, scan, topType, &list) ? 1 : 0;
    }
    std::printf("%s bytes=%zu known=%ld/%ld\n", argv[1], text.size(), known, count);
    return 0;
}
