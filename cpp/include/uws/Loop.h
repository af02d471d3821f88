// The event loop: epoll, a one-second tick that sweeps the sockets' coarse timeouts,
// millisecond timers, and a thread-safe defer queue woken through an eventfd.
//
// Threading model: everything here runs on the thread that calls run() (or runOnce()),
// except defer(), the one entry point from other threads.
#pragma once

#include <sys/epoll.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace uws {

class Socket;
struct LoopData;

// Anything registered with epoll.
class Pollable {
public:
    virtual ~Pollable() = default;
    virtual void onPoll(uint32_t events) = 0;
    int fd = -1;
};

class Loop {
public:
    Loop();
    ~Loop();
    Loop(const Loop &) = delete;
    Loop &operator=(const Loop &) = delete;

    // Runs until stop(). beforeWait/afterWait bracket each epoll_wait.
    void run();
    // One wait of at most timeoutMs (0: poll) and one dispatch. For embedding in another loop.
    void runOnce(int timeoutMs);
    void stop() { stopRequested_ = true; }
    void clearStop() { stopRequested_ = false; }
    bool stopRequested() const { return stopRequested_; }

    // Thread-safe: queue fn to run on the loop thread in its next iteration.
    void defer(std::function<void()> fn);
    // Thread-safe: makes the next wait return at once. An embedding loop (asyncio) sees the
    // epoll descriptor readable, so work done outside an iteration (a close, a new timer)
    // gets its iteration.
    void wakeup();

    // Millisecond timers on the loop thread; returns an id for cancelTimer.
    uint64_t addTimer(uint64_t delayMs, std::function<void()> fn);
    void cancelTimer(uint64_t id);
    // Milliseconds until the next timer, -1 if none (for embedding).
    int nextTimerDelayMs() const;

    void add(Pollable *p, uint32_t events);
    void modify(Pollable *p, uint32_t events);
    void remove(Pollable *p);

    int epollFd() const { return epollFd_; }
    // Whole seconds since the loop started; advanced by the tick.
    uint32_t now() const { return tick_; }

    // Hooks (set by the owner): the bindings drop the GIL in beforeWait and take it in
    // afterWait, so Python is entered once per batch of ready events.
    std::function<void()> beforeWait;
    std::function<void()> afterWait;
    std::function<void()> afterTick;      // once a second, after the timeout sweep
    std::function<void()> afterIteration; // end of every dispatch, before retired sockets go

    // Buffers and streams shared by every socket of this loop.
    LoopData &data() { return *data_; }
    bool inDispatch() const { return inDispatch_; }
    // Counts dispatches (batches of ready events): work done for several events of one batch
    // can tell it is still in the same one (the realtime layer reads the clock once per batch).
    uint64_t dispatches() const { return dispatches_; }
    // Writes out the corked socket's buffer.
    void uncork();

    // Sockets closed during this iteration are freed at its end, because the event array of
    // the current batch may still point at them.
    void retire(Socket *s) { retired_.push_back(s); }

    // Every live socket, for the tick's timeout sweep and for closing all.
    Socket *sockets = nullptr;
    size_t socketCount = 0;
    void link(Socket *s);
    void unlink(Socket *s);

private:
    class Waker;
    class Ticker;
    void dispatch(int ready);
    void runDeferred();
    void runTimers();
    void freeRetired();
    // Calls onTimeout on every socket whose deadline (in ticks) has come.
    void sweepTimeouts();

    int epollFd_ = -1;
    bool stopRequested_ = false;
    bool inDispatch_ = false;
    uint64_t dispatches_ = 0;
    uint32_t tick_ = 0;
    Waker *waker_ = nullptr;
    Ticker *ticker_ = nullptr;
    epoll_event events_[1024];

    std::mutex deferMutex_;
    std::vector<std::function<void()>> deferred_;
    std::vector<std::function<void()>> running_;

    struct TimerKey {
        uint64_t deadlineMs;
        uint64_t id;
        bool operator<(const TimerKey &o) const { return deadlineMs != o.deadlineMs ? deadlineMs < o.deadlineMs : id < o.id; }
    };
    std::map<TimerKey, std::function<void()>> timers_;
    std::unordered_map<uint64_t, uint64_t> timerDeadlines_;
    uint64_t nextTimerId_ = 1;

    std::vector<Socket *> retired_;
    std::unique_ptr<LoopData> data_;

    friend class Waker;
    friend class Ticker;
};

uint64_t monotonicMs();

} // namespace uws
