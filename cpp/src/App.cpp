#include "uws/App.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "uws/HttpConnection.h"

namespace uws {

class App::Listener : public Pollable {
public:
    Listener(App *app, int fd_) : app_(app) { fd = fd_; }
    ~Listener() override {
        if (fd >= 0) {
            app_->loop().remove(this);
            ::close(fd);
        }
    }

    void onPoll(uint32_t) override {
        // Bounded so that a connection storm cannot starve established sockets.
        for (int i = 0; i < 256; i++) {
            int client = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (client < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    // Out of descriptors: stop polling until the next tick rather than spin.
                    app_->logf(LogLevel::Error, std::string("accept paused: ") + std::strerror(errno));
                    app_->loop().modify(this, 0);
                    paused = true;
                }
                return;
            }
            int one = 1;
            setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            SSL *ssl = nullptr;
            if (app_->tls_) {
                ssl = app_->tls_->newSession(client);
                if (!ssl) {
                    ::close(client);
                    continue;
                }
            }
            HttpConnection *connection = new HttpConnection(app_, client, ssl);
            app_->loop().add(connection, EPOLLIN);
            connection->setTimeout(app_->headerTimeout);
        }
    }

    void resume() {
        if (paused) {
            paused = false;
            app_->loop().modify(this, EPOLLIN);
        }
    }

    bool paused = false;

private:
    App *app_;
};

App::App() {
    loop_.onTick = [this] { onTick(); };
    loop_.afterDispatch = [this] { afterDispatch(); };
}

App::~App() {
    listeners_.clear();
    while (loop_.sockets) {
        loop_.sockets->close();
    }
}

WebSocketContext *App::ws(std::string_view pattern, WebSocketBehavior behavior) {
    contexts_.push_back(std::make_unique<WebSocketContext>(WebSocketContext{this, std::move(behavior)}));
    webSocketRouter_.add("*", pattern, contexts_.back().get());
    return contexts_.back().get();
}

void App::route(std::string method, std::string_view pattern, HttpHandler handler) {
    httpRouter_.add(std::move(method), pattern, std::move(handler));
}

int App::listen(const std::string &host, int port, int backlog, bool reusePort) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo *result = nullptr;
    std::string service = std::to_string(port);
    int status = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &result);
    if (status != 0) {
        throw std::system_error(EINVAL, std::generic_category(),
                                "cannot resolve " + host + ": " + gai_strerror(status));
    }
    int lastError = 0;
    int fd = -1;
    for (addrinfo *ai = result; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            lastError = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (reusePort) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, backlog) == 0) break;
        lastError = errno;
        ::close(fd);
        fd = -1;
    }
    freeaddrinfo(result);
    if (fd < 0) {
        throw std::system_error(lastError, std::generic_category(),
                                "cannot listen on " + host + ":" + std::to_string(port));
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr *>(&bound), &length);
    int boundPort = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6 *>(&bound)->sin6_port)
                                                : ntohs(reinterpret_cast<sockaddr_in *>(&bound)->sin_port);
    listeners_.push_back(std::make_unique<Listener>(this, fd));
    loop_.add(listeners_.back().get(), EPOLLIN);
    return boundPort;
}

void App::close(uint16_t code, std::string_view reason, unsigned timeoutSeconds) {
    if (closing_) return;
    closing_ = true;
    listeners_.clear();
    closeDeadline_ = loop_.now() + timeoutSeconds + 1;
    for (Socket *s = loop_.sockets, *next; s; s = next) {
        next = s->next;
        if (WebSocket *ws = dynamic_cast<WebSocket *>(s); ws && ws->isOpen()) {
            ws->end(code, reason);
        } else if (!dynamic_cast<WebSocket *>(s)) {
            s->close();
        }
    }
    afterDispatch();
}

void App::onTick() {
    for (auto &listener : listeners_) listener->resume();
    uint32_t now = loop_.now();
    for (Socket *s = loop_.sockets, *next; s; s = next) {
        next = s->next;
        if (s->timeoutAt && s->timeoutAt <= now) {
            s->timeoutAt = 0;
            s->onTimeout();
        }
    }
    if (closing_ && now >= closeDeadline_) {
        while (loop_.sockets) loop_.sockets->close();
    }
}

Deflater &App::sharedDeflater(int windowBits) {
    std::unique_ptr<Deflater> &slot = sharedDeflaters_[windowBits & 15];
    if (!slot) slot = std::make_unique<Deflater>(windowBits, 8);
    return *slot;
}

bool App::publish(std::string_view topicName, std::string_view message, OpCode opCode, bool compress,
                  WebSocket *except) {
    stats.publishes.add();
    Topic *topic = topics.find(topicName);
    if (!topic) return false;
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
    for (const Topic::Entry &entry : topic->subscribers) {
        WebSocket *ws = static_cast<WebSocket *>(entry.subscriber->owner);
        if (ws == except || !ws->isOpen()) continue;
        SendStatus status;
        int windowBits = compress ? ws->sharedCompressorWindowBits() : 0;
        if (windowBits) {
            if (!sharedFrames) sharedFrames.reset(new SharedFrame[16]);
            SharedFrame &frame = sharedFrames[windowBits];
            if (!frame.tried) {
                frame.tried = true;
                frame.compressed = sharedDeflater(windowBits).compress(message, frame.payload, true);
                frame.headerLength = formatFrameHeader(frame.header, opCode, frame.payload.size(), true, true);
            }
            status = frame.compressed && ws->acceptsSharedCompression(message, frame.payload.size())
                         ? ws->queuePublished(std::string_view(frame.header, frame.headerLength), frame.payload)
                         : ws->queuePublished(frameHeader, message);
        } else if (compress && ws->compressionNegotiated() && !ws->wouldDrop(message.size()) &&
                   ws->compressMessage(message, compressScratch)) {
            // Checked before compressing: a dedicated compressor's context must only ever
            // see messages the client will receive.
            char ownHeader[kMaxServerHeaderSize];
            size_t ownLength = formatFrameHeader(ownHeader, opCode, compressScratch.size(), true, true);
            status = ws->queuePublished(std::string_view(ownHeader, ownLength), compressScratch);
        } else {
            status = ws->queuePublished(frameHeader, message);
        }
        if (status == SendStatus::Dropped) {
            droppedSockets_.push_back(ws);
        } else {
            delivered++;
        }
    }
    stats.deliveries.add(delivered);
    stats.messagesOut.add(delivered);
    if (!droppedSockets_.empty()) {
        std::vector<WebSocket *> dropped;
        dropped.swap(droppedSockets_);
        stats.drops.add(dropped.size());
        for (WebSocket *ws : dropped) {
            if (!ws->isOpen()) continue;
            const WebSocketBehavior &b = ws->context->behavior;
            if (b.closeOnBackpressureLimit) {
                logf(LogLevel::Warning, "closing " + ws->remoteAddress() + ": over max_backpressure on publish");
                ws->terminate("backpressure limit");
            } else if (b.dropped) {
                b.dropped(ws, message, opCode);
            }
        }
    }
    if (!loop_.inDispatch()) drainPublished();
    return true;
}

void App::drainPublished() {
    // Index loop: flushing can run handlers that publish again and append here.
    for (size_t i = 0; i < publishedSockets_.size(); i++) {
        publishedSockets_[i]->flushPublished();
    }
    publishedSockets_.clear();
}

void App::afterDispatch() {
    drainPublished();
    if (closing_ && loop_.socketCount == 0) loop_.stop();
}

} // namespace uws
