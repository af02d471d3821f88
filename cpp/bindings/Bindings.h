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

// Objects made once at import: enum members handed to handlers, the closed error.
struct Constants {
    PyObject *opCodes[16] = {};
    PyObject *sendStatus[3] = {};
    PyObject *closedError = nullptr;
};
extern Constants constants;

// Handlers of one ws() route, as Python callables (None when absent).
struct PyBehavior {
    py::object open, message, drain, close, upgrade, ping, pong;
};

class CoreApp {
public:
    CoreApp();
    ~CoreApp();

    uws::App app;
    std::vector<std::unique_ptr<PyBehavior>> behaviors;
    py::object errorHandler = py::none(); // (where: str, exc: BaseException) -> None
    py::object logHandler = py::none();   // (level: int, message: str) -> None

    // Called with a Python error set (a handler raised): logs it, or for BaseExceptions
    // such as KeyboardInterrupt stops the loop and re-raises from run().
    void reportError(const char *where);
    bool onLoopThread() const;
    bool running = false;

    void run();

private:
    PyThreadState *savedThread_ = nullptr;
    std::thread::id loopThread_;
    PyObject *pendingType_ = nullptr, *pendingValue_ = nullptr, *pendingTraceback_ = nullptr;
    void stash();
};

} // namespace uwspy
