#include "uws/WebSocket.h"

#include "uws/App.h"

namespace uws {

namespace {
// Seconds we wait for the peer's close frame (or its FIN) after sending ours.
constexpr unsigned kClosingTimeout = 4;
} // namespace

WebSocket::WebSocket(WebSocketContext *context_, int fd_) : Socket(&context_->app->loop(), fd_), context(context_) {
    parser_.maxPayloadLength = context->behavior.maxPayloadLength;
    subscriber_.owner = this;
    restartIdleTimer();
}

void WebSocket::restartIdleTimer() {
    const WebSocketBehavior &b = context->behavior;
    pingSent_ = false;
    if (b.idleTimeout == 0) {
        setTimeout(0);
    } else if (b.sendPingsAutomatically) {
        setTimeout(b.idleTimeout > 1 ? b.idleTimeout / 2 : 1);
    } else {
        setTimeout(b.idleTimeout);
    }
}

void WebSocket::onTimeout() {
    if (state_ != State::Open) {
        close();
        return;
    }
    const WebSocketBehavior &b = context->behavior;
    if (b.sendPingsAutomatically && !pingSent_) {
        sendFrame(OpCode::Ping, nullptr, 0);
        pingSent_ = true;
        unsigned rest = b.idleTimeout - (b.idleTimeout > 1 ? b.idleTimeout / 2 : 1);
        setTimeout(rest ? rest : 1);
        return;
    }
    context->app->stats.idleTimeouts.add();
    context->app->logf(LogLevel::Info, "closing " + remoteAddress() + ": idle timeout");
    end(CloseCode::GoingAway, "idle timeout");
}

void WebSocket::sendFrame(OpCode opCode, const char *payload, size_t length) {
    if (!published_.empty()) flushPublished(); // published frames were queued first
    char header[kMaxServerHeaderSize];
    size_t headerLength = formatFrameHeader(header, opCode, length);
    iovec parts[2] = {{header, headerLength}, {const_cast<char *>(payload), length}};
    write(parts, length ? 2 : 1);
    context->app->stats.bytesOut.add(headerLength + length);
}

SendStatus WebSocket::send(std::string_view message, OpCode opCode) {
    if (state_ != State::Open) return SendStatus::Dropped;
    const WebSocketBehavior &b = context->behavior;
    AppStats &stats = context->app->stats;
    size_t buffered = queuedAmount();
    // An empty buffer always takes one message, so a message larger than the limit can
    // still be sent; after that the limit bounds what a slow reader costs us.
    if (b.maxBackpressure && buffered && buffered + message.size() > b.maxBackpressure) {
        stats.drops.add();
        if (b.closeOnBackpressureLimit) {
            context->app->logf(LogLevel::Warning, "closing " + remoteAddress() + ": over max_backpressure");
            terminate("backpressure limit");
        }
        return SendStatus::Dropped;
    }
    sendFrame(opCode, message.data(), message.size());
    stats.messagesOut.add();
    if (bufferedAmount()) {
        stats.backpressureEvents.add();
        return SendStatus::Backpressure;
    }
    return SendStatus::Success;
}

void WebSocket::sendClose(uint16_t code, std::string_view reason) {
    char payload[125];
    size_t length = 0;
    if (code != CloseCode::NoStatus && code != CloseCode::Abnormal) {
        length = formatClosePayload(payload, code, reason);
    }
    sendFrame(OpCode::Close, payload, length);
}

void WebSocket::runCloseHandler(int code, std::string_view reason) {
    App *app = context->app;
    app->stats.openConnections.sub();
    app->stats.connectionsClosed.add();
    const WebSocketBehavior &b = context->behavior;
    if (b.close) b.close(this, code, reason);
    app->topics.unsubscribeAll(&subscriber_, [this, &b](const std::string &topic, size_t count) {
        if (b.subscription) b.subscription(this, topic, count, count + 1);
    });
    if (b.release) b.release(this);
}

bool WebSocket::subscribe(std::string_view topic) {
    size_t count = 0;
    if (!context->app->topics.subscribe(&subscriber_, topic, count)) return false;
    if (context->behavior.subscription) context->behavior.subscription(this, topic, count, count - 1);
    return true;
}

bool WebSocket::unsubscribe(std::string_view topic) {
    size_t count = 0;
    if (!context->app->topics.unsubscribe(&subscriber_, topic, count)) return false;
    if (context->behavior.subscription) context->behavior.subscription(this, topic, count, count + 1);
    return true;
}

bool WebSocket::isSubscribed(std::string_view topic) const { return context->app->topics.isSubscribed(&subscriber_, topic); }

bool WebSocket::publish(std::string_view topic, std::string_view message, OpCode opCode, bool compress) {
    return context->app->publish(topic, message, opCode, compress, this);
}

SendStatus WebSocket::queuePublished(std::string_view header, std::string_view payload) {
    if (state_ != State::Open) return SendStatus::Dropped;
    const WebSocketBehavior &b = context->behavior;
    size_t queued = queuedAmount();
    if (b.maxBackpressure && queued && queued + header.size() + payload.size() > b.maxBackpressure) {
        return SendStatus::Dropped;
    }
    if (published_.empty()) context->app->markPublished(this);
    published_.append(header).append(payload);
    return bufferedAmount() ? SendStatus::Backpressure : SendStatus::Success;
}

void WebSocket::flushPublished() {
    if (published_.empty()) return;
    std::string batch;
    batch.swap(published_);
    if (isClosed()) return;
    context->app->stats.bytesOut.add(batch.size());
    write(batch);
}

void WebSocket::end(uint16_t code, std::string_view reason) {
    if (state_ != State::Open) return;
    state_ = State::Closing;
    sendClose(code, reason);
    setTimeout(kClosingTimeout);
    runCloseHandler(code, reason);
}

void WebSocket::terminate(std::string_view reason) {
    if (state_ == State::Open) {
        state_ = State::Closed;
        runCloseHandler(CloseCode::Abnormal, reason);
    }
    close();
}

void WebSocket::onData(char *data, size_t length) {
    context->app->stats.bytesIn.add(length);
    if (state_ == State::Open) restartIdleTimer();
    parser_.consume(data, length, *this);
}

bool WebSocket::onMessage(char *data, size_t length, OpCode opCode, bool compressed) {
    (void)compressed; // never set until permessage-deflate is negotiated
    if (state_ != State::Open) return !isClosed();
    context->app->stats.messagesIn.add();
    if (context->behavior.message) context->behavior.message(this, std::string_view(data, length), opCode);
    return !isClosed();
}

bool WebSocket::onPing(char *data, size_t length) {
    if (state_ != State::Open) return !isClosed();
    sendFrame(OpCode::Pong, data, length);
    if (context->behavior.ping) context->behavior.ping(this, std::string_view(data, length));
    return !isClosed();
}

bool WebSocket::onPong(char *data, size_t length) {
    if (state_ != State::Open) return !isClosed();
    if (context->behavior.pong) context->behavior.pong(this, std::string_view(data, length));
    return !isClosed();
}

bool WebSocket::onClose(uint16_t code, std::string_view reason) {
    if (state_ == State::Open) {
        state_ = State::Closed;
        // Echo the code (RFC 6455 5.5.1); an empty close is answered with an empty close.
        sendClose(code, {});
        runCloseHandler(code, reason);
    }
    closeAfterFlush();
    return false;
}

void WebSocket::onProtocolError(uint16_t code, const char *why) {
    AppStats &stats = context->app->stats;
    stats.protocolErrors.add();
    context->app->logf(LogLevel::Warning, "closing " + remoteAddress() + " with " + std::to_string(code) + ": " + why);
    if (state_ == State::Open) {
        state_ = State::Closed;
        sendClose(code, why);
        runCloseHandler(code, why);
    }
    closeAfterFlush();
}

void WebSocket::onEnd() { close(); }

void WebSocket::onDrained() {
    if (state_ == State::Open && context->behavior.drain) context->behavior.drain(this);
}

void WebSocket::onClosed() {
    if (state_ == State::Open) {
        state_ = State::Closed;
        runCloseHandler(CloseCode::Abnormal, {});
    }
}

} // namespace uws
