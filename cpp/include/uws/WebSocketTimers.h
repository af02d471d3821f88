// When a WebSocket's timers fire: the idle timeout (with its automatic ping), and the
// maximum lifetime. No I/O and no clock of its own: times are loop ticks (seconds) passed
// in, so the rules are unit-tested with a clock the test moves.
#pragma once

#include <cstdint>

namespace uws {

class WebSocketTimers {
public:
    enum class Action : uint8_t {
        None,          // nothing due yet (re-arm at deadline())
        Ping,          // idle for half the timeout: ping, and close if nothing comes back
        CloseIdle,     // nothing received within the idle timeout
        CloseLifetime, // open for maxLifetime
    };

    struct Settings {
        uint32_t idleTimeout = 0;         // seconds; 0: never idle
        bool sendPingsAutomatically = false;
        uint32_t maxLifetimeSeconds = 0;  // 0: no limit
    };

    void start(uint32_t now, const Settings &settings) {
        settings_ = settings;
        lifetimeDeadline_ = settings.maxLifetimeSeconds ? now + settings.maxLifetimeSeconds : 0;
        activity(now);
    }

    // Something arrived (or was sent, with reset_idle_timeout_on_send): the idle clock restarts.
    void activity(uint32_t now) {
        pingSent_ = false;
        uint32_t idle = settings_.idleTimeout;
        idleDeadline_ = idle == 0 ? 0 : now + (settings_.sendPingsAutomatically ? firstHalf(idle) : idle);
    }

    // The earliest tick something is due at; 0 when nothing ever is.
    uint32_t deadline() const {
        if (!idleDeadline_) return lifetimeDeadline_;
        if (!lifetimeDeadline_) return idleDeadline_;
        return idleDeadline_ < lifetimeDeadline_ ? idleDeadline_ : lifetimeDeadline_;
    }

    // What to do at tick now; after Ping, deadline() is when an unanswered ping closes.
    Action expire(uint32_t now) {
        if (lifetimeDeadline_ && now >= lifetimeDeadline_) return Action::CloseLifetime;
        if (!idleDeadline_ || now < idleDeadline_) return Action::None;
        if (settings_.sendPingsAutomatically && !pingSent_) {
            pingSent_ = true;
            uint32_t rest = settings_.idleTimeout - firstHalf(settings_.idleTimeout);
            idleDeadline_ = now + (rest ? rest : 1);
            return Action::Ping;
        }
        idleDeadline_ = 0;
        return Action::CloseIdle;
    }

    bool pingSent() const { return pingSent_; }

private:
    // The ping goes out halfway, so the peer has the other half to answer.
    static uint32_t firstHalf(uint32_t idle) { return idle > 1 ? idle / 2 : 1; }

    Settings settings_;
    uint32_t idleDeadline_ = 0;
    uint32_t lifetimeDeadline_ = 0;
    bool pingSent_ = false;
};

} // namespace uws
