// Server-side TLS settings (OpenSSL): certificate chain, key, optional client CA.
#pragma once

#include <memory>
#include <string>

#include "uws/TlsSession.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace uws {

struct TlsOptions {
    std::string certFile;   // PEM chain, leaf first
    std::string keyFile;    // PEM private key
    std::string passphrase; // for an encrypted key; empty if none
    std::string caFile;     // when set, clients must present a certificate it signed
};

class TlsContext {
public:
    // Throws std::runtime_error naming the file and OpenSSL's reason when a file is
    // unreadable, the passphrase is wrong or the key does not match the certificate.
    explicit TlsContext(const TlsOptions &options);
    ~TlsContext();
    TlsContext(const TlsContext &) = delete;
    TlsContext &operator=(const TlsContext &) = delete;

    // A server-side session for an accepted descriptor; null when OpenSSL cannot make one.
    std::unique_ptr<TlsSession> newSession(int fd) const;

private:
    SSL_CTX *context_ = nullptr;
    std::string passphrase_;
};

} // namespace uws
