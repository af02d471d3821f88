// The native App as Python sees it (uws_py._core.App), and `invoke`, the one way the
// bindings call a Python handler from the loop.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <thread>
#include <vector>

#include "PyBehavior.h"
#include "uws/App.h"

namespace uwspy {

namespace py = pybind11;

class PyApp {
public:
    PyApp();
    ~PyApp();

    uws::App app;
    std::vector<std::unique_ptr<PyBehavior>> behaviors;
    std::vector<py::object> httpHandlers; // keeps route handlers alive
    py::object errorHandler = py::none(); // (where: str, exc: BaseException) -> None
    py::object logHandler = py::none();   // (level: int, message: str) -> None
    // None, or a dict {python level: bool}: the core does not build, nor pass to logHandler, a
    // line of a level mapped to False (app.log.enabled reads it). The Python side gives the
    // cache of the logger the handler logs to (logging.Logger._cache, which isEnabledFor fills
    // and setLevel clears in place), so a line is skipped exactly when that logger would drop
    // it. Setting logHandler resets it.
    py::object logLevels = py::none();

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

// An argument made for one call: a new reference (null when making it failed, with a Python
// error set) that invoke drops afterwards. Plain PyObject * arguments are borrowed.
struct Owned {
    PyObject *object;
};

namespace detail {
inline PyObject *pointer(PyObject *object) { return object; }
inline PyObject *pointer(Owned owned) { return owned.object; }
inline bool made(PyObject *) { return true; }
inline bool made(Owned owned) { return owned.object != nullptr; }
inline void drop(PyObject *) {}
inline void drop(Owned owned) { Py_XDECREF(owned.object); }
} // namespace detail

// Calls callable(args...) on the loop thread, with the GIL held. When an argument could not
// be made, or the call raised, the error goes to app->reportError(where).
template <typename... Args>
void invoke(PyApp *app, PyObject *callable, const char *where, Args... args) {
    PyObject *result = nullptr;
    if ((detail::made(args) && ...)) {
        if constexpr (sizeof...(Args) == 0) {
            result = PyObject_CallNoArgs(callable);
        } else {
            PyObject *argv[] = {detail::pointer(args)...};
            result = PyObject_Vectorcall(callable, argv, sizeof...(Args), nullptr);
        }
    }
    (detail::drop(args), ...);
    if (result) {
        Py_DECREF(result);
    } else {
        app->reportError(where);
    }
}

void registerApp(py::module_ &module);

} // namespace uwspy
