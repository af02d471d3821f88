// Server-side TLS settings (OpenSSL): certificate chain, key, optional client CA, protocol
// floor and cipher lists, and per-hostname certificates chosen by SNI.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "uws/TlsSession.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace uws {

enum class TlsVersion { Tls12, Tls13 };

struct TlsOptions {
    std::string certFile;   // PEM chain, leaf first
    std::string keyFile;    // PEM private key
    std::string passphrase; // for an encrypted key; empty if none
    std::string caFile;     // when set, clients must present a certificate it signed
    // OpenSSL cipher strings; empty keeps our defaults. ciphers is for TLS 1.2
    // (SSL_CTX_set_cipher_list), ciphersuites for TLS 1.3 (SSL_CTX_set_ciphersuites).
    std::string ciphers;
    std::string ciphersuites;
    // Older clients fail the handshake with a protocol_version alert.
    TlsVersion minVersion = TlsVersion::Tls12;
};

class TlsContext {
public:
    // Throws std::system_error (the errno) when a file cannot be opened, and
    // std::runtime_error naming the file and OpenSSL's reason when its content is bad, the
    // passphrase is wrong, the key does not match the certificate or a cipher string
    // selects nothing.
    explicit TlsContext(const TlsOptions &options);
    ~TlsContext();
    TlsContext(const TlsContext &) = delete;
    TlsContext &operator=(const TlsContext &) = delete;

    // Clients asking for hostname (SNI; "*.example.com" matches one label) get this
    // certificate, key and client CA. The protocol floor and ciphers are the default
    // context's: OpenSSL settles the version before it reads the server name. A second
    // call for the same name replaces it. Throws as the constructor does.
    void addServerName(const std::string &hostname, const TlsOptions &options);

    // A server-side session for an accepted descriptor; null when OpenSSL cannot make one.
    std::unique_ptr<TlsSession> newSession(int fd) const;

private:
    struct Named {
        std::string hostname; // lower case
        SSL_CTX *context;
        std::unique_ptr<std::string> passphrase; // the key callback points here
    };
    static int onServerName(SSL *ssl, int *alert, void *self);
    SSL_CTX *contextFor(const std::string &hostname) const;

    SSL_CTX *context_ = nullptr;
    std::string passphrase_;
    std::vector<Named> named_;
};

} // namespace uws
