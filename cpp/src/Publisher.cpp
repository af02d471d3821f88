#include "uws/Publisher.h"

#include <memory>
#include <string>

#include "uws/Loop.h"
#include "uws/LoopData.h"
#include "uws/TopicTree.h"
#include "uws/WebSocket.h"

namespace uws {

bool Publisher::publish(std::string_view topicName, std::string_view message, OpCode opCode, bool compress,
                        WebSocket *except) {
    Topic *topic = start(topicName);
    if (!topic) return false;
    deliver(*topic, message, opCode, compress, except);
    return true;
}

Topic *Publisher::start(std::string_view topicName) {
    stats_.publishes.add();
    return topics_.find(topicName);
}

void Publisher::deliver(Topic &topic, std::string_view message, OpCode opCode, bool compress, WebSocket *except) {
    char header[kMaxServerHeaderSize];
    std::string_view frameHeader(header, formatFrameHeader(header, opCode, message.size()));
    // Compressed once per shared-compressor window size; dedicated compressors (each with
    // its own context) compress per subscriber.
    struct SharedFrame {
        bool tried = false;
        bool compressed = false;
        char header[kMaxServerHeaderSize];
        size_t headerLength = 0;
        std::string payload;
    };
    std::unique_ptr<SharedFrame[]> sharedFrames;
    // Handlers for drops run after the loop: they may unsubscribe or close, which would
    // reorder the subscriber list under our feet.
    droppedSockets_.clear();
    uint64_t delivered = 0;
    std::string &scratch = loop_.data().compressScratch;
    for (const Topic::Entry &entry : topic.subscribers) {
        WebSocket *ws = static_cast<WebSocket *>(entry.subscriber->owner);
        if (ws == except || !ws->isOpen()) continue;
        SendStatus status;
        int windowBits = compress ? ws->sharedCompressorWindowBits() : 0;
        if (windowBits) {
            if (!sharedFrames) sharedFrames.reset(new SharedFrame[16]);
            SharedFrame &frame = sharedFrames[windowBits];
            if (!frame.tried) {
                frame.tried = true;
                frame.compressed = loop_.data().sharedDeflater(windowBits).compress(message, frame.payload, true);
                frame.headerLength = formatFrameHeader(frame.header, opCode, frame.payload.size(), true, true);
            }
            status = frame.compressed && ws->acceptsSharedCompression(message, frame.payload.size())
                         ? ws->queuePublished(std::string_view(frame.header, frame.headerLength), frame.payload)
                         : ws->queuePublished(frameHeader, message);
        } else if (compress && ws->compressionNegotiated() && !ws->wouldDrop(message.size()) &&
                   ws->compressMessage(message, scratch)) {
            // Checked before compressing: a dedicated compressor's context must only ever
            // see messages the client will receive.
            char ownHeader[kMaxServerHeaderSize];
            size_t ownLength = formatFrameHeader(ownHeader, opCode, scratch.size(), true, true);
            status = ws->queuePublished(std::string_view(ownHeader, ownLength), scratch);
        } else {
            status = ws->queuePublished(frameHeader, message);
        }
        if (status == SendStatus::Dropped) {
            droppedSockets_.push_back(ws);
        } else {
            delivered++;
        }
    }
    stats_.deliveries.add(delivered);
    stats_.messagesOut.add(delivered);
    if (!droppedSockets_.empty()) {
        std::vector<WebSocket *> dropped;
        dropped.swap(droppedSockets_);
        stats_.drops.add(dropped.size());
        for (WebSocket *ws : dropped) {
            if (!ws->isOpen()) continue;
            const WebSocketBehavior &b = ws->context->behavior;
            if (b.closeOnBackpressureLimit) {
                logTo(log_, LogLevel::Warning,
                      [&] { return "closing " + ws->remoteAddress() + " with 1008: over max_backpressure on publish"; });
                ws->end(CloseCode::PolicyViolation, "backpressure limit");
            } else if (b.dropped) {
                b.dropped(ws, message, opCode);
            }
        }
    }
    if (!loop_.inDispatch()) drain();
}

void Publisher::drain() {
    // Index loop: flushing can run handlers that publish again and append here.
    for (size_t i = 0; i < publishedSockets_.size(); i++) {
        publishedSockets_[i]->flushPublished();
    }
    publishedSockets_.clear();
}

} // namespace uws
