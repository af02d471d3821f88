// The builder users touch: routes, listen, run, close. One App owns one Loop.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "uws/AppStats.h"
#include "uws/HttpParser.h"
#include "uws/HttpRouter.h"
#include "uws/Loop.h"
#include "uws/TlsContext.h"
#include "uws/TopicTree.h"
#include "uws/WebSocket.h"

namespace uws {

enum class LogLevel { Debug, Info, Warning, Error };

class HttpConnection;
using HttpHandler = std::function<void(HttpConnection *, HttpRequest *)>;

class App {
public:
    App();
    ~App();
    App(const App &) = delete;
    App &operator=(const App &) = delete;

    // Serve TLS (wss://, https://) on every listener; throws std::runtime_error on a bad file
    // or passphrase.
    void useTls(const TlsOptions &options) { tls_ = std::make_unique<TlsContext>(options); }
    bool usesTls() const { return tls_ != nullptr; }

    WebSocketContext *ws(std::string_view pattern, WebSocketBehavior behavior);
    // An HTTP route; method "GET", "POST", ... or "*" for any.
    void route(std::string method, std::string_view pattern, HttpHandler handler);

    // Binds and listens; returns the bound port (useful with port 0). Throws
    // std::system_error naming the address on failure.
    int listen(const std::string &host, int port, int backlog = 512, bool reusePort = true);

    void run() { loop_.run(); }
    // Stops accepting, ends every WebSocket with code/reason, and stops the loop once all
    // are gone or timeoutSeconds passed. Loop thread only.
    void close(uint16_t code = CloseCode::GoingAway, std::string_view reason = "server shutting down",
               unsigned timeoutSeconds = 5);
    bool isClosing() const { return closing_; }

    // Sends message to every subscriber of topic (except `except`). The frame is built once
    // and appended to each subscriber's publish batch; a subscriber over maxBackpressure is
    // skipped (or closed, per its behavior) without slowing the others. Returns whether the
    // topic had subscribers.
    bool publish(std::string_view topic, std::string_view message, OpCode opCode, bool compress,
                 WebSocket *except = nullptr);
    size_t numSubscribers(std::string_view topic) const { return topics.numSubscribers(topic); }
    void markPublished(WebSocket *ws) { publishedSockets_.push_back(ws); }
    // Writes every pending publish batch: one write per subscriber.
    void drainPublished();

    // permessage-deflate streams shared by every socket of this loop that agreed to no
    // context takeover, and scratch buffers for one message at a time.
    Deflater &sharedDeflater(int windowBits);
    Inflater &sharedInflater() { return sharedInflater_; }
    std::string compressScratch;
    std::string inflateScratch;

    Loop &loop() { return loop_; }
    TopicTree topics;
    AppStats stats;
    HttpLimits httpLimits;
    // Seconds a client has to deliver a complete request head (slowloris defence).
    unsigned headerTimeout = 10;

    // Set by the bindings: releases a response's handle once the connection is done with it.
    std::function<void(void *)> releaseHttpHandle;
    std::function<void(LogLevel, const std::string &)> log;

    void logf(LogLevel level, const std::string &message) {
        if (log) log(level, message);
    }

    WebSocketContext *webSocketRoute(HttpRequest &request) {
        WebSocketContext **found = webSocketRouter_.match("GET", request);
        return found ? *found : nullptr;
    }
    HttpHandler *httpRoute(HttpRequest &request) { return httpRouter_.match(request.method, request); }
    // "GET, POST" for a path that has routes, but none for the request's method.
    std::string allowedMethods(HttpRequest &request) { return httpRouter_.methodsFor(request); }
    // Parsed once per request head, reused.
    HttpRequest requestScratch;
    // Largest request body accepted (Content-Length); more is refused with 413.
    uint64_t maxBodySize = 1024 * 1024;

private:
    class Listener;
    void onTick();
    void afterDispatch();

    Loop loop_;
    std::unique_ptr<TlsContext> tls_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::vector<std::unique_ptr<WebSocketContext>> contexts_;
    HttpRouter<WebSocketContext *> webSocketRouter_;
    HttpRouter<HttpHandler> httpRouter_;
    std::unique_ptr<Deflater> sharedDeflaters_[16];
    Inflater sharedInflater_{15};
    std::vector<WebSocket *> publishedSockets_;
    std::vector<WebSocket *> droppedSockets_;
    bool closing_ = false;
    uint32_t closeDeadline_ = 0;
};

} // namespace uws
