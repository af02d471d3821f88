// Counters for monitoring. Only the loop thread writes them; any thread may read them at
// scrape time. Relaxed atomic loads and stores compile to plain moves: no lock, no fence.
#pragma once

#include <atomic>
#include <cstdint>

namespace uws {

class Counter {
public:
    void add(uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    void sub(uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
    uint64_t get() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<uint64_t> value_{0};
};

struct AppStats {
    Counter messagesIn, messagesOut, bytesIn, bytesOut;
    Counter connectionsOpened, connectionsClosed, openConnections;
    Counter publishes, deliveries, drops, backpressureEvents;
    Counter protocolErrors, httpRejections, idleTimeouts, headerTimeouts, sendTimeouts;
};

} // namespace uws
