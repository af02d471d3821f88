// An HTTP/1.1 connection before (or instead of) a WebSocket: reads the request head,
// routes it, and answers or upgrades. It is also the "response" object handlers write to.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "uws/HttpParser.h"
#include "uws/Socket.h"

namespace uws {

class App;
class WebSocket;
struct WebSocketContext;

class HttpConnection final : public Socket {
public:
    HttpConnection(App *app, int fd);

    // Response writers. The status defaults to "200 OK"; end() adds Content-Length.
    HttpConnection &writeStatus(std::string_view status);
    HttpConnection &writeHeader(std::string_view name, std::string_view value);
    void end(std::string_view body = {});
    bool hasResponded() const { return responded_; }

    // Accepts the WebSocket upgrade: writes the 101 and hands the descriptor to a new
    // WebSocket, whose open handler runs before this returns. handle becomes its
    // WebSocket::handle. A no-op when the connection is already gone or answered.
    WebSocket *upgrade(WebSocketContext *context, std::string_view key, std::string_view protocol,
                       std::string_view extensions, void *handle);

    // Refuses with a status, a short reason as the body, and closes the connection.
    void reject(std::string_view status, std::string_view reason, std::string_view extraHeaders = {});

    // The bindings' object for this response, and the abort callback a handler registered.
    void *handle = nullptr;
    std::function<void()> onAborted;

private:
    void onData(char *data, size_t length) override;
    void onClosed() override;
    void onTimeout() override;
    void handleRequest(HttpRequest &request, size_t headLength);
    void releaseHandle();

    App *app_;
    std::string head_;
    std::string pendingHeaders_;
    std::string status_;
    bool responded_ = false;
    bool awaitingResponse_ = false;
    size_t headLength_ = 0;
};

} // namespace uws
