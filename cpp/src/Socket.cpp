#include "uws/Socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstring>

namespace uws {

Socket::Socket(Loop *loop_, int fd_, SSL *ssl) : loop(loop_), ssl_(ssl) {
    fd = fd_;
    loop->link(this);
}

Socket::~Socket() {
    if (ssl_) SSL_free(ssl_);
}

void Socket::setTimeout(uint32_t seconds) {
    // +1: the tick may be about to advance, so a deadline of now+N could fire after N-1 s.
    timeoutAt = seconds ? loop->now() + seconds + 1 : 0;
}

void Socket::setWritePolling(bool enabled) {
    if (enabled == writePolling_ || closed_) return;
    writePolling_ = enabled;
    loop->modify(this, enabled ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
}

void Socket::bufferParts(const iovec *parts, int count, size_t skip) {
    for (int i = 0; i < count; i++) {
        size_t length = parts[i].iov_len;
        if (skip >= length) {
            skip -= length;
            continue;
        }
        backpressure_.append(static_cast<const char *>(parts[i].iov_base) + skip, length - skip);
        skip = 0;
    }
    if (bufferedAmount()) setWritePolling(true);
}

ssize_t Socket::sendParts(const iovec *parts, int count) {
    if (ssl_) {
        // No writev in TLS: SSL_write per part, repeated while it takes bytes (with partial
        // writes on, each call may stop after one 16 KiB record).
        size_t written = 0;
        for (int i = 0; i < count; i++) {
            const char *data = static_cast<const char *>(parts[i].iov_base);
            size_t offset = 0;
            while (offset < parts[i].iov_len) {
                ERR_clear_error();
                int n = SSL_write(ssl_, data + offset, int(parts[i].iov_len - offset));
                if (n > 0) {
                    offset += size_t(n);
                    continue;
                }
                int error = SSL_get_error(ssl_, n);
                if (error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ) {
                    return ssize_t(written + offset);
                }
                return -1;
            }
            written += offset;
        }
        return ssize_t(written);
    }
    msghdr message{};
    message.msg_iov = const_cast<iovec *>(parts);
    message.msg_iovlen = size_t(count);
    ssize_t written;
    do {
        written = ::sendmsg(fd, &message, MSG_NOSIGNAL);
    } while (written < 0 && errno == EINTR);
    if (written < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    return written;
}

void Socket::writeDirect(const iovec *parts, int count, size_t total) {
    ssize_t written = sendParts(parts, count);
    if (written < 0) {
        // The peer is gone. Shutting down both directions makes epoll report it, and the
        // connection closes through the normal read path instead of inside this write.
        ::shutdown(fd, SHUT_RDWR);
        return;
    }
    if (size_t(written) < total) bufferParts(parts, count, size_t(written));
}

void Socket::write(const iovec *parts, int count) {
    if (closed_) return;
    size_t total = 0;
    for (int i = 0; i < count; i++) total += parts[i].iov_len;
    if (bufferedAmount()) {
        // Order: nothing may overtake bytes already waiting.
        bufferParts(parts, count, 0);
        return;
    }
    if (loop->corked != this) {
        if (!loop->inDispatch()) {
            writeDirect(parts, count, total);
            return;
        }
        cork();
    }
    if (loop->corkLength + total <= Loop::kCorkBufferSize) {
        char *out = loop->corkBuffer() + loop->corkLength;
        for (int i = 0; i < count; i++) {
            std::memcpy(out, parts[i].iov_base, parts[i].iov_len);
            out += parts[i].iov_len;
        }
        loop->corkLength += total;
        return;
    }
    // Too big for the cork: the cork's bytes and these parts leave in one sendmsg.
    iovec all[9];
    int n = 0;
    if (loop->corkLength) all[n++] = {loop->corkBuffer(), loop->corkLength};
    for (int i = 0; i < count && n < 9; i++) all[n++] = parts[i];
    total += loop->corkLength;
    loop->corkLength = 0;
    writeDirect(all, n, total);
}

void Socket::cork() {
    if (loop->corked == this) return;
    loop->uncork();
    loop->corked = this;
}

void Socket::flushCork() {
    if (loop->corked != this) return;
    size_t length = loop->corkLength;
    loop->corked = nullptr;
    loop->corkLength = 0;
    if (length && !closed_) {
        iovec part{loop->corkBuffer(), length};
        if (bufferedAmount()) bufferParts(&part, 1, 0);
        else writeDirect(&part, 1, length);
    }
}

void Socket::flushBackpressure() {
    while (bufferedAmount()) {
        iovec part{backpressure_.data() + backpressureOffset_, bufferedAmount()};
        ssize_t written = sendParts(&part, 1);
        if (written < 0) {
            ::shutdown(fd, SHUT_RDWR);
            break;
        }
        backpressureOffset_ += size_t(written);
        if (written == 0) break;
    }
    if (bufferedAmount() == 0) {
        std::string().swap(backpressure_); // give the memory back: idle sockets stay small
        backpressureOffset_ = 0;
        setWritePolling(tlsReadWantsWrite_);
        if (closeWhenDrained_) {
            close();
            return;
        }
        onDrained();
    } else if (backpressureOffset_ > 64 * 1024 && backpressureOffset_ * 2 > backpressure_.size()) {
        backpressure_.erase(0, backpressureOffset_);
        backpressureOffset_ = 0;
    }
}

void Socket::closeAfterFlush() {
    if (closed_) return;
    flushCork();
    if (bufferedAmount() == 0) {
        close();
    } else {
        closeWhenDrained_ = true;
    }
}

void Socket::close() {
    if (closed_) return;
    closed_ = true;
    if (loop->corked == this) {
        loop->corked = nullptr;
        loop->corkLength = 0;
    }
    onClosed(); // before the descriptor goes, so handlers can still ask for the peer address
    if (ssl_) {
        SSL_shutdown(ssl_); // best effort close_notify; never waits
        ERR_clear_error();
    }
    loop->remove(this);
    ::close(fd);
    loop->unlink(this);
    loop->retire(this);
}

void Socket::handOverTo(Socket *successor) {
    flushCork();
    successor->backpressure_ = std::move(backpressure_);
    successor->backpressureOffset_ = backpressureOffset_;
    successor->writePolling_ = writePolling_;
    successor->ssl_ = ssl_;
    successor->tlsReadWantsWrite_ = tlsReadWantsWrite_;
    ssl_ = nullptr;
    loop->modify(successor, writePolling_ ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
    closed_ = true;
    loop->unlink(this);
    loop->retire(this);
}

std::string Socket::remoteAddress() const {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getpeername(fd, reinterpret_cast<sockaddr *>(&address), &length) != 0) return {};
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(&address)->sin_addr, text, sizeof text);
    } else if (address.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6 *>(&address)->sin6_addr, text, sizeof text);
    }
    return text;
}

void Socket::onPoll(uint32_t events) {
    if (closed_) return;
    if (events & EPOLLOUT) {
        flushBackpressure();
        if (closed_) return;
        if (tlsReadWantsWrite_) {
            tlsReadWantsWrite_ = false;
            setWritePolling(bufferedAmount() > 0);
            events |= EPOLLIN;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (ssl_) readTls();
        else readPlain();
    }
}

void Socket::readPlain() {
    ssize_t received;
    do {
        received = ::read(fd, loop->receiveBuffer(), Loop::kReceiveBufferSize);
    } while (received < 0 && errno == EINTR);
    if (received > 0) {
        cork();
        onData(loop->receiveBuffer(), size_t(received));
    } else if (received == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        onEnd();
    }
}

void Socket::readTls() {
    // OpenSSL may hold decrypted records beyond what one read returns, and epoll will not
    // report those again: read until it wants the socket, handing over full buffers.
    for (;;) {
        size_t filled = 0;
        int error = SSL_ERROR_NONE;
        while (filled < Loop::kReceiveBufferSize) {
            ERR_clear_error();
            int n = SSL_read(ssl_, loop->receiveBuffer() + filled, int(Loop::kReceiveBufferSize - filled));
            if (n <= 0) {
                error = SSL_get_error(ssl_, n);
                break;
            }
            filled += size_t(n);
        }
        if (filled > 0) {
            cork();
            onData(loop->receiveBuffer(), filled);
            if (closed_) return;
        }
        if (error == SSL_ERROR_NONE) continue; // the buffer filled up: more may be waiting
        if (error == SSL_ERROR_WANT_READ) return;
        if (error == SSL_ERROR_WANT_WRITE) {
            tlsReadWantsWrite_ = true;
            setWritePolling(true);
            return;
        }
        // Peer's close_notify, a TCP close, or a failed handshake.
        ERR_clear_error();
        onEnd();
        return;
    }
}

} // namespace uws
