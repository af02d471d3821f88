// What the sockets of one ws() route share: their behavior and the pieces of the App they
// work with. A WebSocket knows its context, never the App.
#pragma once

#include "uws/AppStats.h"
#include "uws/Log.h"
#include "uws/WebSocketBehavior.h"

namespace uws {

class Loop;
struct LoopData;
class Publisher;
class TopicTree;

struct WebSocketContext {
    WebSocketBehavior behavior;
    Loop *loop;
    // Cork and receive buffers, shared zlib streams, scratch.
    LoopData *loopData;
    // Subscriptions are kept here; publishing goes through publisher.
    TopicTree *topics;
    Publisher *publisher;
    AppStats *stats;
    const Logger *log;
};

} // namespace uws
