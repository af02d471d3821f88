// A non-blocking TCP connection on a Loop: reads into the loop's receive buffer, writes
// through the loop's cork buffer, and keeps a backpressure buffer only for what the kernel
// refused.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "uws/Loop.h"
#include "uws/TlsSession.h"

namespace uws {

class Socket : public Pollable {
public:
    // With tls, every byte goes through that session (server side, handshake on the first
    // reads); the socket owns it.
    Socket(Loop *loop, int fd, std::unique_ptr<TlsSession> tls = nullptr);
    ~Socket() override;

    // Queues parts in order. Inside a dispatch they go through the cork buffer and leave in
    // one syscall when the event ends; what the kernel refuses waits in the backpressure
    // buffer and goes out on writable events.
    void write(const iovec *parts, int count);
    void write(std::string_view data) {
        iovec part{const_cast<char *>(data.data()), data.size()};
        write(&part, 1);
    }

    // Bytes waiting in the backpressure buffer (not counting the cork buffer).
    size_t bufferedAmount() const { return backpressure_.size() - backpressureOffset_; }

    // Sends what the kernel takes of data now and buffers none of the rest: returns the bytes
    // taken (0 while older bytes still wait). When it takes less than all, onDrained runs
    // once the socket can take more, so the caller offers the rest then.
    size_t writeOptional(std::string_view data);

    // Makes this socket the corked one, flushing another socket's cork first.
    void cork();
    // Writes out the cork buffer if this socket holds it.
    void flushCork();
    bool isCorked() const;

    // Sends what is queued, then closes: at once when nothing is queued, else once drained.
    void closeAfterFlush();
    // Closes the descriptor now; queued bytes are lost.
    void close();
    bool isClosed() const { return closed_; }
    // The server is going away: a plain connection closes now; a WebSocket starts its close
    // handshake with code and reason (one already closing just finishes).
    virtual void shutdown(uint16_t code, std::string_view reason) {
        (void)code;
        (void)reason;
        close();
    }

    // The peer's address as text ("" for a unix socket), or the one a PROXY header gave.
    std::string remoteAddress() const;

    // The connection starts with a PROXY protocol header (v1 or v2), read before anything
    // else (before TLS too); its source address becomes remoteAddress().
    void expectProxyHeader() { proxyHeaderPending_ = true; }

    // Seconds (loop ticks) until onTimeout; 0 disables.
    void setTimeout(uint32_t seconds);
    uint32_t timeoutAt = 0;

    Socket *prev = nullptr;
    Socket *next = nullptr;
    Loop *loop;

    virtual void onTimeout() { close(); }

protected:
    // Gives the descriptor, its epoll registration and any queued bytes to successor (an
    // upgrade); this object is retired without closing the descriptor or calling onClosed.
    void handOverTo(Socket *successor);

    // A read's bytes; the buffer is the loop's and may be modified in place.
    virtual void onData(char *data, size_t length) = 0;
    // The peer closed its side (or the connection failed).
    virtual void onEnd() { close(); }
    // The backpressure buffer just emptied.
    virtual void onDrained() {}
    // Bytes just went into the empty backpressure buffer: the peer reads slower than we write.
    virtual void onBackpressure() {}
    // The peer took some of the backpressure buffer, and some of it is still waiting.
    virtual void onWriteProgress() {}
    // Called once from close(), before the descriptor is gone from the loop's view.
    virtual void onClosed() {}
    // The connection did not start with a valid PROXY header; the default closes it.
    virtual void onProxyHeaderRefused(const char *reason) {
        (void)reason;
        close();
    }

private:
    void onPoll(uint32_t events) override;
    void writeDirect(const iovec *parts, int count, size_t total);
    // Bytes the kernel (or TLS) took, or -1 when the connection failed.
    ssize_t sendParts(const iovec *parts, int count);
    void readPlain();
    void readTls();
    void readProxyHeader();
    // The peer is gone: shutting down both directions makes epoll report it, and the
    // connection closes through the normal read path instead of inside a write.
    void failWrites();
    void bufferParts(const iovec *parts, int count, size_t skip);
    void setWritePolling(bool enabled);
    void flushBackpressure();

    std::string backpressure_;
    size_t backpressureOffset_ = 0;
    std::unique_ptr<TlsSession> tls_;
    bool tlsReadWantsWrite_ = false; // a TLS read (handshake) waits for the socket to drain
    bool closed_ = false;
    bool writePolling_ = false;
    bool closeWhenDrained_ = false;
    bool proxyHeaderPending_ = false;
    // The bytes of a PROXY header read so far (it may arrive in pieces).
    std::string proxyHeader_;
    std::string proxiedAddress_;
};

} // namespace uws
