#include "uws/Loop.h"

#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <cstdlib>
#include <stdexcept>
#include <system_error>

#include "uws/LoopData.h"
#include "uws/Socket.h"

namespace uws {

uint64_t monotonicMs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

class Loop::Waker : public Pollable {
public:
    explicit Waker(Loop *loop) : loop_(loop) {
        fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    }
    ~Waker() override { ::close(fd); }
    void wake() {
        uint64_t one = 1;
        ssize_t ignored = ::write(fd, &one, sizeof one);
        (void)ignored; // a full counter already means "wake up"
    }
    void onPoll(uint32_t) override {
        uint64_t count;
        ssize_t ignored = ::read(fd, &count, sizeof count);
        (void)ignored;
        loop_->runDeferred();
    }

private:
    Loop *loop_;
};

class Loop::Ticker : public Pollable {
public:
    explicit Ticker(Loop *loop) : loop_(loop) {
        fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "timerfd_create");
        itimerspec spec{};
        spec.it_interval.tv_sec = 1;
        spec.it_value.tv_sec = 1;
        timerfd_settime(fd, 0, &spec, nullptr);
    }
    ~Ticker() override { ::close(fd); }
    void onPoll(uint32_t) override {
        uint64_t expirations = 0;
        if (::read(fd, &expirations, sizeof expirations) != sizeof expirations) return;
        loop_->tick_ += uint32_t(expirations);
        loop_->data_->date.set(std::time(nullptr));
        loop_->sweepTimeouts();
        if (loop_->afterTick) loop_->afterTick();
    }

private:
    Loop *loop_;
};

Loop::Loop() : data_(std::make_unique<LoopData>()) {
    data_->date.set(std::time(nullptr));
    epollFd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epollFd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    waker_ = new Waker(this);
    ticker_ = new Ticker(this);
    add(waker_, EPOLLIN);
    add(ticker_, EPOLLIN);
}

Loop::~Loop() {
    while (sockets) {
        sockets->close();
    }
    freeRetired();
    delete waker_;
    delete ticker_;
    ::close(epollFd_);
}

void Loop::add(Pollable *p, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = p;
    if (epoll_ctl(epollFd_, EPOLL_CTL_ADD, p->fd, &ev) != 0) {
        throw std::system_error(errno, std::generic_category(), "epoll_ctl ADD");
    }
}

void Loop::modify(Pollable *p, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = p;
    epoll_ctl(epollFd_, EPOLL_CTL_MOD, p->fd, &ev);
}

void Loop::remove(Pollable *p) { epoll_ctl(epollFd_, EPOLL_CTL_DEL, p->fd, nullptr); }

void Loop::link(Socket *s) {
    s->prev = nullptr;
    s->next = sockets;
    if (sockets) sockets->prev = s;
    sockets = s;
    socketCount++;
}

void Loop::unlink(Socket *s) {
    if (s->prev) s->prev->next = s->next;
    else sockets = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = nullptr;
    socketCount--;
}

void Loop::defer(std::function<void()> fn) {
    {
        std::lock_guard<std::mutex> lock(deferMutex_);
        deferred_.push_back(std::move(fn));
    }
    waker_->wake();
}

void Loop::wakeup() { waker_->wake(); }

void Loop::runDeferred() {
    {
        std::lock_guard<std::mutex> lock(deferMutex_);
        running_.swap(deferred_);
    }
    for (auto &fn : running_) {
        fn();
    }
    running_.clear();
}

uint64_t Loop::addTimer(uint64_t delayMs, std::function<void()> fn) {
    uint64_t id = nextTimerId_++;
    uint64_t deadline = monotonicMs() + delayMs;
    timers_.emplace(TimerKey{deadline, id}, std::move(fn));
    timerDeadlines_[id] = deadline;
    if (!inDispatch_) wakeup(); // a wait already under way does not know this deadline
    return id;
}

void Loop::cancelTimer(uint64_t id) {
    auto it = timerDeadlines_.find(id);
    if (it == timerDeadlines_.end()) return;
    timers_.erase(TimerKey{it->second, id});
    timerDeadlines_.erase(it);
}

int Loop::nextTimerDelayMs() const {
    if (timers_.empty()) return -1;
    uint64_t now = monotonicMs();
    uint64_t deadline = timers_.begin()->first.deadlineMs;
    return deadline <= now ? 0 : int(deadline - now);
}

void Loop::runTimers() {
    if (timers_.empty()) return;
    uint64_t now = monotonicMs();
    while (!timers_.empty() && timers_.begin()->first.deadlineMs <= now) {
        auto node = timers_.extract(timers_.begin());
        timerDeadlines_.erase(node.key().id);
        node.mapped()();
    }
}

void Loop::uncork() {
    if (data_->corked) {
        data_->corked->flushCork();
    }
}

void Loop::sweepTimeouts() {
    for (Socket *s = sockets, *next; s; s = next) {
        next = s->next;
        if (s->timeoutAt && s->timeoutAt <= tick_) {
            s->timeoutAt = 0;
            s->onTimeout();
        }
    }
}

void Loop::freeRetired() {
    for (Socket *s : retired_) {
        delete s;
    }
    retired_.clear();
}

void Loop::dispatch(int ready) {
    inDispatch_ = true;
    dispatches_++;
    for (int i = 0; i < ready; i++) {
        static_cast<Pollable *>(events_[i].data.ptr)->onPoll(events_[i].events);
        uncork();
    }
    runTimers();
    uncork();
    if (afterIteration) afterIteration();
    uncork();
    inDispatch_ = false;
    freeRetired();
}

void Loop::runOnce(int timeoutMs) {
    int timerDelay = nextTimerDelayMs();
    if (timerDelay >= 0 && (timeoutMs < 0 || timerDelay < timeoutMs)) timeoutMs = timerDelay;
    if (beforeWait) beforeWait();
    int ready = epoll_wait(epollFd_, events_, int(sizeof events_ / sizeof events_[0]), timeoutMs);
    int waitErrno = errno;
    if (afterWait) afterWait();
    if (ready < 0) {
        if (waitErrno != EINTR) throw std::system_error(waitErrno, std::generic_category(), "epoll_wait");
        ready = 0;
    }
    dispatch(ready);
}

void Loop::run() {
    stopRequested_ = false;
    while (!stopRequested_) {
        runOnce(-1);
    }
}

} // namespace uws
