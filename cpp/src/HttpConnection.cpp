#include "uws/HttpConnection.h"

#include <cstring>

#include "uws/App.h"
#include "uws/Handshake.h"
#include "uws/WebSocket.h"

namespace uws {

HttpConnection::HttpConnection(App *app, int fd) : Socket(&app->loop(), fd), app_(app) {}

void HttpConnection::onData(char *data, size_t length) {
    if (responded_) {
        return; // the response is out and the connection is closing
    }
    // Bytes beyond a complete head (a client speaking early after the upgrade request)
    // are kept, bounded, for the WebSocket or until the handler answers.
    if (head_.size() + length > app_->httpLimits.maxHeadSize + 64 * 1024) {
        reject("431 Request Header Fields Too Large", "request head too large");
        return;
    }
    bool hadNewline = head_.empty() || std::memchr(data, '\n', length) != nullptr;
    head_.append(data, length);
    if (awaitingResponse_ || !hadNewline) {
        if (!awaitingResponse_ && head_.size() > app_->httpLimits.maxHeadSize) {
            reject("431 Request Header Fields Too Large", "request head too large");
        }
        return;
    }
    HttpRequest request;
    size_t headLength = 0;
    switch (parseHttpRequest(head_.data(), head_.size(), app_->httpLimits, request, headLength)) {
    case HttpParseStatus::Incomplete:
        return;
    case HttpParseStatus::Malformed:
        reject("400 Bad Request", "malformed request");
        return;
    case HttpParseStatus::HeadTooLarge:
        reject("431 Request Header Fields Too Large", "request head too large");
        return;
    case HttpParseStatus::TooManyHeaders:
        reject("431 Request Header Fields Too Large", "too many header fields");
        return;
    case HttpParseStatus::UnsupportedVersion:
        reject("505 HTTP Version Not Supported", "only HTTP/1.0 and HTTP/1.1 are served");
        return;
    case HttpParseStatus::Complete:
        handleRequest(request, headLength);
        return;
    }
}

void HttpConnection::handleRequest(HttpRequest &request, size_t headLength) {
    headLength_ = headLength;
    if (!request.http10 && !request.hasHeader("host")) {
        reject("400 Bad Request", "missing Host header");
        return;
    }
    WebSocketContext *context = app_->route("GET", request);
    if (!context) {
        reject("404 Not Found", "no route");
        return;
    }
    if (request.method != "GET" || !request.headerHasToken("upgrade", "websocket") ||
        !request.headerHasToken("connection", "upgrade")) {
        reject("426 Upgrade Required", "this route serves WebSocket only",
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
        return;
    }
    if (request.http10) {
        reject("400 Bad Request", "WebSocket needs HTTP/1.1");
        return;
    }
    if (request.header("sec-websocket-version") != "13") {
        reject("426 Upgrade Required", "unsupported Sec-WebSocket-Version",
               "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    std::string_view key = request.header("sec-websocket-key");
    if (!isValidWebSocketKey(key)) {
        reject("400 Bad Request", "missing or invalid Sec-WebSocket-Key");
        return;
    }
    if (request.hasHeader("content-length") || request.hasHeader("transfer-encoding")) {
        if (request.header("content-length") != "0") {
            reject("400 Bad Request", "an upgrade request has no body");
            return;
        }
    }
    if (context->behavior.upgrade) {
        awaitingResponse_ = true;
        context->behavior.upgrade(this, &request, context);
        return;
    }
    upgrade(context, key, request.combinedHeader("sec-websocket-protocol"),
            request.combinedHeader("sec-websocket-extensions"), nullptr);
}

HttpConnection &HttpConnection::writeStatus(std::string_view status) {
    status_.assign(status);
    return *this;
}

HttpConnection &HttpConnection::writeHeader(std::string_view name, std::string_view value) {
    pendingHeaders_.append(name).append(": ").append(value).append("\r\n");
    return *this;
}

void HttpConnection::end(std::string_view body) {
    if (responded_ || isClosed()) return;
    responded_ = true;
    std::string head;
    head.reserve(128 + pendingHeaders_.size());
    head.append("HTTP/1.1 ").append(status_.empty() ? std::string_view("200 OK") : std::string_view(status_));
    head.append("\r\n").append(pendingHeaders_);
    head.append("Content-Length: ").append(std::to_string(body.size())).append("\r\nConnection: close\r\n\r\n");
    iovec parts[2] = {{head.data(), head.size()}, {const_cast<char *>(body.data()), body.size()}};
    write(parts, 2);
    releaseHandle();
    closeAfterFlush();
}

void HttpConnection::reject(std::string_view status, std::string_view reason, std::string_view extraHeaders) {
    if (responded_ || isClosed()) return;
    app_->stats.httpRejections.add();
    app_->logf(status.substr(0, 3) == "404" ? LogLevel::Info : LogLevel::Warning,
               "refused " + remoteAddress() + " with " + std::string(status) + ": " + std::string(reason));
    status_.assign(status);
    pendingHeaders_.assign(extraHeaders);
    pendingHeaders_.append("Content-Type: text/plain\r\n");
    std::string body(status);
    body.append(": ").append(reason).append("\n");
    end(body);
}

WebSocket *HttpConnection::upgrade(WebSocketContext *context, std::string_view key, std::string_view protocol,
                                   std::string_view extensions, void *wsHandle) {
    if (responded_ || isClosed()) return nullptr;
    DeflateAgreement deflate;
    if (context->behavior.compression && !extensions.empty()) {
        deflate = negotiateDeflate(extensions, context->behavior.compression);
    }
    responded_ = true;
    std::string response;
    response.reserve(192);
    response.append("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    response.append("Sec-WebSocket-Accept: ").append(computeAcceptKey(key)).append("\r\n");
    // A client's list ("chat, superchat"): the first entry is the one we speak.
    std::string_view selected = protocol.substr(0, protocol.find(','));
    while (!selected.empty() && (selected.back() == ' ' || selected.back() == '\t')) selected.remove_suffix(1);
    while (!selected.empty() && (selected.front() == ' ' || selected.front() == '\t')) selected.remove_prefix(1);
    if (!selected.empty()) {
        response.append("Sec-WebSocket-Protocol: ").append(selected).append("\r\n");
    }
    if (deflate.accepted) {
        response.append("Sec-WebSocket-Extensions: ").append(deflate.responseHeader).append("\r\n");
    }
    response.append(pendingHeaders_);
    response.append("\r\n");
    write(response);

    releaseHandle();
    WebSocket *ws = new WebSocket(context, fd);
    ws->handle = wsHandle;
    if (deflate.accepted) ws->enableCompression(deflate);
    handOverTo(ws);
    app_->stats.connectionsOpened.add();
    app_->stats.openConnections.add();
    ws->cork();
    if (context->behavior.open) context->behavior.open(ws);
    // Frames that arrived right behind the request head.
    if (head_.size() > headLength_ && ws->isOpen()) {
        ws->feed(head_.data() + headLength_, head_.size() - headLength_);
    }
    return ws;
}

void HttpConnection::releaseHandle() {
    if (handle) {
        void *released = handle;
        handle = nullptr;
        onAborted = nullptr;
        if (app_->releaseHttpHandle) app_->releaseHttpHandle(released);
    }
}

void HttpConnection::onTimeout() {
    app_->logf(LogLevel::Info, "closing " + remoteAddress() + ": no complete request within the header timeout");
    close();
}

void HttpConnection::onClosed() {
    if (!responded_ && onAborted) {
        std::function<void()> aborted = std::move(onAborted);
        onAborted = nullptr;
        aborted();
    }
    releaseHandle();
}

} // namespace uws
