#include "uws/Socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "uws/LoopData.h"
#include "uws/ProxyProtocol.h"

namespace uws {

Socket::Socket(Loop *loop_, int fd_, std::unique_ptr<TlsSession> tls) : loop(loop_), tls_(std::move(tls)) {
    fd = fd_;
    loop->link(this);
}

Socket::~Socket() = default;

bool Socket::isCorked() const { return loop->data().corked == this; }

void Socket::failWrites() { ::shutdown(fd, SHUT_RDWR); }

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
    bool wasEmpty = bufferedAmount() == 0;
    for (int i = 0; i < count; i++) {
        size_t length = parts[i].iov_len;
        if (skip >= length) {
            skip -= length;
            continue;
        }
        backpressure_.append(static_cast<const char *>(parts[i].iov_base) + skip, length - skip);
        skip = 0;
    }
    if (bufferedAmount()) {
        setWritePolling(true);
        if (wasEmpty) onBackpressure();
    }
}

ssize_t Socket::sendParts(const iovec *parts, int count) {
    if (tls_) return tls_->send(parts, count);
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
        failWrites();
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
    LoopData &shared = loop->data();
    if (shared.corked != this) {
        if (!loop->inDispatch()) {
            writeDirect(parts, count, total);
            return;
        }
        cork();
    }
    if (shared.corkLength + total <= LoopData::kCorkBufferSize) {
        char *out = shared.corkBuffer + shared.corkLength;
        for (int i = 0; i < count; i++) {
            std::memcpy(out, parts[i].iov_base, parts[i].iov_len);
            out += parts[i].iov_len;
        }
        shared.corkLength += total;
        return;
    }
    // Too big for the cork: the cork's bytes and these parts leave in one sendmsg.
    iovec all[9];
    int n = 0;
    if (shared.corkLength) all[n++] = {shared.corkBuffer, shared.corkLength};
    for (int i = 0; i < count && n < 9; i++) all[n++] = parts[i];
    total += shared.corkLength;
    shared.corkLength = 0;
    writeDirect(all, n, total);
}

size_t Socket::writeOptional(std::string_view data) {
    if (closed_) return 0;
    flushCork(); // the head and anything else corked go first
    if (bufferedAmount() || data.empty()) return 0;
    iovec part{const_cast<char *>(data.data()), data.size()};
    ssize_t written = sendParts(&part, 1);
    if (written < 0) {
        failWrites();
        return 0;
    }
    if (size_t(written) < data.size()) setWritePolling(true);
    return size_t(written);
}

void Socket::cork() {
    LoopData &shared = loop->data();
    if (shared.corked == this) return;
    loop->uncork();
    shared.corked = this;
}

void Socket::flushCork() {
    LoopData &shared = loop->data();
    if (shared.corked != this) return;
    size_t length = shared.corkLength;
    shared.corked = nullptr;
    shared.corkLength = 0;
    if (length && !closed_) {
        iovec part{shared.corkBuffer, length};
        if (bufferedAmount()) bufferParts(&part, 1, 0);
        else writeDirect(&part, 1, length);
    }
}

void Socket::flushBackpressure() {
    size_t before = bufferedAmount();
    while (bufferedAmount()) {
        iovec part{backpressure_.data() + backpressureOffset_, bufferedAmount()};
        ssize_t written = sendParts(&part, 1);
        if (written < 0) {
            failWrites();
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
    } else {
        if (backpressureOffset_ > 64 * 1024 && backpressureOffset_ * 2 > backpressure_.size()) {
            backpressure_.erase(0, backpressureOffset_);
            backpressureOffset_ = 0;
        }
        if (bufferedAmount() < before && !closed_) onWriteProgress();
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
    LoopData &shared = loop->data();
    if (shared.corked == this) {
        shared.corked = nullptr;
        shared.corkLength = 0;
    }
    onClosed(); // before the descriptor goes, so handlers can still ask for the peer address
    if (tls_) tls_->shutdown();
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
    successor->tls_ = std::move(tls_);
    successor->tlsReadWantsWrite_ = tlsReadWantsWrite_;
    successor->proxiedAddress_ = std::move(proxiedAddress_);
    loop->modify(successor, writePolling_ ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
    closed_ = true;
    loop->unlink(this);
    loop->retire(this);
}

std::string Socket::remoteAddress() const {
    if (!proxiedAddress_.empty()) return proxiedAddress_;
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
        if (proxyHeaderPending_) {
            readProxyHeader();
            if (closed_ || proxyHeaderPending_) return;
        }
        if (tls_) readTls();
        else readPlain();
    }
}

void Socket::readPlain() {
    ssize_t received;
    do {
        received = ::read(fd, loop->data().receiveBuffer, LoopData::kReceiveBufferSize);
    } while (received < 0 && errno == EINTR);
    if (received > 0) {
        cork();
        onData(loop->data().receiveBuffer, size_t(received));
    } else if (received == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        onEnd();
    }
}

void Socket::readProxyHeader() {
    // Peeked, and only the header's own bytes consumed: what follows it stays in the kernel
    // for the TLS session or the HTTP reader. A header still incomplete is all header, so those
    // bytes are taken, and level-triggered epoll does not report them again.
    char *buffer = loop->data().receiveBuffer;
    size_t room = kMaxProxyHeaderLength - proxyHeader_.size();
    ssize_t peeked;
    do {
        peeked = ::recv(fd, buffer, room, MSG_PEEK);
    } while (peeked < 0 && errno == EINTR);
    if (peeked == 0 || (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        onEnd();
        return;
    }
    if (peeked < 0) return;
    size_t before = proxyHeader_.size();
    proxyHeader_.append(buffer, size_t(peeked));
    ProxyHeader header;
    size_t headerLength = 0;
    const char *reason = nullptr;
    ProxyParseStatus status = parseProxyHeader(proxyHeader_.data(), proxyHeader_.size(), header, headerLength, reason);
    if (status == ProxyParseStatus::Invalid) {
        proxyHeaderPending_ = false;
        onProxyHeaderRefused(reason);
        return;
    }
    size_t take = status == ProxyParseStatus::Complete ? headerLength - before : size_t(peeked);
    ssize_t consumed;
    do {
        consumed = ::recv(fd, buffer, take, 0);
    } while (consumed < 0 && errno == EINTR);
    if (consumed != ssize_t(take)) {
        onEnd();
        return;
    }
    if (status == ProxyParseStatus::Incomplete) return;
    proxyHeaderPending_ = false;
    std::string().swap(proxyHeader_);
    if (!header.local && !header.sourceAddress.empty()) proxiedAddress_ = std::move(header.sourceAddress);
}

void Socket::readTls() {
    // OpenSSL may hold decrypted records beyond what one read returns, and epoll will not
    // report those again: read until it wants the socket, handing over full buffers.
    char *buffer = loop->data().receiveBuffer;
    for (;;) {
        size_t filled = 0;
        TlsRead status = tls_->receive(buffer, LoopData::kReceiveBufferSize, filled);
        if (filled > 0) {
            cork();
            onData(buffer, filled);
            if (closed_) return;
        }
        switch (status) {
        case TlsRead::Full:
            continue;
        case TlsRead::WantRead:
            return;
        case TlsRead::WantWrite:
            tlsReadWantsWrite_ = true;
            setWritePolling(true);
            return;
        case TlsRead::Ended:
            onEnd();
            return;
        }
    }
}

} // namespace uws
