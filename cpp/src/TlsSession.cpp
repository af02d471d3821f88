#include "uws/TlsSession.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace uws {

TlsSession::~TlsSession() { SSL_free(ssl_); }

ssize_t TlsSession::send(const iovec *parts, int count) {
    // With partial writes on, each call may stop after one 16 KiB record.
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

TlsRead TlsSession::receive(char *buffer, size_t capacity, size_t &filled) {
    filled = 0;
    while (filled < capacity) {
        ERR_clear_error();
        int n = SSL_read(ssl_, buffer + filled, int(capacity - filled));
        if (n > 0) {
            filled += size_t(n);
            continue;
        }
        switch (SSL_get_error(ssl_, n)) {
        case SSL_ERROR_WANT_READ:
            return TlsRead::WantRead;
        case SSL_ERROR_WANT_WRITE:
            return TlsRead::WantWrite;
        default:
            ERR_clear_error();
            return TlsRead::Ended;
        }
    }
    return TlsRead::Full;
}

void TlsSession::shutdown() {
    SSL_shutdown(ssl_);
    ERR_clear_error();
}

} // namespace uws
