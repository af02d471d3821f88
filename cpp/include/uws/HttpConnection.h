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
    HttpConnection &writeStatus(std::string_view status);
    HttpConnection &writeHeader(std::string_view name, std::string_view value);
    // Streams a body chunk (the response then uses chunked transfer encoding).
    HttpConnection &write(std::string_view chunk);
    // Finishes the response; without earlier write() calls it carries Content-Length.
    void end(std::string_view body = {}, bool closeConnection = false);
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

private:
    void onData(char *data, size_t length) override;
    void onClosed() override;
    void onTimeout() override;
    void process();
    bool startRequest(HttpRequest &request, size_t headLength);
    void dispatch(HttpRequest &request);
    bool finishRequest(); // false: the connection is closing
    void releaseHandle();
    void writeHead(bool chunked, size_t contentLength);

    HttpContext *context_;
    // Bytes read and not yet consumed; consumed_ marks how far.
    std::string buffer_;
    size_t consumed_ = 0;
    bool processing_ = false;
    bool closing_ = false;
    uint32_t requestsStarted_ = 0;

    // The request in progress.
    bool inRequest_ = false;
    bool responseEnded_ = false;
    bool headSent_ = false;
    bool keepAlive_ = true;
    bool headRequest_ = false;
    uint64_t bodyRemaining_ = 0;
    std::string status_;
    std::string pendingHeaders_;
};

} // namespace uws
