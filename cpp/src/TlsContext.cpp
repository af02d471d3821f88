#include "uws/TlsContext.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>
#include <stdexcept>

namespace uws {

namespace {

std::string opensslError() {
    unsigned long code = ERR_get_error();
    char text[256] = "unknown OpenSSL error";
    if (code) ERR_error_string_n(code, text, sizeof text);
    ERR_clear_error();
    return text;
}

int passphraseCallback(char *buffer, int size, int, void *userdata) {
    const std::string *passphrase = static_cast<const std::string *>(userdata);
    int length = int(passphrase->size());
    if (length > size) return -1;
    std::memcpy(buffer, passphrase->data(), size_t(length));
    return length;
}

} // namespace

TlsContext::TlsContext(const TlsOptions &options) : passphrase_(options.passphrase) {
    context_ = SSL_CTX_new(TLS_server_method());
    if (!context_) throw std::runtime_error("cannot create a TLS context: " + opensslError());
    // TLS 1.2 and 1.3 only; OpenSSL's default cipher lists for them are the sane ones.
    SSL_CTX_set_min_proto_version(context_, TLS1_2_VERSION);
    SSL_CTX_set_options(context_, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_cipher_list(context_, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS");
    // Partial writes and a buffer that may move between retries: our backpressure buffer
    // hands OpenSSL the same unsent bytes from a new address.
    SSL_CTX_set_mode(context_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(context_, passphraseCallback);
    SSL_CTX_set_default_passwd_cb_userdata(context_, &passphrase_);
    try {
        if (SSL_CTX_use_certificate_chain_file(context_, options.certFile.c_str()) != 1) {
            throw std::runtime_error("cannot load certificate " + options.certFile + ": " + opensslError());
        }
        if (SSL_CTX_use_PrivateKey_file(context_, options.keyFile.c_str(), SSL_FILETYPE_PEM) != 1) {
            throw std::runtime_error("cannot load private key " + options.keyFile +
                                     " (wrong passphrase?): " + opensslError());
        }
        if (SSL_CTX_check_private_key(context_) != 1) {
            throw std::runtime_error("private key " + options.keyFile + " does not match certificate " +
                                     options.certFile + ": " + opensslError());
        }
        if (!options.caFile.empty()) {
            if (SSL_CTX_load_verify_locations(context_, options.caFile.c_str(), nullptr) != 1) {
                throw std::runtime_error("cannot load CA file " + options.caFile + ": " + opensslError());
            }
            SSL_CTX_set_verify(context_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        }
    } catch (...) {
        SSL_CTX_free(context_);
        context_ = nullptr;
        throw;
    }
}

TlsContext::~TlsContext() {
    if (context_) SSL_CTX_free(context_);
}

std::unique_ptr<TlsSession> TlsContext::newSession(int fd) const {
    SSL *ssl = SSL_new(context_);
    if (!ssl) return nullptr;
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl);
    return std::make_unique<TlsSession>(ssl);
}

} // namespace uws
