#include "uws/WebSocket.h"

#include <cstring>

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
    const WebSocketBehavior &b = context->behavior;
    WebSocketTimers::Settings settings;
    settings.idleTimeout = b.idleTimeout;
    settings.sendPingsAutomatically = b.sendPingsAutomatically;
    settings.maxLifetimeSeconds = b.maxLifetimeSeconds;
    timers_.start(loop->now(), settings);
    armTimer();
}

void WebSocket::armTimer() {
    // Socket::timeoutAt is in ticks; +1 as in setTimeout: the tick may be about to advance.
    uint32_t deadline = timers_.deadline();
    timeoutAt = deadline ? deadline + 1 : 0;
}

void WebSocket::restartIdleTimer() {
    timers_.activity(loop->now());
    armTimer();
}

void WebSocket::onTimeout() {
    if (state_ != State::Open) {
        close();
        return;
    }
    switch (timers_.expire(loop->now())) {
    case WebSocketTimers::Action::None:
        armTimer();
        return;
    case WebSocketTimers::Action::Ping:
        sendFrame(OpCode::Ping, nullptr, 0);
        armTimer();
        return;
    case WebSocketTimers::Action::CloseLifetime:
        logTo(*context->log, LogLevel::Info, [&] { return "closing " + remoteAddress() + ": max_lifetime reached"; });
        end(CloseCode::GoingAway, "max lifetime reached");
        return;
    case WebSocketTimers::Action::CloseIdle:
        context->stats->idleTimeouts.add();
        logTo(*context->log, LogLevel::Info, [&] { return "closing " + remoteAddress() + ": idle timeout"; });
        end(CloseCode::GoingAway, "idle timeout");
        return;
    }
}

void WebSocket::sendFrame(OpCode opCode, const char *payload, size_t length, bool compressed, bool fin) {
    if (!published_.empty()) flushPublished(); // published frames were queued first
    char header[kMaxServerHeaderSize];
    size_t headerLength = formatFrameHeader(header, opCode, length, fin, compressed);
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

void WebSocket::overBackpressureLimit(const char *what) {
    context->stats->drops.add();
    if (context->behavior.closeOnBackpressureLimit && state_ == State::Open) {
        logTo(*context->log, LogLevel::Warning,
              [&] { return "closing " + remoteAddress() + " with 1008: over max_backpressure on " + what; });
        // The close frame queues behind what the peer has not read; the closing timeout
        // drops the connection if it never reads it.
        end(CloseCode::PolicyViolation, "backpressure limit");
    }
}

SendStatus WebSocket::send(std::string_view message, OpCode opCode, bool compress) {
    if (state_ != State::Open) return SendStatus::Dropped;
    bool data = opCode == OpCode::Text || opCode == OpCode::Binary;
    if (data && fragmenting_) return SendStatus::Dropped; // would land inside the fragmented message
    AppStats &stats = *context->stats;
    // An empty buffer always takes one message, so a message larger than the limit can
    // still be sent; after that the limit bounds what a slow reader costs us.
    if (wouldDrop(message.size())) {
        overBackpressureLimit("send");
        return SendStatus::Dropped;
    }
    std::string &compressed = context->loopData->compressScratch;
    if (compress && data && compressMessage(message, compressed)) {
        sendFrame(opCode, compressed.data(), compressed.size(), true);
    } else {
        sendFrame(opCode, message.data(), message.size());
    }
    stats.messagesOut.add();
    if (context->behavior.resetIdleTimeoutOnSend) restartIdleTimer();
    if (bufferedAmount()) {
        stats.backpressureEvents.add();
        return SendStatus::Backpressure;
    }
    return SendStatus::Success;
}

// The payload starts 2 bytes in (the header of a frame under 126 bytes) and the capacity
// keeps 2 more free, so that a longer one (a 4-byte header: the cork buffer is under 64 KiB)
// moves its payload 2 bytes on at commit. A socket whose TCP connection already closed takes
// no reservation either (its cork buffer would only be dropped).
WebSocket::InPlace WebSocket::reserveInPlace(bool compress, size_t headerRoom) {
    static_assert(LoopData::kCorkBufferSize <= 0xFFFF, "an in-place frame's header is at most 4 bytes");
    if (state_ != State::Open || isClosed() || fragmenting_ || (compress && deflate_) || !published_.empty() ||
        bufferedAmount()) {
        return {nullptr, 0};
    }
    LoopData &shared = loop->data();
    if (shared.corked != this) {
        if (!loop->inDispatch()) return {nullptr, 0};
        cork();
    }
    size_t used = shared.corkLength + 4;
    if (used >= LoopData::kCorkBufferSize) return {nullptr, 0};
    return {shared.corkBuffer + shared.corkLength + (headerRoom == 4 ? 4 : 2), LoopData::kCorkBufferSize - used};
}

SendStatus WebSocket::commitInPlace(size_t length, OpCode opCode, size_t headerRoom) {
    LoopData &shared = loop->data();
    char *frame = shared.corkBuffer + shared.corkLength;
    char header[kMaxServerHeaderSize];
    size_t headerLength = formatFrameHeader(header, opCode, length);
    headerRoom = headerRoom == 4 ? 4 : 2;
    // Moved before the header is written (a longer one would cover the payload's start).
    if (headerLength != headerRoom) std::memmove(frame + headerLength, frame + headerRoom, length);
    std::memcpy(frame, header, headerLength);
    shared.corkLength += headerLength + length;
    AppStats &stats = *context->stats;
    stats.bytesOut.add(headerLength + length);
    stats.messagesOut.add();
    if (context->behavior.resetIdleTimeoutOnSend) restartIdleTimer();
    return SendStatus::Success;
}

bool WebSocket::compressFragment(std::string_view data, bool last, std::string &out) {
    // Each fragment is deflated on its own (the shared compressor, or the dedicated one
    // keeping its context) and ends with a sync flush; only the message's last fragment
    // drops the 00 00 FF FF tail, which the receiver appends once (RFC 7692 7.2.1). Blocks
    // from a reset compressor refer to nothing before them, so the concatenation is one
    // valid deflate stream either way.
    bool ok = deflate_->deflater
                  ? deflate_->deflater->compress(data, out, deflate_->serverNoContextTakeover)
                  : context->loopData->sharedDeflater(deflate_->serverWindowBits).compress(data, out, true);
    if (ok && !last) out.append("\x00\x00\xff\xff", 4);
    return ok;
}

SendStatus WebSocket::sendFragment(std::string_view data, Fragment position, OpCode opCode, bool compress) {
    if (state_ != State::Open) return SendStatus::Dropped;
    bool first = position == Fragment::First;
    if (first == fragmenting_) return SendStatus::Dropped; // the caller checks sendingFragments()
    if (first) {
        if (wouldDrop(data.size())) {
            overBackpressureLimit("send_first_fragment");
            return SendStatus::Dropped;
        }
        flushPublished(); // what was published before the message goes before it
        fragmenting_ = true;
        fragmentsCompressed_ = compress && deflate_ && deflate_->serverWindowBits;
    }
    bool last = position == Fragment::Last;
    OpCode frameOpCode = first ? opCode : OpCode::Continuation;
    std::string &compressed = context->loopData->compressScratch;
    if (fragmentsCompressed_ && compressFragment(data, last, compressed)) {
        sendFrame(frameOpCode, compressed.data(), compressed.size(), first, last);
    } else if (fragmentsCompressed_) {
        // zlib failed mid-message: the message cannot be finished correctly.
        fragmenting_ = false;
        onProtocolError(CloseCode::InternalError, "compressing a fragment failed");
        return SendStatus::Dropped;
    } else {
        sendFrame(frameOpCode, data.data(), data.size(), false, last);
    }
    if (last) {
        fragmenting_ = false;
        context->stats->messagesOut.add();
        flushPublished(); // what was published meanwhile waited for the message to end
    }
    if (context->behavior.resetIdleTimeoutOnSend) restartIdleTimer();
    if (bufferedAmount()) {
        context->stats->backpressureEvents.add();
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

bool WebSocket::subscribe(std::string_view topic, bool notify) {
    size_t count = 0;
    if (!context->topics->subscribe(&subscriber_, topic, count)) return false;
    if (notify && context->behavior.subscription) context->behavior.subscription(this, topic, count, count - 1);
    return true;
}

bool WebSocket::unsubscribe(std::string_view topic, bool notify) {
    size_t count = 0;
    if (!context->topics->unsubscribe(&subscriber_, topic, count)) return false;
    if (notify && context->behavior.subscription) context->behavior.subscription(this, topic, count, count + 1);
    return true;
}

bool WebSocket::isSubscribed(std::string_view topic) const { return context->topics->isSubscribed(&subscriber_, topic); }

bool WebSocket::publish(std::string_view topic, std::string_view message, OpCode opCode, bool compress) {
    return context->publisher->publish(topic, message, opCode, compress, this);
}

Topic *WebSocket::startPublish(std::string_view topic) { return context->publisher->start(topic); }

void WebSocket::publishTo(Topic &topic, std::string_view message, OpCode opCode, bool compress) {
    context->publisher->deliver(topic, message, opCode, compress, this);
}

SendStatus WebSocket::queuePublished(std::string_view header, std::string_view payload) {
    if (state_ != State::Open) return SendStatus::Dropped;
    if (wouldDrop(header.size() + payload.size())) return SendStatus::Dropped;
    if (published_.empty()) context->publisher->markPublished(this);
    published_.append(header).append(payload);
    if (context->behavior.resetIdleTimeoutOnSend) restartIdleTimer();
    return bufferedAmount() ? SendStatus::Backpressure : SendStatus::Success;
}

void WebSocket::flushPublished() {
    if (published_.empty() || fragmenting_) return;
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
    logTo(*context->log, LogLevel::Warning,
          [&] { return "closing " + remoteAddress() + " with " + std::to_string(code) + ": " + why; });
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
