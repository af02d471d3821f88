#include "uws/TlsContext.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

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

// OpenSSL reports a missing or unreadable file as a PEM error; opening it first gives the
// caller the errno (FileNotFoundError, PermissionError in Python).
void checkReadable(const std::string &path, const char *what) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), std::string("cannot read ") + what + " " + path);
    ::close(fd);
}

std::string lowerCase(std::string text) {
    for (char &c : text) c = char(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// A configured SSL_CTX, or an exception (the context freed).
SSL_CTX *makeContext(const TlsOptions &options, std::string *passphrase) {
    checkReadable(options.certFile, "certificate");
    checkReadable(options.keyFile, "private key");
    if (!options.caFile.empty()) checkReadable(options.caFile, "CA file");
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());
    if (!context) throw std::runtime_error("cannot create a TLS context: " + opensslError());
    try {
        // TLS 1.2 and 1.3 only; the default cipher list is forward-secret AEAD only.
        SSL_CTX_set_min_proto_version(context, options.minVersion == TlsVersion::Tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
        SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
        const std::string ciphers =
            options.ciphers.empty() ? "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS" : options.ciphers;
        if (SSL_CTX_set_cipher_list(context, ciphers.c_str()) != 1) {
            throw std::runtime_error("cipher list '" + ciphers + "' selects no cipher: " + opensslError());
        }
        if (!options.ciphersuites.empty() && SSL_CTX_set_ciphersuites(context, options.ciphersuites.c_str()) != 1) {
            throw std::runtime_error("TLS 1.3 ciphersuites '" + options.ciphersuites + "' are not valid: " + opensslError());
        }
        // Partial writes and a buffer that may move between retries: our backpressure buffer
        // hands OpenSSL the same unsent bytes from a new address.
        SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_default_passwd_cb(context, passphraseCallback);
        SSL_CTX_set_default_passwd_cb_userdata(context, passphrase);
        if (SSL_CTX_use_certificate_chain_file(context, options.certFile.c_str()) != 1) {
            throw std::runtime_error("cannot load certificate " + options.certFile + ": " + opensslError());
        }
        if (SSL_CTX_use_PrivateKey_file(context, options.keyFile.c_str(), SSL_FILETYPE_PEM) != 1) {
            throw std::runtime_error("cannot load private key " + options.keyFile +
                                     " (wrong passphrase?): " + opensslError());
        }
        if (SSL_CTX_check_private_key(context) != 1) {
            throw std::runtime_error("private key " + options.keyFile + " does not match certificate " +
                                     options.certFile + ": " + opensslError());
        }
        if (!options.caFile.empty()) {
            if (SSL_CTX_load_verify_locations(context, options.caFile.c_str(), nullptr) != 1) {
                throw std::runtime_error("cannot load CA file " + options.caFile + ": " + opensslError());
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        }
    } catch (...) {
        SSL_CTX_free(context);
        throw;
    }
    return context;
}

} // namespace

TlsContext::TlsContext(const TlsOptions &options) : passphrase_(options.passphrase) {
    context_ = makeContext(options, &passphrase_);
    SSL_CTX_set_tlsext_servername_callback(context_, onServerName);
    SSL_CTX_set_tlsext_servername_arg(context_, this);
}

TlsContext::~TlsContext() {
    for (Named &named : named_) SSL_CTX_free(named.context);
    if (context_) SSL_CTX_free(context_);
}

void TlsContext::addServerName(const std::string &hostname, const TlsOptions &options) {
    auto passphrase = std::make_unique<std::string>(options.passphrase);
    SSL_CTX *context = makeContext(options, passphrase.get());
    std::string name = lowerCase(hostname);
    for (Named &named : named_) {
        if (named.hostname == name) {
            SSL_CTX_free(named.context);
            named.context = context;
            named.passphrase = std::move(passphrase);
            return;
        }
    }
    named_.push_back(Named{name, context, std::move(passphrase)});
}

SSL_CTX *TlsContext::contextFor(const std::string &hostname) const {
    for (const Named &named : named_) {
        if (named.hostname == hostname) return named.context;
    }
    size_t dot = hostname.find('.');
    if (dot == std::string::npos) return nullptr;
    std::string wildcard = "*" + hostname.substr(dot);
    for (const Named &named : named_) {
        if (named.hostname == wildcard) return named.context;
    }
    return nullptr;
}

int TlsContext::onServerName(SSL *ssl, int *, void *self) {
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_NOACK;
    SSL_CTX *context = static_cast<TlsContext *>(self)->contextFor(lowerCase(name));
    if (!context) return SSL_TLSEXT_ERR_NOACK; // the default certificate
    SSL_set_SSL_CTX(ssl, context);
    // SSL_set_SSL_CTX swaps the certificate but not the verify mode (client certificates).
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(context), nullptr);
    return SSL_TLSEXT_ERR_OK;
}

std::unique_ptr<TlsSession> TlsContext::newSession(int fd) const {
    SSL *ssl = SSL_new(context_);
    if (!ssl) return nullptr;
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl);
    return std::make_unique<TlsSession>(ssl);
}

} // namespace uws
