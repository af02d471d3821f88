// Options and handlers of one ws() route.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "uws/PerMessageDeflate.h"
#include "uws/WebSocketParser.h"

namespace uws {

class HttpConnection;
struct HttpRequest;
class WebSocket;
struct WebSocketContext;

// Defaults match what the Python API documents.
struct WebSocketBehavior {
    // Largest message accepted (after reassembly); larger closes with 1009 before buffering.
    size_t maxPayloadLength = 16 * 1024 * 1024;
    // Seconds without receiving anything before the connection is closed; 0 disables.
    unsigned idleTimeout = 120;
    // Sending also restarts the idle timeout (a server that streams to a quiet client).
    bool resetIdleTimeoutOnSend = false;
    // Seconds a connection may stay open, whatever it does; 0 disables. Bounds how long a
    // client keeps a token's rights or a pinned worker. The Python API takes whole minutes
    // (max_lifetime); the bindings pass seconds, so tests can use a short one.
    uint32_t maxLifetimeSeconds = 0;
    // Bytes a socket may hold unsent before send() drops (or closes, see below).
    size_t maxBackpressure = 1024 * 1024;
    // A send (or publish) over maxBackpressure ends the connection with 1008 instead of
    // being dropped: a consumer that cannot keep up is told so, as Centrifugo does.
    bool closeOnBackpressureLimit = false;
    // Ping halfway through idleTimeout so that live but quiet clients stay connected.
    bool sendPingsAutomatically = true;
    uint32_t compression = 0;
    // Messages shorter than this go out uncompressed, and so does a message the shared
    // compressor could not shrink; 0 compresses everything.
    size_t compressionThreshold = kDefaultCompressThreshold;
    // Subprotocols this route speaks, preferred first; see selectSubprotocol.
    std::vector<std::string> subprotocols;

    std::function<void(HttpConnection *, HttpRequest *, WebSocketContext *)> upgrade;
    std::function<void(WebSocket *)> open;
    std::function<void(WebSocket *, std::string_view, OpCode)> message;
    std::function<void(WebSocket *)> drain;
    std::function<void(WebSocket *, std::string_view)> ping;
    std::function<void(WebSocket *, std::string_view)> pong;
    // Called exactly once per opened socket, whatever ended it.
    std::function<void(WebSocket *, int, std::string_view)> close;
    // A subscription changed: (ws, topic, count after, count before). Also runs for each
    // topic a closing socket leaves, after close.
    std::function<void(WebSocket *, std::string_view, size_t, size_t)> subscription;
    // A publish skipped this socket because it is over maxBackpressure.
    std::function<void(WebSocket *, std::string_view, OpCode)> dropped;
    // Last call for a socket: the bindings let go of their handle here.
    std::function<void(WebSocket *)> release;
};

} // namespace uws
