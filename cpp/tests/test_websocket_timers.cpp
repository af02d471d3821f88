// WebSocketTimers with a clock the test moves: the idle timeout, the automatic ping halfway
// through it, activity postponing both, and max_lifetime (minutes, whatever the traffic).
#include <cstdint>

#include "check.h"
#include "uws/WebSocketTimers.h"

namespace {

using Action = uws::WebSocketTimers::Action;

uws::WebSocketTimers::Settings settings(uint32_t idle, bool pings, uint32_t lifetimeMinutes) {
    uws::WebSocketTimers::Settings s;
    s.idleTimeout = idle;
    s.sendPingsAutomatically = pings;
    s.maxLifetimeSeconds = lifetimeMinutes * 60;
    return s;
}

// Ticks from `from` until something is due, acting as the loop's sweep does.
Action runUntilDue(uws::WebSocketTimers &timers, uint32_t &now, uint32_t limit) {
    for (; now < limit; now++) {
        if (timers.deadline() && now >= timers.deadline()) {
            Action action = timers.expire(now);
            if (action != Action::None) return action;
        }
    }
    return Action::None;
}

void testIdleWithoutPingsClosesAtTheTimeout() {
    uws::WebSocketTimers timers;
    timers.start(100, settings(10, false, 0));
    CHECK_EQ(timers.deadline(), 110u);
    CHECK(timers.expire(109) == Action::None);
    CHECK(timers.expire(110) == Action::CloseIdle);
}

void testActivityPostponesTheIdleTimeout() {
    uws::WebSocketTimers timers;
    timers.start(0, settings(10, false, 0));
    timers.activity(8);
    CHECK_EQ(timers.deadline(), 18u);
    CHECK(timers.expire(17) == Action::None);
    CHECK(timers.expire(18) == Action::CloseIdle);
}

void testPingHalfwayThenCloseWhenUnanswered() {
    uws::WebSocketTimers timers;
    timers.start(0, settings(10, true, 0));
    CHECK_EQ(timers.deadline(), 5u);
    CHECK(timers.expire(5) == Action::Ping);
    CHECK(timers.pingSent());
    CHECK_EQ(timers.deadline(), 10u);
    CHECK(timers.expire(9) == Action::None);
    CHECK(timers.expire(10) == Action::CloseIdle);
}

void testAnsweredPingKeepsTheConnection() {
    uws::WebSocketTimers timers;
    timers.start(0, settings(10, true, 0));
    uint32_t now = 0;
    // A client that only answers pings: every pong is activity.
    for (int round = 0; round < 20; round++) {
        Action action = runUntilDue(timers, now, 1000);
        CHECK(action == Action::Ping);
        timers.activity(now + 1); // the pong arrives a tick later
    }
    CHECK(now > 90u);
}

void testOddAndTinyIdleTimeouts() {
    uws::WebSocketTimers timers;
    timers.start(0, settings(1, true, 0));
    CHECK_EQ(timers.deadline(), 1u);
    CHECK(timers.expire(1) == Action::Ping);
    CHECK_EQ(timers.deadline(), 2u); // never a zero wait for the answer
    CHECK(timers.expire(2) == Action::CloseIdle);
    timers.start(0, settings(7, true, 0));
    CHECK_EQ(timers.deadline(), 3u);
    CHECK(timers.expire(3) == Action::Ping);
    CHECK_EQ(timers.deadline(), 7u);
}

void testZeroIdleTimeoutNeverFires() {
    uws::WebSocketTimers timers;
    timers.start(0, settings(0, true, 0));
    CHECK_EQ(timers.deadline(), 0u);
    CHECK(timers.expire(1000000) == Action::None);
}

void testMaxLifetimeClosesABusyConnection() {
    uws::WebSocketTimers timers;
    timers.start(50, settings(120, true, 2)); // two minutes
    uint32_t now = 50;
    Action action = Action::None;
    for (; now < 50 + 1000; now++) {
        timers.activity(now); // traffic every tick: never idle
        if (timers.deadline() && now >= timers.deadline()) {
            action = timers.expire(now);
            if (action != Action::None) break;
        }
    }
    CHECK(action == Action::CloseLifetime);
    CHECK_EQ(now, 50u + 120u);
}

void testMaxLifetimeWithoutIdleTimeout() {
    uws::WebSocketTimers timers;
    timers.start(0, settings(0, false, 1));
    CHECK_EQ(timers.deadline(), 60u);
    CHECK(timers.expire(59) == Action::None);
    CHECK(timers.expire(60) == Action::CloseLifetime);
}

void testTheEarlierDeadlineIsArmed() {
    uws::WebSocketTimers timers;
    timers.start(0, settings(600, false, 1));
    CHECK_EQ(timers.deadline(), 60u); // lifetime first
    timers.start(0, settings(30, false, 1));
    CHECK_EQ(timers.deadline(), 30u); // idle first
    CHECK(timers.expire(30) == Action::CloseIdle);
    CHECK_EQ(timers.deadline(), 60u); // the lifetime is still armed after idle fired
}

void testZeroLifetimeIsOff() {
    uws::WebSocketTimers timers;
    timers.start(0, settings(0, false, 0));
    CHECK_EQ(timers.deadline(), 0u);
    CHECK(timers.expire(100000) == Action::None);
}

} // namespace

int main() {
    RUN_TEST(testIdleWithoutPingsClosesAtTheTimeout);
    RUN_TEST(testActivityPostponesTheIdleTimeout);
    RUN_TEST(testPingHalfwayThenCloseWhenUnanswered);
    RUN_TEST(testAnsweredPingKeepsTheConnection);
    RUN_TEST(testOddAndTinyIdleTimeouts);
    RUN_TEST(testZeroIdleTimeoutNeverFires);
    RUN_TEST(testMaxLifetimeClosesABusyConnection);
    RUN_TEST(testMaxLifetimeWithoutIdleTimeout);
    RUN_TEST(testTheEarlierDeadlineIsArmed);
    RUN_TEST(testZeroLifetimeIsOff);
    return check::report("test_websocket_timers");
}
