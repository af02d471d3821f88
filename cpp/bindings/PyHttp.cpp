#include "PyHttp.h"

#include <string>

#include "Arguments.h"
#include "PyApp.h"
#include "PyWebSocket.h"
#include "uws/WebSocket.h"

namespace uwspy {

PyObject *httpClosedError = nullptr;

namespace {

// ValueError naming what was refused: "write_header: header name 'X-A\\r' contains CR at
// index 3 (refused: CR, LF and NUL would split the response)".
[[noreturn]] void refuseField(const char *function, const char *what, std::string_view text,
                              const uws::FieldProblem &problem) {
    std::string shown(text.substr(0, 80));
    py::object quoted = py::repr(latin1(shown));
    std::string message = std::string(function) + ": " + what + " " + quoted.cast<std::string>() +
                          (text.size() > 80 ? "..." : "") + " " + problem.reason + " at index " +
                          std::to_string(problem.index);
    message += problem.reason[0] == 'c' ? " (refused: CR, LF and NUL would split the response)"
                                        : " (a header name is a token: letters, digits and !#$%&'*+-.^_`|~)";
    throw py::value_error(message);
}

std::string lowercase(std::string text) {
    for (char &c : text) {
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
    }
    return text;
}

} // namespace

void callRequestHandler(PyApp *app, PyObject *handler, uws::HttpConnection *connection, uws::HttpRequest *request,
                        uws::WebSocketContext *context, const char *where) {
    py::object response = py::cast(new PyHttpResponse{connection, app}, py::return_value_policy::take_ownership);
    connection->handle = response.inc_ref().ptr();
    py::object requestObject = py::cast(PyHttpRequest{request});
    py::object contextObject = context ? py::cast(PyWebSocketContext{context}) : py::object();
    PyObject *args[3] = {response.ptr(), requestObject.ptr(), contextObject.ptr()};
    PyObject *result = PyObject_Vectorcall(handler, args, context ? 3 : 2, nullptr);
    requestObject.cast<PyHttpRequest *>()->request = nullptr;
    if (!result) {
        app->reportError(where);
        PyHttpResponse *state = response.cast<PyHttpResponse *>();
        if (state->connection) state->connection->reject("500 Internal Server Error", "the handler raised");
        return;
    }
    Py_DECREF(result);
}

void releaseResponseHandle(void *handle) {
    PyObject *object = static_cast<PyObject *>(handle);
    PyHttpResponse *response = py::handle(object).cast<PyHttpResponse *>();
    response->connection = nullptr;
    response->aborted = py::none();
    Py_DECREF(object);
}

void registerHttp(py::module_ &module) {
    httpClosedError = PyErr_NewExceptionWithDoc(
        "uws_py.HttpClosedError",
        "Raised when an HttpRequest or HttpResponse is used after its request ended (the HTTP twin of "
        "WebSocketClosedError).",
        PyExc_RuntimeError, nullptr);
    if (!httpClosedError) throw py::error_already_set();
    module.attr("HttpClosedError") = py::handle(httpClosedError);
    py::class_<PyWebSocketContext>(module, "WebSocketContext", "Opaque: the route an upgrade belongs to.");

    py::class_<PyHttpRequest>(module, "HttpRequest", "The request head, valid only during the handler it is passed to.")
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

    py::class_<PyHttpResponse>(module, "HttpResponse", "Answers a request; for an upgrade, accepts or refuses it.")
        .def("write_status", [](py::object self, py::object status) {
            uws::HttpConnection &connection = self.cast<PyHttpResponse &>().get();
            std::string text = textArgument(status);
            if (uws::FieldProblem problem = uws::checkResponseFieldText(text)) {
                refuseField("write_status", "status", text, problem);
            }
            connection.writeStatus(text);
            return self;
        }, py::arg("status"))
        .def("write_header", [](py::object self, py::object name, py::object value) {
            uws::HttpConnection &connection = self.cast<PyHttpResponse &>().get();
            std::string nameText = textArgument(name), valueText = textArgument(value);
            if (uws::FieldProblem problem = uws::checkResponseHeaderName(nameText)) {
                refuseField("write_header", "header name", nameText, problem);
            }
            if (uws::FieldProblem problem = uws::checkResponseFieldText(valueText)) {
                std::string what = "value of header " + py::repr(latin1(nameText)).cast<std::string>();
                refuseField("write_header", what.c_str(), valueText, problem);
            }
            connection.writeHeader(nameText, valueText);
            return self;
        }, py::arg("name"), py::arg("value"))
        .def("end", [](py::object self, py::object body, bool closeConnection) {
            uws::HttpConnection &connection = self.cast<PyHttpResponse &>().get();
            Payload payload;
            if (!body.is_none() && !payload.load(body.ptr())) throw py::error_already_set();
            if (connection.isSized() && payload.view.size() > connection.totalSize() - connection.writeOffset()) {
                throw py::value_error("end() body goes past try_end()'s total_size: " + std::to_string(payload.view.size()) +
                                      " bytes at offset " + std::to_string(connection.writeOffset()) + " of " +
                                      std::to_string(connection.totalSize()));
            }
            connection.end(payload.view, closeConnection);
            return self;
        }, py::arg("body") = py::str(""), py::arg("close_connection") = false)
        .def("end_without_body", [](py::object self) {
            self.cast<PyHttpResponse &>().get().end({});
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
            PyRef held(callback.ptr());
            PyApp *app = r.app;
            r.get().onAborted = [held, app] { invoke(app, held.get(), "on_aborted"); };
            return self;
        }, py::arg("callback"), "callback() runs if the client goes away before the response ends.")
        .def("on_data", [](py::object self, py::object callback) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            PyRef held(callback.ptr());
            PyApp *app = r.app;
            r.get().onBody = [held, app](std::string_view chunk, bool last) {
                invoke(app, held.get(), "on_data", Owned{PyBytes_FromStringAndSize(chunk.data(), Py_ssize_t(chunk.size()))},
                       last ? Py_True : Py_False);
            };
            return self;
        }, py::arg("callback"), "callback(chunk: bytes, is_last: bool) receives the request body.")
        .def("write", [](PyHttpResponse &self, py::object chunk) {
            uws::HttpConnection &connection = self.get();
            if (connection.isSized()) throw py::value_error("write() after try_end(): this response has a Content-Length");
            Payload payload;
            if (!payload.load(chunk.ptr())) throw py::error_already_set();
            return connection.write(payload.view);
        }, py::arg("chunk"),
           "Streams a body chunk (chunked transfer encoding). Every byte is queued; returns False when some "
           "wait because the client reads slower: stop writing until on_writable.")
        .def("try_end", [](PyHttpResponse &self, py::object data, uint64_t totalSize) {
            uws::HttpConnection &connection = self.get();
            if (connection.isChunked()) throw py::value_error("try_end() after write(): this response is chunked");
            if (connection.isSized() && connection.totalSize() != totalSize) {
                throw py::value_error("try_end() total_size " + std::to_string(totalSize) + " differs from the " +
                                      std::to_string(connection.totalSize()) + " sent as Content-Length");
            }
            Payload payload;
            if (!payload.load(data.ptr())) throw py::error_already_set();
            if (payload.view.size() > totalSize - connection.writeOffset()) {
                throw py::value_error("try_end() data goes past total_size: " + std::to_string(payload.view.size()) +
                                      " bytes at offset " + std::to_string(connection.writeOffset()) + " of " +
                                      std::to_string(totalSize));
            }
            uws::HttpConnection::TryEndResult result = connection.tryEnd(payload.view, totalSize);
            return py::make_tuple(result.ok, result.done);
        }, py::arg("data"), py::arg("total_size"),
           "Sends the next part of a total_size-byte body without buffering; returns (ok, done).")
        .def("on_writable", [](py::object self, py::object handler) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            uws::HttpConnection *connection = &r.get();
            PyRef held(handler.ptr());
            PyApp *app = r.app;
            connection->onWritable = [held, app, connection](uint64_t offset) {
                PyObject *offsetObject = PyLong_FromUnsignedLongLong(offset);
                PyObject *result = offsetObject ? PyObject_CallOneArg(held.get(), offsetObject) : nullptr;
                Py_XDECREF(offsetObject);
                if (!result) {
                    // The body cannot be finished: the client gets a cut response, not a hang.
                    app->reportError("on_writable");
                    connection->close();
                    return false;
                }
                bool wrote = PyObject_IsTrue(result) == 1;
                Py_DECREF(result);
                return wrote;
            };
            return self;
        }, py::arg("handler"),
           "handler(offset: int) -> bool runs when the client can take more after write() returned False or "
           "try_end() was not ok; offset is get_write_offset().")
        .def("get_write_offset", [](const PyHttpResponse &self) { return self.get().writeOffset(); },
             "Body bytes sent or queued so far.")
        .def("close", [](PyHttpResponse &self) { self.get().close(); },
             "Closes the connection at once (queued bytes are lost; on_aborted runs if the response had not ended).")
        .def("cork", [](py::object self, py::object fn) -> py::object {
            uws::HttpConnection *connection = &self.cast<PyHttpResponse &>().get();
            bool alreadyCorked = connection->isCorked();
            connection->cork();
            py::object result = fn();
            if (!alreadyCorked && !connection->isClosed()) connection->flushCork();
            return result;
        }, py::arg("fn"), "Runs fn with what it writes gathered into one write.")
        .def("get_remote_address", [](const PyHttpResponse &self) { return self.get().remoteAddress(); },
             "The client's address (the PROXY header's source on a proxy_protocol listener; '' on a unix socket).")
        .def_property_readonly("aborted", [](const PyHttpResponse &self) { return self.connection == nullptr; },
                               "True once the connection is gone or answered.");
}

} // namespace uwspy
