#include "uws/WebSocket.h"

#include "uws/LoopData.h"
#include "uws/Publisher.h"

namespace uws {

namespace {
// Seconds we wait for the peer's close frame (or its FIN) after sending ours.
constexpr unsigned kClosingTimeout = 4;
} // namespace

WebSocket::WebSocket(WebSocketContext *context_, int fd_) : Socket(context_->loop, fd_), context(context_) {
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
    context->stats->idleTimeouts.add();
    logTo(*context->log, LogLevel::Info, "closing " + remoteAddress() + ": idle timeout");
    end(CloseCode::GoingAway, "idle timeout");
}

void WebSocket::sendFrame(OpCode opCode, const char *payload, size_t length, bool compressed) {
    if (!published_.empty()) flushPublished(); // published frames were queued first
    char header[kMaxServerHeaderSize];
    size_t headerLength = formatFrameHeader(header, opCode, length, true, compressed);
    iovec parts[2] = {{header, headerLength}, {const_cast<char *>(payload), length}};
    write(parts, length ? 2 : 1);
    context->stats->bytesOut.add(headerLength + length);
}

void WebSocket::enableCompression(const DeflateAgreement &agreement) {
    const WebSocketBehavior &b = context->behavior;
    auto state = std::make_unique<DeflateState>();
    state->serverWindowBits = agreement.serverWindowBits;
    state->serverNoContextTakeover = agreement.serverNoContextTakeover;
    state->clientNoContextTakeover = agreement.clientNoContextTakeover;
    uint32_t compressor = CompressOption::compressor(b.compression);
    if (agreement.serverWindowBits && compressor > CompressOption::SharedCompressor) {
        int windowBits, memLevel;
        dedicatedCompressorParameters(compressor, windowBits, memLevel);
        state->deflater = std::make_unique<Deflater>(agreement.serverWindowBits, memLevel);
    }
    if (CompressOption::decompressor(b.compression) > 1) {
        state->inflater = std::make_unique<Inflater>(agreement.clientWindowBits);
    }
    deflate_ = std::move(state);
    parser_.compressionNegotiated = true;
}

int WebSocket::sharedCompressorWindowBits() const {
    return deflate_ && !deflate_->deflater ? deflate_->serverWindowBits : 0;
}

bool WebSocket::compressMessage(std::string_view message, std::string &out) {
    if (!deflate_ || !deflate_->serverWindowBits || message.size() < context->behavior.compressionThreshold) return false;
    if (deflate_->deflater) {
        // With context takeover the peer's inflater follows ours: the output is used even
        // when it is not smaller.
        return deflate_->deflater->compress(message, out, deflate_->serverNoContextTakeover);
    }
    Deflater &shared = context->loopData->sharedDeflater(deflate_->serverWindowBits);
    return shared.compress(message, out, true) && acceptsSharedCompression(message, out.size());
}

SendStatus WebSocket::send(std::string_view message, OpCode opCode, bool compress) {
    if (state_ != State::Open) return SendStatus::Dropped;
    const WebSocketBehavior &b = context->behavior;
    AppStats &stats = *context->stats;
    // An empty buffer always takes one message, so a message larger than the limit can
    // still be sent; after that the limit bounds what a slow reader costs us.
    if (wouldDrop(message.size())) {
        stats.drops.add();
        if (b.closeOnBackpressureLimit) {
            logTo(*context->log, LogLevel::Warning, "closing " + remoteAddress() + ": over max_backpressure");
            terminate("backpressure limit");
        }
        return SendStatus::Dropped;
    }
    std::string &compressed = context->loopData->compressScratch;
    if (compress && (opCode == OpCode::Text || opCode == OpCode::Binary) && compressMessage(message, compressed)) {
        sendFrame(opCode, compressed.data(), compressed.size(), true);
    } else {
        sendFrame(opCode, message.data(), message.size());
    }
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
    context->stats->openConnections.sub();
    context->stats->connectionsClosed.add();
    const WebSocketBehavior &b = context->behavior;
    if (b.close) b.close(this, code, reason);
    context->topics->unsubscribeAll(&subscriber_, [this, &b](const std::string &topic, size_t count) {
        if (b.subscription) b.subscription(this, topic, count, count + 1);
    });
    if (b.release) b.release(this);
}

bool WebSocket::subscribe(std::string_view topic) {
    size_t count = 0;
    if (!context->topics->subscribe(&subscriber_, topic, count)) return false;
    if (context->behavior.subscription) context->behavior.subscription(this, topic, count, count - 1);
    return true;
}

bool WebSocket::unsubscribe(std::string_view topic) {
    size_t count = 0;
    if (!context->topics->unsubscribe(&subscriber_, topic, count)) return false;
    if (context->behavior.subscription) context->behavior.subscription(this, topic, count, count + 1);
    return true;
}

bool WebSocket::isSubscribed(std::string_view topic) const { return context->topics->isSubscribed(&subscriber_, topic); }

bool WebSocket::publish(std::string_view topic, std::string_view message, OpCode opCode, bool compress) {
    return context->publisher->publish(topic, message, opCode, compress, this);
}

SendStatus WebSocket::queuePublished(std::string_view header, std::string_view payload) {
    if (state_ != State::Open) return SendStatus::Dropped;
    if (wouldDrop(header.size() + payload.size())) return SendStatus::Dropped;
    if (published_.empty()) context->publisher->markPublished(this);
    published_.append(header).append(payload);
    return bufferedAmount() ? SendStatus::Backpressure : SendStatus::Success;
}

void WebSocket::flushPublished() {
    if (published_.empty()) return;
    std::string batch;
    batch.swap(published_);
    if (isClosed()) return;
    context->stats->bytesOut.add(batch.size());
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
    context->stats->bytesIn.add(length);
    if (state_ == State::Open) restartIdleTimer();
    parser_.consume(data, length, *this);
}

bool WebSocket::onMessage(char *data, size_t length, OpCode opCode, bool compressed) {
    if (state_ != State::Open) return !isClosed();
    if (compressed) {
        LoopData &shared = *context->loopData;
        Inflater &inflater = deflate_->inflater ? *deflate_->inflater : shared.sharedInflater;
        bool reset = !deflate_->inflater || deflate_->clientNoContextTakeover;
        std::string &inflated = shared.inflateScratch;
        switch (inflater.inflate(std::string_view(data, length), inflated, context->behavior.maxPayloadLength, reset)) {
        case InflateResult::TooLarge:
            onProtocolError(CloseCode::MessageTooBig, "inflated message over max_payload_length");
            return false;
        case InflateResult::Invalid:
            onProtocolError(CloseCode::InvalidPayload, "invalid deflate data");
            return false;
        case InflateResult::Ok:
            break;
        }
        if (opCode == OpCode::Text && !isValidUtf8(inflated.data(), inflated.size())) {
            onProtocolError(CloseCode::InvalidPayload, "invalid UTF-8 in text message");
            return false;
        }
        // The scratch buffer is shared by the loop: hand the handler a private view.
        std::string message;
        message.swap(inflated);
        context->stats->messagesIn.add();
        if (context->behavior.message) context->behavior.message(this, message, opCode);
        message.swap(inflated);
        return !isClosed();
    }
    context->stats->messagesIn.add();
    if (context->behavior.message) context->behavior.message(this, std::string_view(data, length), opCode);
    return !isClosed();
}

bool WebSocket::onPing(char *data, size_t length) {
    if (state_ != State::Open) return !isClosed();
    // A client that pings without reading must not grow our memory: over maxBackpressure
    // the pong is skipped (RFC 6455 5.5.3 lets us answer only the latest ping anyway).
    if (wouldDrop(length + 2)) {
        context->stats->drops.add();
    } else {
        sendFrame(OpCode::Pong, data, length);
    }
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
    context->stats->protocolErrors.add();
    logTo(*context->log, LogLevel::Warning, "closing " + remoteAddress() + " with " + std::to_string(code) + ": " + why);
    if (state_ == State::Open) {
        state_ = State::Closed;
        sendClose(code, why);
        runCloseHandler(code, why);
    }
    closeAfterFlush();
}

void WebSocket::shutdown(uint16_t code, std::string_view reason) {
    if (state_ == State::Open) end(code, reason);
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
