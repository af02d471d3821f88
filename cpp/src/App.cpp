#include "uws/App.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "uws/HttpConnection.h"

namespace uws {

class App::Listener : public Pollable {
public:
    Listener(App *app, int fd_, bool proxyProtocol, std::string unixPath = {})
        : app_(app), proxyProtocol_(proxyProtocol), unixPath_(std::move(unixPath)) {
        fd = fd_;
    }
    ~Listener() override { shutdown(); }

    // Stops accepting now: the kernel refuses new connections from here on. The object may
    // still be in the current batch of epoll events, so its owner frees it after the batch.
    void shutdown() {
        if (fd >= 0) {
            app_->loop().remove(this);
            ::close(fd);
            fd = -1;
        }
        if (!unixPath_.empty()) {
            ::unlink(unixPath_.c_str());
            unixPath_.clear();
        }
    }

    void onPoll(uint32_t) override {
        if (fd < 0) return; // shut down earlier in this batch
        // Bounded so that a connection storm cannot starve established sockets.
        for (int i = 0; i < 256; i++) {
            int client = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (client < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    // Out of descriptors: stop polling until the next tick rather than spin.
                    int error = errno; // before the logger, which may set it
                    logTo(app_->log, LogLevel::Error, [error] { return std::string("accept paused: ") + std::strerror(error); });
                    app_->loop().modify(this, 0);
                    paused = true;
                }
                return;
            }
            int one = 1;
            setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            std::unique_ptr<TlsSession> tls;
            if (app_->tls_) {
                tls = app_->tls_->newSession(client);
                if (!tls) {
                    ::close(client);
                    continue;
                }
            }
            HttpConnection *connection = new HttpConnection(&app_->http_, client, std::move(tls));
            if (proxyProtocol_) connection->expectProxyHeader();
            app_->loop().add(connection, EPOLLIN);
            connection->setTimeout(app_->http_.headerTimeout);
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
    bool proxyProtocol_;
    std::string unixPath_; // removed with the listener
};

App::App() {
    http_.loop = &loop_;
    http_.stats = &stats_;
    http_.log = &log;
    loop_.afterTick = [this] { everySecond(); };
    loop_.afterIteration = [this] {
        endOfIteration();
        closedListeners_.clear(); // the batch that may have pointed at them is over
    };
}

App::~App() {
    listeners_.clear();
    while (loop_.sockets) {
        loop_.sockets->close();
    }
}

WebSocketContext *App::ws(std::string_view pattern, WebSocketBehavior behavior) {
    contexts_.push_back(std::make_unique<WebSocketContext>(
        WebSocketContext{std::move(behavior), &loop_, &loop_.data(), &topics_, &publisher_, &stats_, &log}));
    http_.webSocketRouter.add("*", pattern, contexts_.back().get());
    return contexts_.back().get();
}

void App::route(std::string method, std::string_view pattern, HttpHandler handler) {
    http_.httpRouter.add(std::move(method), pattern, std::move(handler));
}

int App::listen(const std::string &host, int port, const ListenOptions &options) {
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
        if (options.reusePort) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, options.backlog) == 0) break;
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
    listeners_.push_back(std::make_unique<Listener>(this, fd, options.proxyProtocol));
    loop_.add(listeners_.back().get(), EPOLLIN);
    return boundPort;
}

void App::addServerName(const std::string &hostname, const TlsOptions &options) {
    if (!tls_) throw std::logic_error("add_server_name needs an App serving TLS");
    tls_->addServerName(hostname, options);
}

namespace {

// A socket file that nobody accepts on any more (a server that died without removing it).
bool isStaleUnixSocket(const sockaddr_un &address) {
    struct stat info {};
    if (::lstat(address.sun_path, &info) != 0 || !S_ISSOCK(info.st_mode)) return false;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return false;
    bool refused = connect(probe, reinterpret_cast<const sockaddr *>(&address), sizeof address) != 0 &&
                   errno == ECONNREFUSED;
    ::close(probe);
    return refused;
}

} // namespace

void App::listenUnix(const std::string &path, const ListenOptions &options) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof address.sun_path) {
        throw std::system_error(ENAMETOOLONG, std::generic_category(),
                                "cannot listen on unix socket " + path + ": the path must be 1 to " +
                                    std::to_string(sizeof address.sun_path - 1) + " bytes");
    }
    std::memcpy(address.sun_path, path.data(), path.size());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot make a unix socket for " + path);
    int status = bind(fd, reinterpret_cast<const sockaddr *>(&address), sizeof address);
    if (status != 0 && errno == EADDRINUSE && isStaleUnixSocket(address)) {
        ::unlink(path.c_str());
        status = bind(fd, reinterpret_cast<const sockaddr *>(&address), sizeof address);
    }
    if (status != 0 || ::listen(fd, options.backlog) != 0) {
        int error = errno;
        bool bound = status == 0;
        ::close(fd);
        if (bound) ::unlink(path.c_str());
        throw std::system_error(error, std::generic_category(), "cannot listen on unix socket " + path);
    }
    listeners_.push_back(std::make_unique<Listener>(this, fd, options.proxyProtocol, path));
    loop_.add(listeners_.back().get(), EPOLLIN);
}

void App::stopListening() {
    for (auto &listener : listeners_) {
        listener->shutdown();
        if (loop_.inDispatch()) closedListeners_.push_back(std::move(listener));
    }
    listeners_.clear();
}

void App::close(uint16_t code, std::string_view reason, uint64_t timeoutMs) {
    if (closing_) return;
    closing_ = true;
    stopListening();
    for (Socket *s = loop_.sockets, *next; s; s = next) {
        next = s->next;
        s->shutdown(code, reason);
    }
    // Whoever has not finished closing by then is dropped; the loop then stops at the end
    // of that iteration.
    loop_.addTimer(timeoutMs, [this] {
        while (loop_.sockets) loop_.sockets->close();
    });
    endOfIteration();
}

void App::everySecond() {
    for (auto &listener : listeners_) listener->resume();
}

void App::endOfIteration() {
    publisher_.drain();
    if (closing_ && loop_.socketCount == 0) loop_.stop();
}

} // namespace uws
