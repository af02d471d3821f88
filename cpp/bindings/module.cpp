// The module uws_py._core: registration only. The types live in PyApp.cpp, PyHttp.cpp and
// PyWebSocket.cpp, the realtime fast path in PyRealtime.cpp; the handler trampolines in PyBehavior.cpp.
#include <pybind11/pybind11.h>

#include "PyApp.h"
#include "PyHttp.h"
#include "PyRealtime.h"
#include "PyWebSocket.h"

namespace py = pybind11;
using namespace uwspy;

PYBIND11_MODULE(_core, m) {
    m.doc() = "The native core of uws-py. Private: import from uws_py.";

    py::module_ enumModule = py::module_::import("enum");
    py::dict opCodes;
    opCodes["CONTINUATION"] = 0;
    opCodes["TEXT"] = 1;
    opCodes["BINARY"] = 2;
    opCodes["CLOSE"] = 8;
    opCodes["PING"] = 9;
    opCodes["PONG"] = 10;
    py::object opCode = enumModule.attr("IntEnum")("OpCode", opCodes, py::arg("module") = "uws_py");
    py::dict statuses;
    statuses["SUCCESS"] = 0;
    statuses["BACKPRESSURE"] = 1;
    statuses["DROPPED"] = 2;
    py::object sendStatus = enumModule.attr("IntEnum")("SendStatus", statuses, py::arg("module") = "uws_py");
    m.attr("OpCode") = opCode;
    m.attr("SendStatus") = sendStatus;
    for (int code : {0, 1, 2, 8, 9, 10}) constants.opCodes[code] = opCode(code).release().ptr();
    for (int status = 0; status < 3; status++) constants.sendStatus[status] = sendStatus(status).release().ptr();

    constants.closedError = PyErr_NewExceptionWithDoc(
        "uws_py.WebSocketClosedError", "Raised when a WebSocket is used after its close handler ran.",
        PyExc_RuntimeError, nullptr);
    m.attr("WebSocketClosedError") = py::handle(constants.closedError);

    if (!initWebSocketType(m)) throw py::error_already_set();
    if (!initRealtimeDispatchType(m)) throw py::error_already_set();
    registerHttp(m);
    registerApp(m);
}
