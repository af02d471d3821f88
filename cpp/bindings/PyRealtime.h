// uws_py._core.RealtimeDispatch: the realtime route's message handler for the common case,
// in C. It does what Dispatcher.on_message (python/uws_py/realtime/dispatch.py) does for a
// plain sync handler — token, size check, decode, route lookup, handler call, reply with the
// request's id, encode, send — and hands every other case (errors, built-ins, schemas,
// coroutines, batching) to that Python dispatcher, which stays the one statement of the rules.
#pragma once

#include <pybind11/pybind11.h>

#include <string_view>

#include "uws/WebSocketParser.h"

namespace uwspy {

namespace py = pybind11;

extern PyTypeObject RealtimeDispatchType;
bool initRealtimeDispatchType(py::module_ &module);

inline bool isRealtimeDispatch(PyObject *object) { return Py_TYPE(object) == &RealtimeDispatchType; }

// One message from the core for `ws` (a PyWebSocketObject); false with a Python error set.
bool realtimeMessage(PyObject *dispatch, PyObject *ws, std::string_view message, uws::OpCode opCode);

} // namespace uwspy
