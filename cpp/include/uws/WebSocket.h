// A WebSocket connection: the RFC 6455 state machine on top of Socket, driving the
// handlers of its WebSocketContext.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "uws/PerMessageDeflate.h"
#include "uws/Socket.h"
#include "uws/TopicTree.h"
#include "uws/WebSocketContext.h"
#include "uws/WebSocketParser.h"
#include "uws/WebSocketTimers.h"

namespace uws {

enum class SendStatus : uint8_t { Success = 0, Backpressure = 1, Dropped = 2 };

class WebSocket final : public Socket {
public:
    WebSocket(WebSocketContext *context, int fd);

    // compress: deflate it when permessage-deflate was negotiated and it pays (see
    // kCompressThreshold).
    SendStatus send(std::string_view message, OpCode opCode = OpCode::Binary, bool compress = false);
    // A ping frame (payload at most 125 bytes, which the caller checks); its pong reaches
    // the pong handler.
    SendStatus ping(std::string_view payload) { return send(payload, OpCode::Ping); }

    // A data message written in place, for a writer that does not know its length ahead (the
    // realtime bindings' JSON replies): reserveInPlace gives where its payload goes in the
    // loop's cork buffer, after room for the frame header, and how many bytes fit there; then
    // commitInPlace(length) queues those first `length` bytes as one unfragmented frame, as
    // send() would (same stats, idle timer). No reservation ({nullptr, 0}) when send() must
    // decide: the socket not open or sending fragments, bytes queued that go first, no
    // dispatch to cork in, or compress asked for on a socket that negotiated it. Nothing may
    // write to any socket of the loop between the two calls; not committing abandons it.
    // headerRoom is the header the writer expects, given to both calls: 2 bytes (a payload of
    // at most 125 bytes) or 4 (up to 64 KiB); a payload of the other size is moved by 2 bytes
    // when it is committed.
    struct InPlace {
        char *data;
        size_t capacity;
    };
    InPlace reserveInPlace(bool compress, size_t headerRoom = 2);
    SendStatus commitInPlace(size_t length, OpCode opCode, size_t headerRoom = 2);

    // One message in fragments (RFC 6455 5.4): the first fragment carries opCode (and with
    // compress the RSV1 bit, for the whole message), the last one FIN. Control frames may
    // go out between fragments; data messages (send, publish) may not: send() refuses one
    // with Dropped (check sendingFragments() first) and published frames wait until the
    // last fragment. Only the first fragment can be Dropped (the message then never
    // started); later ones are always queued so that a started message is never cut.
    enum class Fragment : uint8_t { First, Middle, Last };
    SendStatus sendFragment(std::string_view data, Fragment position, OpCode opCode = OpCode::Binary,
                            bool compress = false);
    bool sendingFragments() const { return fragmenting_; }

    // permessage-deflate as agreed in the handshake.
    void enableCompression(const DeflateAgreement &agreement);
    bool compressionNegotiated() const { return deflate_ != nullptr; }
    // Window bits of the shared compressor this socket can take, 0 if none (publish uses it
    // to compress a message once for all such subscribers).
    int sharedCompressorWindowBits() const;
    // Compresses message for this socket into out; false: send it uncompressed.
    bool compressMessage(std::string_view message, std::string &out);
    // Given the shared compressor's output for message, should this socket get it?
    bool acceptsSharedCompression(std::string_view message, size_t compressedSize) const {
        size_t threshold = context->behavior.compressionThreshold;
        return message.size() >= threshold && (threshold == 0 || compressedSize < message.size());
    }
    // Starts the close handshake; the close handler runs now.
    void end(uint16_t code = CloseCode::Normal, std::string_view reason = {});
    // Closes the TCP connection at once; the close handler gets 1006.
    void terminate(std::string_view reason = {});
    bool isOpen() const { return state_ == State::Open; }

    // Pub/sub; the registry is the context's TopicTree, the fan-out its Publisher.
    // `notify`: call the behavior's subscription handler (the realtime fast path does not
    // when that handler would do nothing with it).
    bool subscribe(std::string_view topic, bool notify = true);
    bool unsubscribe(std::string_view topic, bool notify = true);
    bool isSubscribed(std::string_view topic) const;
    const Subscriber &subscriptions() const { return subscriber_; }
    // Publishes to every subscriber of topic except this socket.
    bool publish(std::string_view topic, std::string_view message, OpCode opCode = OpCode::Binary,
                 bool compress = false);
    // publish in two halves (Publisher::start and deliver): startPublish counts the publish
    // and returns the topic, null when nobody subscribes (done); publishTo sends the message
    // to its subscribers except this socket, before anything subscribes or unsubscribes.
    Topic *startPublish(std::string_view topic);
    void publishTo(Topic &topic, std::string_view message, OpCode opCode, bool compress);

    // Fan-out: a published frame is appended here and the whole batch leaves in one write
    // when the loop iteration ends (or before anything else is sent to this socket).
    SendStatus queuePublished(std::string_view header, std::string_view payload);
    // Would queueing this many more bytes cross maxBackpressure? (An empty queue always
    // takes one message.)
    bool wouldDrop(size_t bytes) const {
        size_t queued = queuedAmount();
        size_t limit = context->behavior.maxBackpressure;
        return limit && queued && queued + bytes > limit;
    }
    // Writes the publish batch (not while a fragmented message is going out).
    void flushPublished();
    // Bytes queued for this socket: backpressure plus published frames not yet written.
    size_t queuedAmount() const { return bufferedAmount() + published_.size(); }

    WebSocketContext *context;
    // The bindings' object for this socket, owned by them.
    void *handle = nullptr;

    // WebSocketParser sink.
    bool onMessage(char *data, size_t length, OpCode opCode, bool compressed);
    bool onPing(char *data, size_t length);
    bool onPong(char *data, size_t length);
    bool onClose(uint16_t code, std::string_view reason);
    void onProtocolError(uint16_t code, const char *why);

    void onTimeout() override;
    void shutdown(uint16_t code, std::string_view reason) override;
    // Data that arrived with the upgrade request.
    void feed(char *data, size_t length) { onData(data, length); }

private:
    enum class State : uint8_t {
        Open,
        Closing, // we sent a close frame and wait for the peer's
        Closed,  // the close handler ran; the TCP connection is on its way out
    };

    void onData(char *data, size_t length) override;
    void onEnd() override;
    void onDrained() override;
    void onClosed() override;
    void sendFrame(OpCode opCode, const char *payload, size_t length, bool compressed = false, bool fin = true);
    void sendClose(uint16_t code, std::string_view reason);
    void runCloseHandler(int code, std::string_view reason);
    void restartIdleTimer();
    void armTimer();
    // Over maxBackpressure: counts the drop, and ends the connection with 1008 when the
    // behavior says so.
    void overBackpressureLimit(const char *what);
    bool compressFragment(std::string_view data, bool last, std::string &out);

    struct DeflateState {
        int serverWindowBits;
        bool serverNoContextTakeover;
        bool clientNoContextTakeover;
        std::unique_ptr<Deflater> deflater; // dedicated compressor, else the loop's shared ones
        std::unique_ptr<Inflater> inflater; // dedicated decompressor, else the loop's shared one
    };

    WebSocketParser parser_;
    std::unique_ptr<DeflateState> deflate_;
    Subscriber subscriber_;
    std::string published_;
    WebSocketTimers timers_;
    State state_ = State::Open;
    bool fragmenting_ = false;
    bool fragmentsCompressed_ = false;
};

} // namespace uws
