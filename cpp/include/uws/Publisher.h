// Fan-out of published messages to a TopicTree's subscribers. One per App; App::publish and
// WebSocket::publish both come here.
//
// A frame is built once and appended to each subscriber's publish batch; batches leave in
// one write per subscriber when the loop iteration ends (drain).
#pragma once

#include <string_view>
#include <vector>

#include "uws/AppStats.h"
#include "uws/Log.h"
#include "uws/WebSocketParser.h"

namespace uws {

class Loop;
struct LoopData;
class TopicTree;
struct Topic;
class WebSocket;

class Publisher {
public:
    Publisher(Loop &loop, TopicTree &topics, AppStats &stats, const Logger &log)
        : loop_(loop), topics_(topics), stats_(stats), log_(log) {}

    // Sends message to every subscriber of topic (except `except`). A subscriber over
    // maxBackpressure is skipped (or closed, per its behavior) without slowing the others.
    // Returns whether the topic had subscribers.
    bool publish(std::string_view topic, std::string_view message, OpCode opCode, bool compress,
                 WebSocket *except = nullptr);
    // publish in two halves, for a caller that builds the message only when someone will
    // receive it: start counts the publish (as publish does) and returns the topic, or null
    // when it has no subscribers (the publish is then complete); deliver sends to the topic's
    // subscribers. Nothing may subscribe or unsubscribe between the two: the topic can go.
    Topic *start(std::string_view topic);
    void deliver(Topic &topic, std::string_view message, OpCode opCode, bool compress, WebSocket *except);
    // A socket's publish batch went from empty to not empty.
    void markPublished(WebSocket *ws) { publishedSockets_.push_back(ws); }
    // Writes every pending publish batch: one write per subscriber.
    void drain();

private:
    Loop &loop_;
    TopicTree &topics_;
    AppStats &stats_;
    const Logger &log_;
    std::vector<WebSocket *> publishedSockets_;
    std::vector<WebSocket *> droppedSockets_;
};

} // namespace uws
