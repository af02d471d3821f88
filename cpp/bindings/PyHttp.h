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

// uws_py.HttpClosedError: a request or response used after its request ended, the HTTP twin
// of WebSocketClosedError (both RuntimeError). Set by registerHttp.
extern PyObject *httpClosedError;

// A request is only valid during the handler it was given to (its views point into the
// connection's buffer); afterwards every method raises HttpClosedError.
struct PyHttpRequest {
    uws::HttpRequest *request;
    uws::HttpRequest &get() const {
        if (!request) {
            PyErr_SetString(httpClosedError, "this HttpRequest has ended: it is only valid during the handler it was passed to");
            throw py::error_already_set();
        }
        return *request;
    }
};

// `connection` is null once the response ended or the client left; then every method but
// `aborted` and `upgrade` (False) raises HttpClosedError.
struct PyHttpResponse {
    uws::HttpConnection *connection;
    PyApp *app;
    py::object aborted = py::none();
    uws::HttpConnection &get() const {
        if (!connection) {
            PyErr_SetString(httpClosedError, "this HttpResponse has ended: it was answered, or the client left");
            throw py::error_already_set();
        }
        return *connection;
    }
};

// Calls handler(res, req[, context]) for a request; req is invalid once it returns. A handler
// that raises gets its request answered with 500 when it had not answered yet.
void callRequestHandler(PyApp *app, PyObject *handler, uws::HttpConnection *connection, uws::HttpRequest *request,
                        uws::WebSocketContext *context, const char *where);

// What HttpContext::releaseHandle does with a response's handle.
void releaseResponseHandle(void *handle);

void registerHttp(py::module_ &module);

} // namespace uwspy
