// The handlers of one ws() route as Python callables, and the uws::WebSocketBehavior whose
// trampolines call them.
#pragma once

#include <pybind11/pybind11.h>

#include "uws/WebSocketBehavior.h"

namespace uwspy {

namespace py = pybind11;

class PyApp;

// None where the route has no such handler.
struct PyBehavior {
    py::object open, message, drain, close, upgrade, ping, pong, subscription, dropped;

    // From the dict App.ws() was given; absent keys are None.
    explicit PyBehavior(const py::dict &handlers);
};

// Options from the dict App.ws() was given (every key present: the Python layer fills in
// the defaults); handlers stay owned by the caller and must outlive the route.
uws::WebSocketBehavior makeBehavior(PyApp *app, PyBehavior *handlers, const py::dict &options);

} // namespace uwspy
