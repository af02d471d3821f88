#include "PyBehavior.h"

#include <pybind11/stl.h>

#include "PyApp.h"
#include "PyHttp.h"
#include "PyRealtime.h"
#include "PyWebSocket.h"

namespace uwspy {

namespace {

py::object handlerOrNone(const py::dict &handlers, const char *name) {
    return handlers.contains(name) ? py::object(handlers[name]) : py::object(py::none());
}

PyObject *handleOf(uws::WebSocket *ws) { return static_cast<PyObject *>(ws->handle); }

Owned bytesOf(std::string_view data) { return {PyBytes_FromStringAndSize(data.data(), Py_ssize_t(data.size()))}; }

// A message as the handler sees it: str for text, bytes for binary. `errors` is the UTF-8
// decoder's policy (received text was validated already; dropped text may be anything).
Owned messageOf(std::string_view message, uws::OpCode opCode, const char *errors) {
    if (opCode != uws::OpCode::Text) return bytesOf(message);
    return {PyUnicode_DecodeUTF8(message.data(), Py_ssize_t(message.size()), errors)};
}

} // namespace

PyBehavior::PyBehavior(const py::dict &handlers)
    : open(handlerOrNone(handlers, "open")), message(handlerOrNone(handlers, "message")),
      drain(handlerOrNone(handlers, "drain")), close(handlerOrNone(handlers, "close")),
      upgrade(handlerOrNone(handlers, "upgrade")), ping(handlerOrNone(handlers, "ping")),
      pong(handlerOrNone(handlers, "pong")), subscription(handlerOrNone(handlers, "subscription")),
      dropped(handlerOrNone(handlers, "dropped")) {}

uws::WebSocketBehavior makeBehavior(PyApp *app, PyBehavior *handlers, const py::dict &options) {
    uws::WebSocketBehavior behavior;
    behavior.maxPayloadLength = options["max_payload_length"].cast<size_t>();
    behavior.idleTimeout = options["idle_timeout"].cast<unsigned>();
    behavior.maxBackpressure = options["max_backpressure"].cast<size_t>();
    behavior.closeOnBackpressureLimit = options["close_on_backpressure_limit"].cast<bool>();
    behavior.sendPingsAutomatically = options["send_pings_automatically"].cast<bool>();
    behavior.compression = options["compression"].cast<uint32_t>();
    behavior.compressionThreshold = options["compression_threshold"].cast<size_t>();
    behavior.maxLifetimeSeconds = options["max_lifetime_seconds"].cast<uint32_t>();
    behavior.resetIdleTimeoutOnSend = options["reset_idle_timeout_on_send"].cast<bool>();
    behavior.subprotocols = options["subprotocols"].cast<std::vector<std::string>>();

    // open always runs: it creates the Python handle when no upgrade handler made one.
    behavior.open = [app, handlers](uws::WebSocket *ws) {
        PyWebSocketObject *handle = static_cast<PyWebSocketObject *>(ws->handle);
        if (!handle) {
            handle = reinterpret_cast<PyWebSocketObject *>(newPyWebSocket(ws, nullptr, app));
            if (!handle) {
                app->reportError("open");
                ws->terminate();
                return;
            }
            ws->handle = handle;
        }
        handle->ws = ws;
        if (!handlers->open.is_none()) invoke(app, handlers->open.ptr(), "open", reinterpret_cast<PyObject *>(handle));
    };
    if (!handlers->message.is_none() && isRealtimeDispatch(handlers->message.ptr())) {
        // The realtime layer's native dispatcher: no message object made for it up front.
        behavior.message = [app, handlers](uws::WebSocket *ws, std::string_view message, uws::OpCode opCode) {
            if (!realtimeMessage(handlers->message.ptr(), handleOf(ws), message, opCode)) app->reportError("message");
        };
    } else if (!handlers->message.is_none()) {
        behavior.message = [app, handlers](uws::WebSocket *ws, std::string_view message, uws::OpCode opCode) {
            invoke(app, handlers->message.ptr(), "message", handleOf(ws), messageOf(message, opCode, nullptr),
                   constants.opCodes[int(opCode)]);
        };
    }
    if (!handlers->drain.is_none()) {
        behavior.drain = [app, handlers](uws::WebSocket *ws) { invoke(app, handlers->drain.ptr(), "drain", handleOf(ws)); };
    }
    if (!handlers->ping.is_none()) {
        behavior.ping = [app, handlers](uws::WebSocket *ws, std::string_view payload) {
            invoke(app, handlers->ping.ptr(), "ping", handleOf(ws), bytesOf(payload));
        };
    }
    if (!handlers->pong.is_none()) {
        behavior.pong = [app, handlers](uws::WebSocket *ws, std::string_view payload) {
            invoke(app, handlers->pong.ptr(), "pong", handleOf(ws), bytesOf(payload));
        };
    }
    if (!handlers->close.is_none()) {
        behavior.close = [app, handlers](uws::WebSocket *ws, int code, std::string_view reason) {
            invoke(app, handlers->close.ptr(), "close", handleOf(ws), Owned{PyLong_FromLong(code)}, bytesOf(reason));
        };
    }
    if (!handlers->subscription.is_none()) {
        behavior.subscription = [app, handlers](uws::WebSocket *ws, std::string_view topic, size_t count, size_t before) {
            Owned topicObject{PyUnicode_DecodeUTF8(topic.data(), Py_ssize_t(topic.size()), "surrogateescape")};
            invoke(app, handlers->subscription.ptr(), "subscription", handleOf(ws), topicObject,
                   Owned{PyLong_FromSize_t(count)}, Owned{PyLong_FromSize_t(before)});
        };
    }
    if (!handlers->dropped.is_none()) {
        behavior.dropped = [app, handlers](uws::WebSocket *ws, std::string_view message, uws::OpCode opCode) {
            invoke(app, handlers->dropped.ptr(), "dropped", handleOf(ws), messageOf(message, opCode, "replace"),
                   constants.opCodes[int(opCode)]);
        };
    }
    // The socket is done: the Python handle lets go of it and raises from now on.
    behavior.release = [](uws::WebSocket *ws) {
        PyObject *handle = handleOf(ws);
        if (!handle) return;
        reinterpret_cast<PyWebSocketObject *>(handle)->ws = nullptr;
        ws->handle = nullptr;
        Py_DECREF(handle);
    };
    if (!handlers->upgrade.is_none()) {
        behavior.upgrade = [app, handlers](uws::HttpConnection *connection, uws::HttpRequest *request,
                                           uws::WebSocketContext *context) {
            callRequestHandler(app, handlers->upgrade.ptr(), connection, request, context, "upgrade");
        };
    }
    return behavior;
}

} // namespace uwspy
