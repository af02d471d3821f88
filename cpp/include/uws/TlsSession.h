// One server-side TLS session over a socket's descriptor: the only place that calls
// OpenSSL's I/O. Socket asks it to send and receive instead of branching on TLS itself.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>

typedef struct ssl_st SSL;

namespace uws {

enum class TlsRead {
    Full,      // the buffer filled up: more may be waiting
    WantRead,  // nothing more until the socket is readable
    WantWrite, // the handshake waits for the socket to take bytes
    Ended,     // close_notify, a TCP close, or a failed handshake
};

class TlsSession {
public:
    // Takes ownership of ssl (accept state, bound to the descriptor).
    explicit TlsSession(SSL *ssl) : ssl_(ssl) {}
    ~TlsSession();
    TlsSession(const TlsSession &) = delete;
    TlsSession &operator=(const TlsSession &) = delete;

    // Bytes taken, or -1 when the connection failed. No writev in TLS: one record per
    // part, repeated while OpenSSL takes bytes.
    ssize_t send(const iovec *parts, int count);
    // Reads decrypted bytes into buffer until it is full or OpenSSL wants the socket;
    // filled says how many arrived.
    TlsRead receive(char *buffer, size_t capacity, size_t &filled);
    // Best effort close_notify; never waits.
    void shutdown();

private:
    SSL *ssl_;
};

} // namespace uws
