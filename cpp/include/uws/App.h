// The builder users touch: routes, listen, run, close. One App owns one Loop, and the
// contexts its connections work with.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "uws/AppStats.h"
#include "uws/HttpContext.h"
#include "uws/Log.h"
#include "uws/Loop.h"
#include "uws/Publisher.h"
#include "uws/TlsContext.h"
#include "uws/TopicTree.h"
#include "uws/WebSocket.h"
#include "uws/WebSocketContext.h"

namespace uws {

class App {
public:
    App();
    ~App();
    App(const App &) = delete;
    App &operator=(const App &) = delete;

    // Serve TLS (wss://, https://) on every listener; throws std::runtime_error on a bad file
    // or passphrase.
    void useTls(const TlsOptions &options) { tls_ = std::make_unique<TlsContext>(options); }
    // SNI: clients asking for hostname get these certificates (see TlsContext); needs
    // useTls first (std::logic_error otherwise).
    void addServerName(const std::string &hostname, const TlsOptions &options);

    WebSocketContext *ws(std::string_view pattern, WebSocketBehavior behavior);
    // An HTTP route; method "GET", "POST", ... or "*" for any.
    void route(std::string method, std::string_view pattern, HttpHandler handler);

    // What a listener's connections start with besides HTTP.
    struct ListenOptions {
        int backlog = 512;
        bool reusePort = true;
        // Every connection must start with a PROXY protocol header (v1 or v2) whose source
        // address becomes its remote address; one that does not is logged and closed.
        bool proxyProtocol = false;
    };

    // Binds and listens; returns the bound port (useful with port 0). Throws
    // std::system_error naming the address on failure.
    int listen(const std::string &host, int port, const ListenOptions &options);
    int listen(const std::string &host, int port) { return listen(host, port, ListenOptions{}); }
    // Listens on a unix domain socket at path, which is removed when the listener closes. A
    // stale socket file (nobody accepts on it) is replaced; anything else there is an error.
    void listenUnix(const std::string &path, const ListenOptions &options);
    // Closes every listener: no new connections, while the open ones go on.
    void stopListening();

    void run() { loop_.run(); }
    // Stops accepting, ends every WebSocket with code/reason, and stops the loop once all
    // are gone or timeoutMs passed (a millisecond timer, not the one-second tick). Loop
    // thread only.
    void close(uint16_t code = CloseCode::GoingAway, std::string_view reason = "server shutting down",
               uint64_t timeoutMs = 5000);

    // See Publisher::publish.
    bool publish(std::string_view topic, std::string_view message, OpCode opCode, bool compress) {
        return publisher_.publish(topic, message, opCode, compress);
    }
    size_t numSubscribers(std::string_view topic) const { return topics_.numSubscribers(topic); }

    Loop &loop() { return loop_; }
    AppStats &stats() { return stats_; }
    // Routes and HTTP limits (max body size, header timeout, parser limits).
    HttpContext &http() { return http_; }

    // Set by the bindings; every context logs through it.
    Logger log;

private:
    class Listener;
    void everySecond();
    void endOfIteration();

    // Declared first: the members below keep references to it.
    Loop loop_;
    AppStats stats_;
    TopicTree topics_;
    Publisher publisher_{loop_, topics_, stats_, log};
    HttpContext http_;
    std::unique_ptr<TlsContext> tls_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    // Shut down during an event batch that may still name them: freed after the batch.
    std::vector<std::unique_ptr<Listener>> closedListeners_;
    std::vector<std::unique_ptr<WebSocketContext>> contexts_;
    bool closing_ = false;
};

} // namespace uws
