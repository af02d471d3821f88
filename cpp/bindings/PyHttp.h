// uws_py._core.HttpRequest, HttpResponse and WebSocketContext, and the call of a Python
// request handler.
#pragma once

#include <pybind11/pybind11.h>

#include "uws/HttpConnection.h"
#include "uws/WebSocketContext.h"

namespace uwspy {

namespace py = pybind11;

class PyApp;

// Opaque to Python: the route an upgrade belongs to, handed back to res.upgrade().
struct PyWebSocketContext {
    uws::WebSocketContext *context;
};

// A request is only valid during the handler it was given to (its views point into the
// connection's buffer); afterwards every method raises.
struct PyHttpRequest {
    uws::HttpRequest *request;
    uws::HttpRequest &get() const {
        if (!request) throw py::value_error("an HttpRequest is only valid during the handler it was passed to");
        return *request;
    }
};

// `connection` is null once the response ended or the client left.
struct PyHttpResponse {
    uws::HttpConnection *connection;
    PyApp *app;
    py::object aborted = py::none();
};

// Calls handler(res, req[, context]) for a request; req is invalid once it returns. A handler
// that raises gets its request answered with 500 when it had not answered yet.
void callRequestHandler(PyApp *app, PyObject *handler, uws::HttpConnection *connection, uws::HttpRequest *request,
                        uws::WebSocketContext *context, const char *where);

// What HttpContext::releaseHandle does with a response's handle.
void releaseResponseHandle(void *handle);

void registerHttp(py::module_ &module);

} // namespace uwspy
