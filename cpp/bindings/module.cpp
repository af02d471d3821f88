// The module uws_py._core: App, HttpResponse, HttpRequest and the enums, on pybind11.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <system_error>

#include "Bindings.h"

namespace uwspy {

namespace {

// Owns a strong reference; safe to copy and destroy only with the GIL held, which holds
// for every place the loop runs or destroys deferred callbacks.
class PyRef {
public:
    explicit PyRef(PyObject *object) : object_(object) { Py_XINCREF(object_); }
    PyRef(const PyRef &other) : object_(other.object_) { Py_XINCREF(object_); }
    PyRef(PyRef &&other) noexcept : object_(other.object_) { other.object_ = nullptr; }
    ~PyRef() { Py_XDECREF(object_); }
    PyRef &operator=(const PyRef &) = delete;
    PyObject *get() const { return object_; }

private:
    PyObject *object_;
};

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

struct PyHttpResponse {
    uws::HttpConnection *connection;
    CoreApp *app;
    py::object aborted = py::none();
};

py::str latin1(std::string_view text) {
    PyObject *object = PyUnicode_DecodeLatin1(text.data(), Py_ssize_t(text.size()), nullptr);
    if (!object) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(object);
}

std::string lowercase(std::string text) {
    for (char &c : text) {
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
    }
    return text;
}

// Bytes of a str/bytes argument for HTTP text (headers, bodies).
std::string textArgument(const py::handle &value) {
    if (PyUnicode_Check(value.ptr())) return value.cast<std::string>();
    if (PyBytes_Check(value.ptr())) return std::string(PyBytes_AS_STRING(value.ptr()), size_t(PyBytes_GET_SIZE(value.ptr())));
    if (value.is_none()) return {};
    throw py::type_error("expected str or bytes");
}

PyObject *callHandler(PyObject *callable, PyObject *const *args, size_t count) {
    return PyObject_Vectorcall(callable, args, count, nullptr);
}

} // namespace

CoreApp::CoreApp() {
    app.releaseHttpHandle = [](void *handle) {
        PyObject *object = static_cast<PyObject *>(handle);
        PyHttpResponse *response = py::handle(object).cast<PyHttpResponse *>();
        response->connection = nullptr;
        response->aborted = py::none();
        Py_DECREF(object);
    };
    app.log = [this](uws::LogLevel level, const std::string &message) {
        static const int pythonLevels[] = {10, 20, 30, 40};
        if (logHandler.is_none()) return;
        PyObject *text = PyUnicode_DecodeUTF8(message.data(), Py_ssize_t(message.size()), "replace");
        PyObject *levelObject = PyLong_FromLong(pythonLevels[int(level)]);
        PyObject *args[2] = {levelObject, text};
        PyObject *result = text && levelObject ? callHandler(logHandler.ptr(), args, 2) : nullptr;
        Py_XDECREF(text);
        Py_XDECREF(levelObject);
        if (!result) PyErr_Clear();
        Py_XDECREF(result);
    };
}

CoreApp::~CoreApp() {
    Py_XDECREF(pendingType_);
    Py_XDECREF(pendingValue_);
    Py_XDECREF(pendingTraceback_);
}

bool CoreApp::onLoopThread() const {
    return (!running && !embedded) || std::this_thread::get_id() == loopThread_;
}

void CoreApp::raisePending() {
    if (!pendingType_) return;
    PyErr_Restore(pendingType_, pendingValue_, pendingTraceback_);
    pendingType_ = pendingValue_ = pendingTraceback_ = nullptr;
    throw py::error_already_set();
}

void CoreApp::setEmbedded(bool on) {
    if (on && running) throw std::runtime_error("App.run() is already running");
    embedded = on;
    if (on) {
        loopThread_ = std::this_thread::get_id();
        app.loop().clearStop();
    }
}

bool CoreApp::runOnce() {
    if (!embedded) throw std::runtime_error("run_once() needs embedded mode (App.serve())");
    app.loop().runOnce(0);
    raisePending();
    return app.loop().stopRequested();
}

void CoreApp::stash() {
    if (pendingType_) {
        PyErr_Clear(); // keep the first one
        return;
    }
    PyErr_Fetch(&pendingType_, &pendingValue_, &pendingTraceback_);
    app.loop().stop();
}

void CoreApp::reportError(const char *where) {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        stash(); // KeyboardInterrupt, SystemExit: stop the server and surface from run()
        return;
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback) PyException_SetTraceback(value, traceback);
    if (!errorHandler.is_none()) {
        PyObject *whereObject = PyUnicode_FromString(where);
        PyObject *args[2] = {whereObject, value};
        PyObject *result = callHandler(errorHandler.ptr(), args, 2);
        Py_XDECREF(whereObject);
        if (result) {
            Py_DECREF(result);
        } else if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            stash();
        } else {
            PyErr_Print();
        }
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        return;
    }
    PyErr_Restore(type, value, traceback);
    PyErr_Print();
}

void CoreApp::run() {
    if (running || embedded) throw std::runtime_error("the App is already running");
    running = true;
    loopThread_ = std::this_thread::get_id();
    uws::Loop &loop = app.loop();
    loop.beforeWait = [this] { savedThread_ = PyEval_SaveThread(); };
    loop.afterWait = [this] {
        PyEval_RestoreThread(savedThread_);
        savedThread_ = nullptr;
        if (PyErr_CheckSignals() != 0) stash();
    };
    try {
        app.run();
    } catch (...) {
        loop.beforeWait = nullptr;
        loop.afterWait = nullptr;
        running = false;
        throw;
    }
    loop.beforeWait = nullptr;
    loop.afterWait = nullptr;
    running = false;
    raisePending();
}

namespace {

// Calls handler(res, req[, context]) for a request; req is invalid once it returns. A handler
// that raises gets its request answered with 500 when it had not answered yet.
void callRequestHandler(CoreApp *self, PyObject *handler, uws::HttpConnection *connection, uws::HttpRequest *request,
                        uws::WebSocketContext *context, const char *where) {
    py::object response = py::cast(new PyHttpResponse{connection, self}, py::return_value_policy::take_ownership);
    connection->handle = response.inc_ref().ptr();
    py::object requestObject = py::cast(PyHttpRequest{request});
    py::object contextObject = context ? py::cast(PyWebSocketContext{context}) : py::object();
    PyObject *args[3] = {response.ptr(), requestObject.ptr(), contextObject.ptr()};
    PyObject *result = callHandler(handler, args, context ? 3 : 2);
    requestObject.cast<PyHttpRequest *>()->request = nullptr;
    if (!result) {
        self->reportError(where);
        PyHttpResponse *state = response.cast<PyHttpResponse *>();
        if (state->connection) state->connection->reject("500 Internal Server Error", "the handler raised");
        return;
    }
    Py_DECREF(result);
}

uws::WebSocketBehavior makeBehavior(CoreApp *self, PyBehavior *handlers, const py::dict &options) {
    uws::WebSocketBehavior behavior;
    behavior.maxPayloadLength = options["max_payload_length"].cast<size_t>();
    behavior.idleTimeout = options["idle_timeout"].cast<unsigned>();
    behavior.maxBackpressure = options["max_backpressure"].cast<size_t>();
    behavior.closeOnBackpressureLimit = options["close_on_backpressure_limit"].cast<bool>();
    behavior.sendPingsAutomatically = options["send_pings_automatically"].cast<bool>();
    behavior.compression = options["compression"].cast<uint32_t>();
    behavior.compressionThreshold = options["compression_threshold"].cast<size_t>();

    // open always runs: it creates the Python handle when no upgrade handler made one.
    behavior.open = [self, handlers](uws::WebSocket *ws) {
        PyWebSocketObject *handle = static_cast<PyWebSocketObject *>(ws->handle);
        if (!handle) {
            handle = reinterpret_cast<PyWebSocketObject *>(newPyWebSocket(ws, nullptr, self));
            if (!handle) {
                self->reportError("open");
                ws->terminate();
                return;
            }
            ws->handle = handle;
        }
        handle->ws = ws;
        if (handlers->open.is_none()) return;
        PyObject *args[1] = {reinterpret_cast<PyObject *>(handle)};
        PyObject *result = callHandler(handlers->open.ptr(), args, 1);
        if (!result) self->reportError("open");
        Py_XDECREF(result);
    };
    if (!handlers->message.is_none()) {
        behavior.message = [self, handlers](uws::WebSocket *ws, std::string_view message, uws::OpCode opCode) {
            PyObject *data = opCode == uws::OpCode::Text
                                 ? PyUnicode_DecodeUTF8(message.data(), Py_ssize_t(message.size()), nullptr)
                                 : PyBytes_FromStringAndSize(message.data(), Py_ssize_t(message.size()));
            if (!data) {
                self->reportError("message");
                return;
            }
            PyObject *args[3] = {static_cast<PyObject *>(ws->handle), data, constants.opCodes[int(opCode)]};
            PyObject *result = callHandler(handlers->message.ptr(), args, 3);
            Py_DECREF(data);
            if (!result) self->reportError("message");
            Py_XDECREF(result);
        };
    }
    if (!handlers->drain.is_none()) {
        behavior.drain = [self, handlers](uws::WebSocket *ws) {
            PyObject *args[1] = {static_cast<PyObject *>(ws->handle)};
            PyObject *result = callHandler(handlers->drain.ptr(), args, 1);
            if (!result) self->reportError("drain");
            Py_XDECREF(result);
        };
    }
    auto controlHandler = [self](py::object &callable, const char *where) {
        return [self, &callable, where](uws::WebSocket *ws, std::string_view payload) {
            PyObject *data = PyBytes_FromStringAndSize(payload.data(), Py_ssize_t(payload.size()));
            PyObject *args[2] = {static_cast<PyObject *>(ws->handle), data};
            PyObject *result = data ? callHandler(callable.ptr(), args, 2) : nullptr;
            Py_XDECREF(data);
            if (!result) self->reportError(where);
            Py_XDECREF(result);
        };
    };
    if (!handlers->ping.is_none()) behavior.ping = controlHandler(handlers->ping, "ping");
    if (!handlers->pong.is_none()) behavior.pong = controlHandler(handlers->pong, "pong");
    if (!handlers->close.is_none()) {
        behavior.close = [self, handlers](uws::WebSocket *ws, int code, std::string_view reason) {
            PyObject *codeObject = PyLong_FromLong(code);
            PyObject *reasonObject = PyBytes_FromStringAndSize(reason.data(), Py_ssize_t(reason.size()));
            PyObject *args[3] = {static_cast<PyObject *>(ws->handle), codeObject, reasonObject};
            PyObject *result = codeObject && reasonObject ? callHandler(handlers->close.ptr(), args, 3) : nullptr;
            Py_XDECREF(codeObject);
            Py_XDECREF(reasonObject);
            if (!result) self->reportError("close");
            Py_XDECREF(result);
        };
    }
    if (!handlers->subscription.is_none()) {
        behavior.subscription = [self, handlers](uws::WebSocket *ws, std::string_view topic, size_t count, size_t before) {
            PyObject *topicObject = PyUnicode_DecodeUTF8(topic.data(), Py_ssize_t(topic.size()), "surrogateescape");
            PyObject *countObject = PyLong_FromSize_t(count);
            PyObject *beforeObject = PyLong_FromSize_t(before);
            PyObject *args[4] = {static_cast<PyObject *>(ws->handle), topicObject, countObject, beforeObject};
            PyObject *result = topicObject && countObject && beforeObject
                                   ? callHandler(handlers->subscription.ptr(), args, 4) : nullptr;
            Py_XDECREF(topicObject);
            Py_XDECREF(countObject);
            Py_XDECREF(beforeObject);
            if (!result) self->reportError("subscription");
            Py_XDECREF(result);
        };
    }
    if (!handlers->dropped.is_none()) {
        behavior.dropped = [self, handlers](uws::WebSocket *ws, std::string_view message, uws::OpCode opCode) {
            PyObject *data = opCode == uws::OpCode::Text
                                 ? PyUnicode_DecodeUTF8(message.data(), Py_ssize_t(message.size()), "replace")
                                 : PyBytes_FromStringAndSize(message.data(), Py_ssize_t(message.size()));
            PyObject *args[3] = {static_cast<PyObject *>(ws->handle), data, constants.opCodes[int(opCode)]};
            PyObject *result = data ? callHandler(handlers->dropped.ptr(), args, 3) : nullptr;
            Py_XDECREF(data);
            if (!result) self->reportError("dropped");
            Py_XDECREF(result);
        };
    }
    // The socket is done: the Python handle lets go of it and raises from now on.
    behavior.release = [](uws::WebSocket *ws) {
        PyObject *handle = static_cast<PyObject *>(ws->handle);
        if (!handle) return;
        reinterpret_cast<PyWebSocketObject *>(handle)->ws = nullptr;
        ws->handle = nullptr;
        Py_DECREF(handle);
    };
    if (!handlers->upgrade.is_none()) {
        behavior.upgrade = [self, handlers](uws::HttpConnection *connection, uws::HttpRequest *request,
                                            uws::WebSocketContext *context) {
            callRequestHandler(self, handlers->upgrade.ptr(), connection, request, context, "upgrade");
        };
    }
    return behavior;
}

// Topic and message views, and the opcode (text for str, binary otherwise, unless given).
uws::OpCode loadPublishArguments(const py::object &topic, const py::object &message, const py::object &opcode,
                                 Payload &topicBytes, Payload &payload, const char *function) {
    bool isText, topicIsText;
    if (!topicBytes.load(topic.ptr(), topicIsText) || !payload.load(message.ptr(), isText)) {
        throw py::error_already_set();
    }
    uws::OpCode opCode = opcode.is_none() ? (isText ? uws::OpCode::Text : uws::OpCode::Binary)
                                          : uws::OpCode(opcode.cast<int>());
    if (opCode != uws::OpCode::Text && opCode != uws::OpCode::Binary) {
        throw py::value_error(std::string(function) + "() opcode must be TEXT or BINARY");
    }
    return opCode;
}

void throwOSError(const std::system_error &error) {
    PyErr_SetObject(PyExc_OSError, py::make_tuple(error.code().value(), error.what()).ptr());
    throw py::error_already_set();
}

} // namespace

} // namespace uwspy

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

    py::class_<PyWebSocketContext>(m, "WebSocketContext", "Opaque: the route an upgrade belongs to.");

    py::class_<PyHttpRequest>(m, "HttpRequest", "The request head, valid only during the handler it is passed to.")
        .def("get_header", [](const PyHttpRequest &self, const std::string &name) -> py::object {
            std::string lower = lowercase(name);
            if (!self.get().hasHeader(lower)) return py::none();
            return latin1(self.get().combinedHeader(lower));
        }, py::arg("name"), "A header's value (name case-insensitive; repeated lines joined by ', '), or None.")
        .def("get_method", [](const PyHttpRequest &self) { return lowercase(std::string(self.get().method)); },
             "The method in lowercase, as uWebSockets.js does ('get').")
        .def("get_case_sensitive_method", [](const PyHttpRequest &self) { return latin1(self.get().method); })
        .def("get_url", [](const PyHttpRequest &self) { return latin1(self.get().path); }, "The path, without the query.")
        .def("get_full_url", [](const PyHttpRequest &self) { return latin1(self.get().target); })
        .def("get_query", [](const PyHttpRequest &self, py::object key) -> py::object {
            std::string_view query = self.get().query;
            if (key.is_none()) return latin1(query);
            std::string value;
            if (!uws::findQueryValue(query, key.cast<std::string>(), value)) return py::none();
            PyObject *text = PyUnicode_DecodeUTF8(value.data(), Py_ssize_t(value.size()), "replace");
            return py::reinterpret_steal<py::object>(text);
        }, py::arg("key") = py::none(), "The raw query string, or one decoded value (None if absent).")
        .def("get_parameter", [](const PyHttpRequest &self, py::object which) -> py::object {
            const uws::HttpRequest &request = self.get();
            if (PyLong_Check(which.ptr())) {
                size_t index = which.cast<size_t>();
                if (index >= request.parameters.size()) return py::none();
                return latin1(request.parameters[index]);
            }
            std::string name = which.cast<std::string>();
            for (size_t i = 0; i < request.parameterNames.size(); i++) {
                if (request.parameterNames[i] == name) return latin1(request.parameters[i]);
            }
            return py::none();
        }, py::arg("index_or_name"))
        .def("_snapshot", [](const PyHttpRequest &self) {
            const uws::HttpRequest &request = self.get();
            py::dict d;
            d["method"] = latin1(request.method);
            d["url"] = latin1(request.path);
            d["full_url"] = latin1(request.target);
            d["query"] = latin1(request.query);
            py::list headers;
            for (const uws::HttpHeader &h : request.headers) headers.append(py::make_tuple(latin1(h.name), latin1(h.value)));
            d["headers"] = headers;
            py::list parameters;
            for (size_t i = 0; i < request.parameters.size(); i++) {
                parameters.append(py::make_tuple(py::str(request.parameterNames[i]), latin1(request.parameters[i])));
            }
            d["parameters"] = parameters;
            return d;
        }, "Everything the request holds, as plain values (for handlers that outlive it).")
        .def("for_each_header", [](const PyHttpRequest &self, py::function callback) {
            for (const uws::HttpHeader &h : self.get().headers) callback(latin1(h.name), latin1(h.value));
        });

    py::class_<PyHttpResponse>(m, "HttpResponse", "Answers a request; for an upgrade, accepts or refuses it.")
        .def("write_status", [](py::object self, py::object status) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (r.connection) r.connection->writeStatus(textArgument(status));
            return self;
        }, py::arg("status"))
        .def("write_header", [](py::object self, py::object name, py::object value) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (r.connection) r.connection->writeHeader(textArgument(name), textArgument(value));
            return self;
        }, py::arg("name"), py::arg("value"))
        .def("end", [](py::object self, py::object body, bool closeConnection) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (r.connection) r.connection->end(textArgument(body), closeConnection);
            return self;
        }, py::arg("body") = py::str(""), py::arg("close_connection") = false)
        .def("end_without_body", [](py::object self) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (r.connection) r.connection->end({});
            return self;
        })
        .def("upgrade", [](PyHttpResponse &self, py::object userData, py::object key, py::object protocol,
                           py::object extensions, PyWebSocketContext &context) -> bool {
            if (!self.connection) return false; // the client left, or it was answered already
            PyObject *handle = newPyWebSocket(nullptr, userData.ptr(), self.app);
            if (!handle) throw py::error_already_set();
            uws::WebSocket *ws = self.connection->upgrade(context.context, textArgument(key), textArgument(protocol),
                                                          textArgument(extensions), handle);
            if (!ws) Py_DECREF(handle);
            return ws != nullptr;
        }, py::arg("user_data"), py::arg("key"), py::arg("protocol"), py::arg("extensions"), py::arg("context"),
           "Accepts the upgrade; a harmless no-op returning False when the client is gone.")
        .def("on_aborted", [](py::object self, py::object callback) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (r.connection) {
                PyRef held(callback.ptr());
                CoreApp *app = r.app;
                r.connection->onAborted = [held, app] {
                    PyObject *result = PyObject_CallNoArgs(held.get());
                    if (!result) app->reportError("on_aborted");
                    Py_XDECREF(result);
                };
            }
            return self;
        }, py::arg("callback"), "callback() runs if the client goes away before the response ends.")
        .def("on_data", [](py::object self, py::object callback) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (r.connection) {
                PyRef held(callback.ptr());
                CoreApp *app = r.app;
                r.connection->onBody = [held, app](std::string_view chunk, bool last) {
                    PyObject *data = PyBytes_FromStringAndSize(chunk.data(), Py_ssize_t(chunk.size()));
                    PyObject *args[2] = {data, last ? Py_True : Py_False};
                    PyObject *result = data ? callHandler(held.get(), args, 2) : nullptr;
                    Py_XDECREF(data);
                    if (!result) app->reportError("on_data");
                    Py_XDECREF(result);
                };
            }
            return self;
        }, py::arg("callback"), "callback(chunk: bytes, is_last: bool) receives the request body.")
        .def("write", [](py::object self, py::object chunk) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (r.connection) r.connection->write(textArgument(chunk));
            return self;
        }, py::arg("chunk"), "Streams a body chunk (chunked transfer encoding).")
        .def("cork", [](py::object self, py::object fn) -> py::object {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (!r.connection) return fn();
            uws::HttpConnection *connection = r.connection;
            bool alreadyCorked = connection->loop->corked == connection;
            connection->cork();
            py::object result = fn();
            if (!alreadyCorked && !connection->isClosed()) connection->flushCork();
            return result;
        }, py::arg("fn"), "Runs fn with what it writes gathered into one write.")
        .def("get_remote_address", [](const PyHttpResponse &self) {
            return self.connection ? self.connection->remoteAddress() : std::string();
        })
        .def_property_readonly("aborted", [](const PyHttpResponse &self) { return self.connection == nullptr; },
                               "True once the connection is gone or answered.");

    py::class_<CoreApp>(m, "App", "The native server. Use uws_py.App, which wraps it.")
        .def(py::init<>())
        .def("use_tls", [](CoreApp &self, const std::string &certFile, const std::string &keyFile,
                           const std::string &passphrase, const std::string &caFile) {
            uws::TlsOptions options{certFile, keyFile, passphrase, caFile};
            try {
                self.app.useTls(options);
            } catch (const std::runtime_error &error) {
                throw py::value_error(error.what());
            }
        }, py::arg("cert_file"), py::arg("key_file"), py::arg("passphrase") = "", py::arg("ca_file") = "")
        .def("ws", [](CoreApp &self, const std::string &pattern, py::dict handlers, py::dict options) {
            auto behavior = std::make_unique<PyBehavior>();
            auto take = [&](const char *name) { return handlers.contains(name) ? py::object(handlers[name]) : py::object(py::none()); };
            behavior->open = take("open");
            behavior->message = take("message");
            behavior->drain = take("drain");
            behavior->close = take("close");
            behavior->upgrade = take("upgrade");
            behavior->ping = take("ping");
            behavior->pong = take("pong");
            behavior->subscription = take("subscription");
            behavior->dropped = take("dropped");
            self.app.ws(pattern, makeBehavior(&self, behavior.get(), options));
            self.behaviors.push_back(std::move(behavior));
        }, py::arg("pattern"), py::arg("handlers"), py::arg("options"))
        .def("listen", [](CoreApp &self, const std::string &host, int port, int backlog, bool reusePort) {
            try {
                return self.app.listen(host, port, backlog, reusePort);
            } catch (const std::system_error &error) {
                throwOSError(error);
                return -1;
            }
        }, py::arg("host"), py::arg("port"), py::arg("backlog") = 512, py::arg("reuse_port") = true)
        .def("route", [](CoreApp &self, std::string method, const std::string &pattern, py::object handler) {
            self.httpHandlers.push_back(handler);
            PyObject *callable = handler.ptr();
            CoreApp *app = &self;
            self.app.route(std::move(method), pattern, [app, callable](uws::HttpConnection *connection, uws::HttpRequest *request) {
                callRequestHandler(app, callable, connection, request, nullptr, "http");
            });
        }, py::arg("method"), py::arg("pattern"), py::arg("handler"))
        .def_property("max_body_size", [](CoreApp &self) { return self.app.maxBodySize; },
                      [](CoreApp &self, uint64_t bytes) { self.app.maxBodySize = bytes; })
        .def("run", &CoreApp::run)
        .def("run_once", &CoreApp::runOnce)
        .def_property("embedded", [](CoreApp &self) { return self.embedded; }, &CoreApp::setEmbedded)
        .def_property_readonly("fd", [](CoreApp &self) { return self.app.loop().epollFd(); })
        .def("next_timer_delay_ms", [](CoreApp &self) { return self.app.loop().nextTimerDelayMs(); })
        .def("publish_threadsafe", [](CoreApp &self, py::object topic, py::object message, py::object opcode, bool compress) {
            Payload topicBytes, payload;
            uws::OpCode opCode = loadPublishArguments(topic, message, opcode, topicBytes, payload, "publish_threadsafe");
            // Copies, so the loop thread owns what it sends; no Python object crosses over.
            std::string topicCopy(topicBytes.view), messageCopy(payload.view);
            uws::App *app = &self.app;
            self.app.loop().defer([app, topicCopy = std::move(topicCopy), messageCopy = std::move(messageCopy), opCode, compress] {
                app->publish(topicCopy, messageCopy, opCode, compress);
            });
        }, py::arg("topic"), py::arg("message"), py::arg("opcode") = py::none(), py::arg("compress") = false)
        .def("close", [](CoreApp &self, int code, const std::string &reason, unsigned timeout) {
            if (self.onLoopThread()) {
                self.app.close(uint16_t(code), reason, timeout);
                if (!self.running && !self.embedded) self.app.loop().stop();
                if (self.embedded) self.app.loop().wakeup(); // serve() must see it now
            } else {
                CoreApp *app = &self;
                self.app.loop().defer([app, code, reason, timeout] { app->app.close(uint16_t(code), reason, timeout); });
            }
        }, py::arg("code") = 1001, py::arg("reason") = "server shutting down", py::arg("timeout") = 5)
        .def("publish", [](CoreApp &self, py::object topic, py::object message, py::object opcode, bool compress) {
            Payload topicBytes, payload;
            uws::OpCode opCode = loadPublishArguments(topic, message, opcode, topicBytes, payload, "publish");
            return self.app.publish(topicBytes.view, payload.view, opCode, compress);
        }, py::arg("topic"), py::arg("message"), py::arg("opcode") = py::none(), py::arg("compress") = false)
        .def("num_subscribers", [](CoreApp &self, py::object topic) {
            return self.app.numSubscribers(textArgument(topic));
        }, py::arg("topic"))
        .def("set_timeout", [](CoreApp &self, double seconds, py::function fn) {
            PyRef callable(fn.ptr());
            CoreApp *app = &self;
            uint64_t delayMs = seconds <= 0 ? 0 : uint64_t(seconds * 1000.0 + 0.5);
            return self.app.loop().addTimer(delayMs, [callable, app] {
                PyObject *result = PyObject_CallNoArgs(callable.get());
                if (!result) app->reportError("timer");
                Py_XDECREF(result);
            });
        }, py::arg("seconds"), py::arg("fn"), "Runs fn once on the loop thread after seconds; loop thread only.")
        .def("clear_timeout", [](CoreApp &self, uint64_t id) { self.app.loop().cancelTimer(id); }, py::arg("timer_id"))
        .def("defer", [](CoreApp &self, py::function fn) {
            PyRef callable(fn.ptr());
            CoreApp *app = &self;
            self.app.loop().defer([callable, app] {
                PyObject *result = PyObject_CallNoArgs(callable.get());
                if (!result) app->reportError("defer");
                Py_XDECREF(result);
            });
        }, py::arg("fn"), "Runs fn on the loop thread; callable from any thread.")
        .def("stats", [](CoreApp &self) {
            const uws::AppStats &s = self.app.stats;
            py::dict d;
            d["messages_in"] = s.messagesIn.get();
            d["messages_out"] = s.messagesOut.get();
            d["bytes_in"] = s.bytesIn.get();
            d["bytes_out"] = s.bytesOut.get();
            d["connections_opened"] = s.connectionsOpened.get();
            d["connections_closed"] = s.connectionsClosed.get();
            d["open_connections"] = s.openConnections.get();
            d["publishes"] = s.publishes.get();
            d["deliveries"] = s.deliveries.get();
            d["drops"] = s.drops.get();
            d["backpressure_events"] = s.backpressureEvents.get();
            d["protocol_errors"] = s.protocolErrors.get();
            d["http_rejections"] = s.httpRejections.get();
            d["idle_timeouts"] = s.idleTimeouts.get();
            d["header_timeouts"] = s.headerTimeouts.get();
            return d;
        })
        .def_property("error_handler", [](CoreApp &self) { return self.errorHandler; },
                      [](CoreApp &self, py::object handler) { self.errorHandler = handler; })
        .def_property("log_handler", [](CoreApp &self) { return self.logHandler; },
                      [](CoreApp &self, py::object handler) { self.logHandler = handler; })
        .def_property("header_timeout", [](CoreApp &self) { return self.app.headerTimeout; },
                      [](CoreApp &self, unsigned seconds) { self.app.headerTimeout = seconds; })
        .def_property_readonly("running", [](CoreApp &self) { return self.running; });
}
