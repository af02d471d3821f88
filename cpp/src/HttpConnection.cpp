#include "uws/HttpConnection.h"

#include <algorithm>
#include <cstring>

#include "uws/LoopData.h"
#include "uws/Handshake.h"
#include "uws/Subprotocol.h"
#include "uws/WebSocket.h"

namespace uws {

namespace {
// Seconds an idle keep-alive connection may wait for its next request.
constexpr unsigned kKeepAliveTimeout = 10;
// Pipelined bytes we hold while a response is pending, beyond one maximal head.
constexpr size_t kPipelineSlack = 64 * 1024;

bool parseContentLength(std::string_view text, uint64_t &value) {
    if (text.empty() || text.size() > 18) return false;
    value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + uint64_t(c - '0');
    }
    return true;
}
} // namespace

HttpConnection::HttpConnection(HttpContext *context, int fd, std::unique_ptr<TlsSession> tls)
    : Socket(context->loop, fd, std::move(tls)), context_(context) {}

void HttpConnection::onData(char *data, size_t length) {
    if (closing_) return; // the last response is on its way out
    buffer_.append(data, length);
    process();
}

void HttpConnection::process() {
    if (processing_) return; // end() from inside a handler: the loop below carries on
    processing_ = true;
    while (!isClosed()) {
        size_t available = buffer_.size() - consumed_;
        if (bodyRemaining_ > 0) {
            if (available == 0) break;
            size_t take = available < bodyRemaining_ ? available : size_t(bodyRemaining_);
            std::string_view chunk(buffer_.data() + consumed_, take);
            consumed_ += take;
            bodyRemaining_ -= take;
            if (onBody) onBody(chunk, bodyRemaining_ == 0);
            continue;
        }
        if (inRequest_) {
            if (!responseEnded_) {
                // Pipelined requests wait for this response; their bytes are bounded.
                if (available > context_->limits.maxHeadSize + kPipelineSlack) {
                    reject("431 Request Header Fields Too Large", "too much pipelined data");
                }
                break;
            }
            if (!finishRequest()) break;
            continue;
        }
        if (available == 0) break;
        HttpRequest &request = loop->data().requestScratch;
        size_t headLength = 0;
        HttpParseStatus status =
            parseHttpRequest(buffer_.data() + consumed_, available, context_->limits, request, headLength);
        if (status == HttpParseStatus::Incomplete) break;
        if (status != HttpParseStatus::Complete) {
            switch (status) {
            case HttpParseStatus::Malformed:
                reject("400 Bad Request", "malformed request");
                break;
            case HttpParseStatus::HeadTooLarge:
                reject("431 Request Header Fields Too Large", "request head too large");
                break;
            case HttpParseStatus::TooManyHeaders:
                reject("431 Request Header Fields Too Large", "too many header fields");
                break;
            default:
                reject("505 HTTP Version Not Supported", "only HTTP/1.0 and HTTP/1.1 are served");
                break;
            }
            continue; // the refusal ended the request: the loop winds the connection up
        }
        if (!startRequest(request, headLength)) continue; // refused: the loop winds it up
        dispatch(request);
    }
    processing_ = false;
    // Request views die with their handler, so consumed bytes can always go.
    if (!isClosed() && consumed_ > 0) {
        buffer_.erase(0, consumed_);
        consumed_ = 0;
    }
}

bool HttpConnection::startRequest(HttpRequest &request, size_t headLength) {
    consumed_ += headLength;
    requestsStarted_++;
    inRequest_ = true;
    responseEnded_ = false;
    headSent_ = false;
    status_.clear();
    pendingHeaders_.clear();
    headRequest_ = request.method == "HEAD";
    chunked_ = false;
    writeOffset_ = 0;
    totalSize_ = 0;
    keepAlive_ = request.http10 ? request.headerHasToken("connection", "keep-alive")
                                : !request.headerHasToken("connection", "close");
    // The previous response may still be waiting for the client (pipelining).
    setTimeout(awaitingClient_ ? context_->sendTimeout : 0);
    if (!request.http10 && !request.hasHeader("host")) {
        reject("400 Bad Request", "missing Host header");
        return false;
    }
    // RFC 9112 3.2: more than one Host line is answered with 400, since two parts of a chain
    // could each believe a different one.
    size_t hosts = 0;
    for (const HttpHeader &header : request.headers) hosts += header.name == "host";
    if (hosts > 1) {
        reject("400 Bad Request", "more than one Host header");
        return false;
    }
    // Bodies: Content-Length only. Chunked (or any transfer coding) is refused rather than
    // risk a mis-parse; both together is a smuggling attempt (RFC 9112 6.1).
    if (request.hasHeader("transfer-encoding")) {
        if (request.hasHeader("content-length")) {
            reject("400 Bad Request", "both Transfer-Encoding and Content-Length");
        } else {
            reject("411 Length Required", "chunked request bodies are not accepted; send Content-Length");
        }
        return false;
    }
    bodyRemaining_ = 0;
    if (request.hasHeader("content-length")) {
        std::string combined = request.combinedHeader("content-length");
        if (!parseContentLength(combined, bodyRemaining_)) {
            reject("400 Bad Request", "invalid Content-Length");
            return false;
        }
        if (bodyRemaining_ > context_->maxBodySize) {
            reject("413 Content Too Large", "request body over the limit");
            return false;
        }
    }
    return true;
}

void HttpConnection::dispatch(HttpRequest &request) {
    bool wantsUpgrade = request.headerHasToken("upgrade", "websocket");
    WebSocketContext *context = context_->webSocketRoute(request);
    if (context && wantsUpgrade) {
        // A refused upgrade ends the connection: the client came to switch protocols.
        keepAlive_ = false;
        if (request.method != "GET" || !request.headerHasToken("connection", "upgrade")) {
            reject("400 Bad Request", "a WebSocket upgrade is a GET with Connection: Upgrade");
            return;
        }
        if (request.http10) {
            reject("400 Bad Request", "WebSocket needs HTTP/1.1");
            return;
        }
        if (request.header("sec-websocket-version") != "13") {
            reject("426 Upgrade Required", "unsupported Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\n");
            return;
        }
        std::string_view key = request.header("sec-websocket-key");
        if (!isValidWebSocketKey(key)) {
            reject("400 Bad Request", "missing or invalid Sec-WebSocket-Key");
            return;
        }
        if (bodyRemaining_ > 0) {
            reject("400 Bad Request", "an upgrade request has no body");
            return;
        }
        if (context->behavior.upgrade) {
            context->behavior.upgrade(this, &request, context);
            return;
        }
        upgrade(context, key, request.combinedHeader("sec-websocket-protocol"),
                request.combinedHeader("sec-websocket-extensions"), nullptr);
        return;
    }
    if (HttpHandler *handler = context_->httpRoute(request)) {
        (*handler)(this, &request);
        if (!responseEnded_ && bodyRemaining_ == 0 && onBody) {
            // An empty body still tells the handler it is complete.
            onBody({}, true);
        }
        return;
    }
    if (context) {
        reject("426 Upgrade Required", "this route serves WebSocket only",
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
        return;
    }
    std::string allowed = context_->allowedMethods(request);
    if (!allowed.empty()) {
        reject("405 Method Not Allowed", "method not allowed here", "Allow: " + allowed + "\r\n");
        return;
    }
    reject("404 Not Found", "no route");
}

bool HttpConnection::finishRequest() {
    inRequest_ = false;
    onBody = nullptr;
    onAborted = nullptr;
    onWritable = nullptr;
    if (!keepAlive_) {
        closing_ = true;
        closeAfterFlush();
        return false;
    }
    setTimeout(kKeepAliveTimeout);
    return true;
}

void HttpConnection::onBackpressure() {
    awaitingClient_ = true;
    setTimeout(context_->sendTimeout);
}

void HttpConnection::onWriteProgress() {
    if (awaitingClient_) setTimeout(context_->sendTimeout);
}

bool HttpConnection::writeStatus(std::string_view status) {
    if (checkResponseFieldText(status)) return false;
    if (!headSent_) status_.assign(status);
    return true;
}

bool HttpConnection::writeHeader(std::string_view name, std::string_view value) {
    if (checkResponseHeaderName(name) || checkResponseFieldText(value)) return false;
    if (!headSent_) pendingHeaders_.append(name).append(": ").append(value).append("\r\n");
    return true;
}

void HttpConnection::writeHead(bool chunked, uint64_t contentLength) {
    std::string head;
    head.reserve(128 + pendingHeaders_.size());
    head.append("HTTP/1.1 ").append(status_.empty() ? std::string_view("200 OK") : std::string_view(status_));
    head.append("\r\nDate: ").append(loop->data().date.view()).append("\r\n");
    head.append(pendingHeaders_);
    if (chunked) {
        head.append("Transfer-Encoding: chunked\r\n");
    } else {
        head.append("Content-Length: ").append(std::to_string(contentLength)).append("\r\n");
    }
    if (!keepAlive_) head.append("Connection: close\r\n");
    head.append("\r\n");
    Socket::write(head);
    headSent_ = true;
    chunked_ = chunked;
}

bool HttpConnection::write(std::string_view chunk) {
    if (!inRequest_ || responseEnded_ || isClosed()) return false;
    if (!headSent_) writeHead(true, 0);
    if (!chunk.empty() && !headRequest_) {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", chunk.size());
        iovec parts[3] = {{size, size_t(n)}, {const_cast<char *>(chunk.data()), chunk.size()}, {const_cast<char *>("\r\n"), 2}};
        Socket::write(parts, 3);
    }
    writeOffset_ += chunk.size();
    return !isClosed() && bufferedAmount() == 0;
}

HttpConnection::TryEndResult HttpConnection::tryEnd(std::string_view data, uint64_t totalSize) {
    if (!inRequest_ || responseEnded_ || isClosed() || isChunked()) return {false, false};
    if (!headSent_) {
        writeHead(false, totalSize);
        totalSize_ = totalSize;
    }
    // Never more than the Content-Length promised.
    if (data.size() > totalSize_ - writeOffset_) data = data.substr(0, size_t(totalSize_ - writeOffset_));
    size_t taken = headRequest_ ? data.size() : writeOptional(data);
    writeOffset_ += taken;
    bool ok = taken == data.size() && !isClosed();
    // The kernel took part of it: onWritable (onDrained) comes when the client reads on.
    if (!ok && !isClosed()) onBackpressure();
    if (writeOffset_ == totalSize_ && !isClosed()) {
        responseDone();
        return {ok, true};
    }
    return {ok, false};
}

void HttpConnection::end(std::string_view body, bool closeConnection) {
    if (!inRequest_ || responseEnded_ || isClosed()) return;
    if (closeConnection) keepAlive_ = false;
    if (headSent_ && chunked_) {
        write(body);
        if (!headRequest_) Socket::write("0\r\n\r\n");
    } else if (headSent_) {
        // After tryEnd: the rest of the promised body, queued whatever the backpressure, and
        // never more than the Content-Length sent.
        std::string_view rest = body.substr(0, size_t(std::min<uint64_t>(body.size(), totalSize_ - writeOffset_)));
        if (!headRequest_) Socket::write(rest);
        writeOffset_ += rest.size();
        // A body of another length than the Content-Length sent cannot be framed: the
        // connection ends with it, so the client sees a short response, not a mix.
        if (writeOffset_ != totalSize_ || rest.size() != body.size()) keepAlive_ = false;
    } else {
        writeHead(false, body.size());
        if (!headRequest_ && !body.empty()) Socket::write(body);
        writeOffset_ = body.size();
    }
    responseDone();
}

void HttpConnection::responseDone() {
    responseEnded_ = true;
    onWritable = nullptr;
    releaseHandle();
    // An answer given later (async handler) resumes pipelined requests here.
    process();
}

void HttpConnection::onDrained() {
    if (awaitingClient_) {
        awaitingClient_ = false;
        // The client took everything: a response in progress waits for its handler (no
        // timeout: onAborted tells it if the client goes), a finished one for the next request.
        setTimeout(inRequest_ && !responseEnded_ ? 0 : kKeepAliveTimeout);
    }
    if (!inRequest_ || responseEnded_ || !onWritable) return;
    // A copy: the handler may end the response, which drops onWritable.
    std::function<bool(uint64_t)> writable = onWritable;
    writable(writeOffset_);
}

void HttpConnection::onProxyHeaderRefused(const char *reason) {
    context_->stats->httpRejections.add();
    logTo(*context_->log, LogLevel::Warning, [&] {
        return "closing " + remoteAddress() + ": no valid PROXY protocol header (" + std::string(reason) + ")";
    });
    close();
}

void HttpConnection::reject(std::string_view status, std::string_view reason, std::string_view extraHeaders) {
    if (isClosed()) return;
    context_->stats->httpRejections.add();
    logTo(*context_->log, status.substr(0, 3) == "404" ? LogLevel::Info : LogLevel::Warning, [&] {
        return "refused " + remoteAddress() + " with " + std::string(status) + ": " + std::string(reason);
    });
    if (!inRequest_) {
        // A request we could not even parse: answer it as one that closes the connection.
        inRequest_ = true;
        responseEnded_ = false;
        headSent_ = false;
        headRequest_ = false;
    } else if (responseEnded_ || headSent_) {
        close();
        return;
    }
    bodyRemaining_ = 0;
    onWritable = nullptr;
    status_.assign(status);
    pendingHeaders_.assign(extraHeaders);
    pendingHeaders_.append("Content-Type: text/plain\r\n");
    std::string body(status);
    body.append(": ").append(reason).append("\n");
    end(body, true);
}

WebSocket *HttpConnection::upgrade(WebSocketContext *context, std::string_view key, std::string_view protocol,
                                   std::string_view extensions, void *wsHandle) {
    if (!inRequest_ || responseEnded_ || isClosed()) return nullptr;
    responseEnded_ = true;
    DeflateAgreement deflate;
    if (context->behavior.compression && !extensions.empty()) {
        deflate = negotiateDeflate(extensions, context->behavior.compression);
    }
    std::string response;
    response.reserve(192);
    response.append("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    response.append("Sec-WebSocket-Accept: ").append(computeAcceptKey(key)).append("\r\n");
    std::string_view selected = selectSubprotocol(protocol, context->behavior.subprotocols);
    if (!selected.empty()) {
        response.append("Sec-WebSocket-Protocol: ").append(selected).append("\r\n");
    }
    if (deflate.accepted) {
        response.append("Sec-WebSocket-Extensions: ").append(deflate.responseHeader).append("\r\n");
    }
    response.append(pendingHeaders_);
    response.append("\r\n");
    Socket::write(response);

    releaseHandle();
    WebSocket *ws = new WebSocket(context, fd);
    ws->handle = wsHandle;
    if (deflate.accepted) ws->enableCompression(deflate);
    handOverTo(ws);
    context->stats->connectionsOpened.add();
    context->stats->openConnections.add();
    ws->cork();
    if (context->behavior.open) context->behavior.open(ws);
    // Frames that arrived right behind the request head.
    if (buffer_.size() > consumed_ && ws->isOpen()) {
        ws->feed(buffer_.data() + consumed_, buffer_.size() - consumed_);
    }
    return ws;
}

void HttpConnection::releaseHandle() {
    if (handle) {
        void *released = handle;
        handle = nullptr;
        if (context_->releaseHandle) context_->releaseHandle(released);
    }
}

void HttpConnection::onTimeout() {
    if (awaitingClient_) {
        logTo(*context_->log, LogLevel::Info, [&] {
            return "closing " + remoteAddress() + ": the client took no response bytes within " +
                   std::to_string(context_->sendTimeout) + " s (" + std::to_string(bufferedAmount()) + " bytes waiting)";
        });
        context_->stats->sendTimeouts.add();
        close();
        return;
    }
    if (requestsStarted_ > 0 && !inRequest_ && consumed_ == buffer_.size()) {
        close(); // a keep-alive connection idle after its requests: nothing wrong
        return;
    }
    context_->stats->headerTimeouts.add();
    logTo(*context_->log, LogLevel::Info, [&] {
        return "closing " + remoteAddress() + ": no complete request within the header timeout (" +
               std::to_string(buffer_.size() - consumed_) + " bytes received)";
    });
    close();
}

void HttpConnection::onClosed() {
    if (inRequest_ && !responseEnded_ && onAborted) {
        std::function<void()> aborted = std::move(onAborted);
        onAborted = nullptr;
        aborted();
    }
    onBody = nullptr;
    onWritable = nullptr;
    releaseHandle();
}

} // namespace uws
