// An HTTP/1.1 connection: reads request heads (keep-alive and pipelining: one request at
// a time, in order), routes them to HTTP handlers or the WebSocket upgrade, and is the
// "response" object those handlers write to.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "uws/HttpContext.h"
#include "uws/HttpParser.h"
#include "uws/Socket.h"

namespace uws {

class WebSocket;
struct WebSocketContext;

class HttpConnection final : public Socket {
public:
    HttpConnection(HttpContext *context, int fd, std::unique_ptr<TlsSession> tls = nullptr);

    // Response writers, for the request in progress. The status defaults to "200 OK".
    // writeStatus and writeHeader refuse (return false, write nothing) text that holds CR, LF
    // or NUL, and a name that is not a token: see checkResponseHeaderName.
    bool writeStatus(std::string_view status);
    bool writeHeader(std::string_view name, std::string_view value);
    // Streams a body chunk (the response then uses chunked transfer encoding). Every byte is
    // queued; false when some of them wait in the backpressure buffer (the client reads slower
    // than we write): stop writing until onWritable.
    bool write(std::string_view chunk);
    // Finishes the response; without earlier write() calls it carries Content-Length.
    void end(std::string_view body = {}, bool closeConnection = false);
    struct TryEndResult {
        bool ok;   // the kernel took all of data
        bool done; // the body reached totalSize: the response has ended
    };
    // Sends the next part of a body of totalSize bytes (Content-Length, no chunking) without
    // buffering: what the kernel does not take now is not kept, and the caller offers it again
    // from writeOffset() when onWritable runs. Not after write().
    TryEndResult tryEnd(std::string_view data, uint64_t totalSize);
    // Body bytes sent or queued so far for this response.
    uint64_t writeOffset() const { return writeOffset_; }
    // Whether the response streams with write() (chunked) or tryEnd (Content-Length) so far.
    bool isChunked() const { return headSent_ && chunked_; }
    bool isSized() const { return headSent_ && !chunked_; }
    uint64_t totalSize() const { return totalSize_; }
    bool hasResponded() const { return responseEnded_; }

    // Accepts the WebSocket upgrade: writes the 101 and hands the descriptor to a new
    // WebSocket, whose open handler runs before this returns. handle becomes its
    // WebSocket::handle. Returns nullptr (a harmless no-op) when the client is gone or the
    // request was answered already.
    WebSocket *upgrade(WebSocketContext *context, std::string_view key, std::string_view protocol,
                       std::string_view extensions, void *handle);

    // Refuses with a status and a short text body, then closes the connection.
    void reject(std::string_view status, std::string_view reason, std::string_view extraHeaders = {});

    // The bindings' object for the current response, and the callbacks its handler set.
    void *handle = nullptr;
    std::function<void()> onAborted;
    // Request body chunks; last is true on the final one (also for an empty body).
    std::function<void(std::string_view, bool)> onBody;
    // The socket can take more bytes again (after write() returned false or tryEnd was not
    // ok), with writeOffset(); returns whether it wrote what it wanted.
    std::function<bool(uint64_t)> onWritable;

private:
    void onData(char *data, size_t length) override;
    void onClosed() override;
    void onTimeout() override;
    void onDrained() override;
    void onBackpressure() override;
    void onWriteProgress() override;
    void onProxyHeaderRefused(const char *reason) override;
    void responseDone();
    void process();
    bool startRequest(HttpRequest &request, size_t headLength);
    void dispatch(HttpRequest &request);
    bool finishRequest(); // false: the connection is closing
    void releaseHandle();
    void writeHead(bool chunked, uint64_t contentLength);

    HttpContext *context_;
    // Bytes read and not yet consumed; consumed_ marks how far.
    std::string buffer_;
    size_t consumed_ = 0;
    bool processing_ = false;
    bool closing_ = false;
    uint32_t requestsStarted_ = 0;
    // Response bytes wait for the client (backpressure, or a tryEnd the kernel did not take
    // whole): the send timeout runs, restarted whenever the client takes some of them.
    bool awaitingClient_ = false;

    // The request in progress.
    bool inRequest_ = false;
    bool responseEnded_ = false;
    bool headSent_ = false;
    bool keepAlive_ = true;
    bool headRequest_ = false;
    bool chunked_ = false;
    uint64_t writeOffset_ = 0;
    uint64_t totalSize_ = 0;
    uint64_t bodyRemaining_ = 0;
    std::string status_;
    std::string pendingHeaders_;
};

} // namespace uws
