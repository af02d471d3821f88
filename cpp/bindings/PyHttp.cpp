#include "PyHttp.h"

#include <string>

#include "Arguments.h"
#include "PyApp.h"
#include "PyWebSocket.h"
#include "uws/WebSocket.h"

namespace uwspy {

namespace {

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
                PyApp *app = r.app;
                r.connection->onAborted = [held, app] { invoke(app, held.get(), "on_aborted"); };
            }
            return self;
        }, py::arg("callback"), "callback() runs if the client goes away before the response ends.")
        .def("on_data", [](py::object self, py::object callback) {
            PyHttpResponse &r = self.cast<PyHttpResponse &>();
            if (r.connection) {
                PyRef held(callback.ptr());
                PyApp *app = r.app;
                r.connection->onBody = [held, app](std::string_view chunk, bool last) {
                    invoke(app, held.get(), "on_data", Owned{PyBytes_FromStringAndSize(chunk.data(), Py_ssize_t(chunk.size()))},
                           last ? Py_True : Py_False);
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
            bool alreadyCorked = connection->isCorked();
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
}

} // namespace uwspy
