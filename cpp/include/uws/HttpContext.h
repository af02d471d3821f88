// What the HTTP connections of one App share: the routes, the parser's limits, the body
// size limit and the header timeout, and the pieces of the App they report to. An
// HttpConnection knows its context, never the App.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "uws/AppStats.h"
#include "uws/HttpParser.h"
#include "uws/HttpRouter.h"
#include "uws/Log.h"

namespace uws {

class HttpConnection;
class Loop;
struct WebSocketContext;

using HttpHandler = std::function<void(HttpConnection *, HttpRequest *)>;

struct HttpContext {
    Loop *loop = nullptr;
    AppStats *stats = nullptr;
    const Logger *log = nullptr;

    HttpRouter<WebSocketContext *> webSocketRouter;
    HttpRouter<HttpHandler> httpRouter;
    HttpLimits limits;
    // Largest request body accepted (Content-Length); more is refused with 413.
    uint64_t maxBodySize = 1024 * 1024;
    // Seconds a client has to deliver a complete request head (slowloris defence).
    unsigned headerTimeout = 10;
    // Seconds a response may wait for a client that takes none of its bytes (it stopped
    // reading, or is gone without a FIN): then the connection closes and the response is
    // aborted, so a streamed body does not hold its buffer, and the handler its state,
    // forever. Every byte the client takes restarts it, so a slow reader is not cut. 10 s, as
    // µWebSockets' HTTP timeout. Counted in AppStats::sendTimeouts.
    unsigned sendTimeout = 10;
    // Set by the bindings: releases a response's handle once the connection is done with it.
    std::function<void(void *)> releaseHandle;

    WebSocketContext *webSocketRoute(HttpRequest &request) {
        WebSocketContext **found = webSocketRouter.match("GET", request);
        return found ? *found : nullptr;
    }
    HttpHandler *httpRoute(HttpRequest &request) { return httpRouter.match(request.method, request); }
    // "GET, POST" for a path that has routes, but none for the request's method.
    std::string allowedMethods(HttpRequest &request) { return httpRouter.methodsFor(request); }
};

} // namespace uws
