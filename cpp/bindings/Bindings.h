// Shared declarations of the bindings. Only files in cpp/bindings include Python.h or
// pybind11, take or drop the GIL, and convert between C++ and Python types.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <thread>
#include <vector>

#include "uws/App.h"
#include "uws/HttpConnection.h"
#include "uws/WebSocket.h"

namespace uwspy {

namespace py = pybind11;

class CoreApp;

// The Python face of a uws::WebSocket. `ws` is null once the socket closed; every method
// then raises WebSocketClosedError instead of touching freed memory.
struct PyWebSocketObject {
    PyObject_HEAD
    uws::WebSocket *ws;
    PyObject *userData;
    CoreApp *app;
};

extern PyTypeObject PyWebSocketType;
bool initWebSocketType(py::module_ &module);
PyObject *newPyWebSocket(uws::WebSocket *ws, PyObject *userData, CoreApp *app);

// A view of str (as UTF-8), bytes, or any contiguous buffer. Releases what it borrowed.
class Payload {
public:
    Payload() = default;
    Payload(const Payload &) = delete;
    Payload &operator=(const Payload &) = delete;

    ~Payload() {
        if (hasBuffer_) PyBuffer_Release(&buffer_);
    }
    bool load(PyObject *object, bool &isText) {
        if (PyUnicode_Check(object)) {
            Py_ssize_t length;
            const char *data = PyUnicode_AsUTF8AndSize(object, &length);
            if (!data) return false;
            view = std::string_view(data, size_t(length));
            isText = true;
            return true;
        }
        isText = false;
        if (PyBytes_Check(object)) {
            view = std::string_view(PyBytes_AS_STRING(object), size_t(PyBytes_GET_SIZE(object)));
            return true;
        }
        if (PyObject_GetBuffer(object, &buffer_, PyBUF_SIMPLE) != 0) {
            PyErr_Format(PyExc_TypeError, "expected str, bytes, bytearray or memoryview, not %.100s",
                         Py_TYPE(object)->tp_name);
            return false;
        }
        hasBuffer_ = true;
        view = std::string_view(static_cast<const char *>(buffer_.buf), size_t(buffer_.len));
        return true;
    }
    std::string_view view;

private:
    Py_buffer buffer_{};
    bool hasBuffer_ = false;
};

// Objects made once at import: enum members handed to handlers, the closed error.
struct Constants {
    PyObject *opCodes[16] = {};
    PyObject *sendStatus[3] = {};
    PyObject *closedError = nullptr;
};
extern Constants constants;

// Handlers of one ws() route, as Python callables (None when absent).
struct PyBehavior {
    py::object open, message, drain, close, upgrade, ping, pong, subscription, dropped;
};

class CoreApp {
public:
    CoreApp();
    ~CoreApp();

    uws::App app;
    std::vector<std::unique_ptr<PyBehavior>> behaviors;
    std::vector<py::object> httpHandlers; // keeps route handlers alive
    py::object errorHandler = py::none(); // (where: str, exc: BaseException) -> None
    py::object logHandler = py::none();   // (level: int, message: str) -> None

    // Called with a Python error set (a handler raised): logs it, or for BaseExceptions
    // such as KeyboardInterrupt stops the loop and re-raises from run().
    void reportError(const char *where);
    bool onLoopThread() const;
    bool running = false;
    // True while another event loop (asyncio) drives this one through runOnce().
    bool embedded = false;

    void run();
    // One non-blocking iteration; returns whether the loop was asked to stop.
    bool runOnce();
    void setEmbedded(bool on);

private:
    PyThreadState *savedThread_ = nullptr;
    std::thread::id loopThread_;
    PyObject *pendingType_ = nullptr, *pendingValue_ = nullptr, *pendingTraceback_ = nullptr;
    void stash();
    void raisePending();
};

} // namespace uwspy
