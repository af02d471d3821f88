// uws_py._core.WebSocket: a plain CPython type, because its methods are the per-message hot
// path. Also the objects made once at import that handlers receive.
#pragma once

#include <pybind11/pybind11.h>

#include "uws/WebSocket.h"

namespace uwspy {

namespace py = pybind11;

class PyApp;

// The Python face of a uws::WebSocket. `ws` is null once the socket closed; every method
// then raises WebSocketClosedError instead of touching freed memory.
struct PyWebSocketObject {
    PyObject_HEAD
    uws::WebSocket *ws;
    PyObject *userData;
    PyApp *app;
};

extern PyTypeObject PyWebSocketType;
bool initWebSocketType(py::module_ &module);
// A new reference; null with a Python error set.
PyObject *newPyWebSocket(uws::WebSocket *ws, PyObject *userData, PyApp *app);

// Objects made once at import: enum members handed to handlers, the closed error.
struct Constants {
    PyObject *opCodes[16] = {};
    PyObject *sendStatus[3] = {};
    PyObject *closedError = nullptr;
};
extern Constants constants;

} // namespace uwspy
