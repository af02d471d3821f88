// One client connection's state. Buffers belong to the connection and are reused for its
// whole life: `out` is cleared, not freed, after each write.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "Deflate.h"

enum class ConnectionState : uint8_t { CONNECTING, HANDSHAKE, OPEN, CLOSING, CLOSED };

// What a connection does once open. ECHO sends and checks echoes; SUBSCRIBER sends "sub:bench"
// and times deliveries; PUBLISHER sends at the fan-out rate; IDLE only answers pings.
enum class Role : uint8_t { ECHO, SUBSCRIBER, PUBLISHER, IDLE };

struct Connection {
    int fd = -1;
    ConnectionState state = ConnectionState::CONNECTING;
    Role role = Role::ECHO;
    bool dirty = false;         // has output queued since the last flush round
    bool waitingWritable = false;  // EPOLLOUT is armed because a write was partial
    bool deflateNegotiated = false;
    bool probed = false;        // SUBSCRIBER: has seen a probe, so its subscription is live

    std::vector<uint8_t> pending;  // bytes read but not yet parsed (a partial frame)
    std::vector<uint8_t> out;      // frames queued for the next write
    size_t outStart = 0;

    std::vector<uint8_t> fragments;  // a fragmented message being reassembled
    uint8_t fragmentOpcode = 0;
    bool fragmentCompressed = false;

    // ECHO: send time of each message in flight, indexed by sequence number modulo in-flight.
    std::vector<uint64_t> sendTimes;
    uint64_t sentSeq = 0;
    uint64_t receivedSeq = 0;

    int skipped = 0;                // greeting messages ignored so far (--skip-first)
    uint64_t lastDeliveredSeq = 0;  // SUBSCRIBER: deliveries must arrive in publish order

    std::unique_ptr<Deflate> deflate;
};
