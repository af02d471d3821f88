#include "PyApp.h"

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <system_error>

#include "Arguments.h"
#include "PyHttp.h"
#include "PyWebSocket.h"

namespace uwspy {

PyApp::PyApp() {
    app.http().releaseHandle = releaseResponseHandle;
    static const int pythonLevels[] = {10, 20, 30, 40};
    // Asked by the core before it builds a line: answered from logLevels without calling into
    // Python (levels 10..40 are cached small ints: no allocation).
    app.log.enabled = [this](uws::LogLevel level) {
        if (logHandler.is_none()) return false;
        if (!PyDict_Check(logLevels.ptr())) return true;
        PyObject *key = PyLong_FromLong(pythonLevels[int(level)]);
        PyObject *enabled = key ? PyDict_GetItemWithError(logLevels.ptr(), key) : nullptr; // borrowed
        Py_XDECREF(key);
        if (!enabled) PyErr_Clear(); // not cached yet (or an error): the handler decides
        return enabled != Py_False;
    };
    app.log.write = [this](uws::LogLevel level, const std::string &message) {
        if (logHandler.is_none()) return;
        PyObject *text = PyUnicode_DecodeUTF8(message.data(), Py_ssize_t(message.size()), "replace");
        PyObject *levelObject = PyLong_FromLong(pythonLevels[int(level)]);
        PyObject *args[2] = {levelObject, text};
        PyObject *result = text && levelObject ? PyObject_Vectorcall(logHandler.ptr(), args, 2, nullptr) : nullptr;
        Py_XDECREF(text);
        Py_XDECREF(levelObject);
        if (!result) PyErr_Clear();
        Py_XDECREF(result);
    };
}

PyApp::~PyApp() {
    Py_XDECREF(pendingType_);
    Py_XDECREF(pendingValue_);
    Py_XDECREF(pendingTraceback_);
}

bool PyApp::onLoopThread() const {
    return (!running && !embedded) || std::this_thread::get_id() == loopThread_;
}

void PyApp::raisePending() {
    if (!pendingType_) return;
    PyErr_Restore(pendingType_, pendingValue_, pendingTraceback_);
    pendingType_ = pendingValue_ = pendingTraceback_ = nullptr;
    throw py::error_already_set();
}

void PyApp::setEmbedded(bool on) {
    if (on && running) throw std::runtime_error("App.run() is already running");
    embedded = on;
    if (on) {
        loopThread_ = std::this_thread::get_id();
        app.loop().clearStop();
    }
}

bool PyApp::runOnce() {
    if (!embedded) throw std::runtime_error("run_once() needs embedded mode (App.serve())");
    app.loop().runOnce(0);
    raisePending();
    return app.loop().stopRequested();
}

void PyApp::stash() {
    if (pendingType_) {
        PyErr_Clear(); // keep the first one
        return;
    }
    PyErr_Fetch(&pendingType_, &pendingValue_, &pendingTraceback_);
    app.loop().stop();
}

void PyApp::reportError(const char *where) {
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
        PyObject *result = PyObject_Vectorcall(errorHandler.ptr(), args, 2, nullptr);
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

void PyApp::run() {
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

// Topic and message views, and the opcode (text for str, binary otherwise, unless given).
uws::OpCode publishArguments(const py::object &topic, const py::object &message, const py::object &opcode,
                             Payload &topicBytes, Payload &payload, const char *function) {
    bool isText;
    uws::OpCode opCode;
    if (!topicBytes.load(topic.ptr()) || !payload.load(message.ptr(), isText) ||
        !opCodeArgument(opcode.ptr(), isText, payload.view.size(), AllowedOpCodes::Data, function, opCode)) {
        throw py::error_already_set();
    }
    return opCode;
}

void throwOSError(const std::system_error &error) {
    PyErr_SetObject(PyExc_OSError, py::make_tuple(error.code().value(), error.what()).ptr());
    throw py::error_already_set();
}

uws::TlsOptions tlsOptions(const std::string &certFile, const std::string &keyFile, const std::string &passphrase,
                           const std::string &caFile, const std::string &ciphers, const std::string &ciphersuites,
                           const std::string &minVersion) {
    uws::TlsOptions options{certFile, keyFile, passphrase, caFile, ciphers, ciphersuites, uws::TlsVersion::Tls12};
    if (minVersion == "TLSv1.3") {
        options.minVersion = uws::TlsVersion::Tls13;
    } else if (minVersion != "TLSv1.2") {
        throw py::value_error("min_version must be 'TLSv1.2' or 'TLSv1.3', not '" + minVersion + "'");
    }
    return options;
}

// An unreadable file is the OSError its errno names; bad content is ValueError.
template <typename Body>
void withTlsErrors(Body body) {
    try {
        body();
    } catch (const std::system_error &error) {
        throwOSError(error);
    } catch (const std::logic_error &error) {
        throw std::runtime_error(error.what());
    } catch (const std::runtime_error &error) {
        throw py::value_error(error.what());
    }
}

} // namespace

void registerApp(py::module_ &module) {
    py::class_<PyApp>(module, "App", "The native server. Use uws_py.App, which wraps it.")
        .def(py::init<>())
        .def("use_tls", [](PyApp &self, const std::string &certFile, const std::string &keyFile,
                           const std::string &passphrase, const std::string &caFile, const std::string &ciphers,
                           const std::string &ciphersuites, const std::string &minVersion) {
            withTlsErrors([&] {
                self.app.useTls(tlsOptions(certFile, keyFile, passphrase, caFile, ciphers, ciphersuites, minVersion));
            });
        }, py::arg("cert_file"), py::arg("key_file"), py::arg("passphrase") = "", py::arg("ca_file") = "",
           py::arg("ciphers") = "", py::arg("ciphersuites") = "", py::arg("min_version") = "TLSv1.2")
        .def("add_server_name", [](PyApp &self, const std::string &hostname, const std::string &certFile,
                                   const std::string &keyFile, const std::string &passphrase, const std::string &caFile,
                                   const std::string &ciphers, const std::string &ciphersuites, const std::string &minVersion) {
            withTlsErrors([&] {
                self.app.addServerName(hostname, tlsOptions(certFile, keyFile, passphrase, caFile, ciphers, ciphersuites, minVersion));
            });
        }, py::arg("hostname"), py::arg("cert_file"), py::arg("key_file"), py::arg("passphrase") = "",
           py::arg("ca_file") = "", py::arg("ciphers") = "", py::arg("ciphersuites") = "", py::arg("min_version") = "TLSv1.2")
        .def("ws", [](PyApp &self, const std::string &pattern, py::dict handlers, py::dict options) {
            auto behavior = std::make_unique<PyBehavior>(handlers);
            self.app.ws(pattern, makeBehavior(&self, behavior.get(), options));
            self.behaviors.push_back(std::move(behavior));
        }, py::arg("pattern"), py::arg("handlers"), py::arg("options"))
        .def("listen", [](PyApp &self, const std::string &host, int port, int backlog, bool reusePort, bool proxyProtocol) {
            try {
                return self.app.listen(host, port, uws::App::ListenOptions{backlog, reusePort, proxyProtocol});
            } catch (const std::system_error &error) {
                throwOSError(error);
                return -1;
            }
        }, py::arg("host"), py::arg("port"), py::arg("backlog") = 512, py::arg("reuse_port") = true,
           py::arg("proxy_protocol") = false)
        .def("listen_unix", [](PyApp &self, const std::string &path, int backlog, bool proxyProtocol) {
            try {
                self.app.listenUnix(path, uws::App::ListenOptions{backlog, false, proxyProtocol});
            } catch (const std::system_error &error) {
                throwOSError(error);
            }
        }, py::arg("path"), py::arg("backlog") = 512, py::arg("proxy_protocol") = false)
        .def("stop_listening", [](PyApp &self) {
            if (self.onLoopThread()) {
                self.app.stopListening();
            } else {
                uws::App *app = &self.app;
                self.app.loop().defer([app] { app->stopListening(); });
            }
        }, "Closes every listener; open connections go on. From another thread: at the loop's next iteration.")
        .def("route", [](PyApp &self, std::string method, const std::string &pattern, py::object handler) {
            self.httpHandlers.push_back(handler);
            PyObject *callable = handler.ptr();
            PyApp *app = &self;
            self.app.route(std::move(method), pattern, [app, callable](uws::HttpConnection *connection, uws::HttpRequest *request) {
                callRequestHandler(app, callable, connection, request, nullptr, "http");
            });
        }, py::arg("method"), py::arg("pattern"), py::arg("handler"))
        .def_property("max_body_size", [](PyApp &self) { return self.app.http().maxBodySize; },
                      [](PyApp &self, uint64_t bytes) { self.app.http().maxBodySize = bytes; })
        .def("run", &PyApp::run)
        .def("run_once", &PyApp::runOnce)
        .def_property("embedded", [](PyApp &self) { return self.embedded; }, &PyApp::setEmbedded)
        .def_property_readonly("fd", [](PyApp &self) { return self.app.loop().epollFd(); })
        .def("next_timer_delay_ms", [](PyApp &self) { return self.app.loop().nextTimerDelayMs(); })
        .def("publish_threadsafe", [](PyApp &self, py::object topic, py::object message, py::object opcode, bool compress) {
            Payload topicBytes, payload;
            uws::OpCode opCode = publishArguments(topic, message, opcode, topicBytes, payload, "publish_threadsafe");
            // Copies, so the loop thread owns what it sends; no Python object crosses over.
            std::string topicCopy(topicBytes.view), messageCopy(payload.view);
            uws::App *app = &self.app;
            self.app.loop().defer([app, topicCopy = std::move(topicCopy), messageCopy = std::move(messageCopy), opCode, compress] {
                app->publish(topicCopy, messageCopy, opCode, compress);
            });
        }, py::arg("topic"), py::arg("message"), py::arg("opcode") = py::none(), py::arg("compress") = false)
        .def("close", [](PyApp &self, int code, const std::string &reason, double timeout) {
            uint64_t timeoutMs = timeout <= 0 ? 0 : uint64_t(timeout * 1000.0 + 0.5);
            if (self.onLoopThread()) {
                self.app.close(uint16_t(code), reason, timeoutMs);
                if (!self.running && !self.embedded) self.app.loop().stop();
                if (self.embedded) self.app.loop().wakeup(); // serve() must see it now
            } else {
                PyApp *app = &self;
                self.app.loop().defer([app, code, reason, timeoutMs] { app->app.close(uint16_t(code), reason, timeoutMs); });
            }
        }, py::arg("code") = 1001, py::arg("reason") = "server shutting down", py::arg("timeout") = 5.0)
        .def("publish", [](PyApp &self, py::object topic, py::object message, py::object opcode, bool compress) {
            Payload topicBytes, payload;
            uws::OpCode opCode = publishArguments(topic, message, opcode, topicBytes, payload, "publish");
            return self.app.publish(topicBytes.view, payload.view, opCode, compress);
        }, py::arg("topic"), py::arg("message"), py::arg("opcode") = py::none(), py::arg("compress") = false)
        .def("num_subscribers", [](PyApp &self, py::object topic) {
            return self.app.numSubscribers(textArgument(topic));
        }, py::arg("topic"))
        .def("set_timeout", [](PyApp &self, double seconds, py::function fn) {
            PyRef callable(fn.ptr());
            PyApp *app = &self;
            uint64_t delayMs = seconds <= 0 ? 0 : uint64_t(seconds * 1000.0 + 0.5);
            return self.app.loop().addTimer(delayMs, [callable, app] { invoke(app, callable.get(), "timer"); });
        }, py::arg("seconds"), py::arg("fn"), "Runs fn once on the loop thread after seconds; loop thread only.")
        .def("clear_timeout", [](PyApp &self, uint64_t id) { self.app.loop().cancelTimer(id); }, py::arg("timer_id"))
        .def("defer", [](PyApp &self, py::function fn) {
            PyRef callable(fn.ptr());
            PyApp *app = &self;
            self.app.loop().defer([callable, app] { invoke(app, callable.get(), "defer"); });
        }, py::arg("fn"), "Runs fn on the loop thread; callable from any thread.")
        .def("stats", [](PyApp &self) {
            const uws::AppStats &s = self.app.stats();
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
            d["http_send_timeouts"] = s.sendTimeouts.get();
            return d;
        })
        .def_property("error_handler", [](PyApp &self) { return self.errorHandler; },
                      [](PyApp &self, py::object handler) { self.errorHandler = handler; })
        .def_property("log_handler", [](PyApp &self) { return self.logHandler; },
                      [](PyApp &self, py::object handler) {
                          self.logHandler = handler;
                          self.logLevels = py::none(); // the filter was for the previous handler
                      })
        .def_property("log_levels", [](PyApp &self) { return self.logLevels; },
                      [](PyApp &self, py::object levels) {
                          if (!levels.is_none() && !PyDict_Check(levels.ptr()))
                              throw py::type_error("log_levels must be a dict or None");
                          self.logLevels = levels;
                      })
        .def_property("header_timeout", [](PyApp &self) { return self.app.http().headerTimeout; },
                      [](PyApp &self, unsigned seconds) { self.app.http().headerTimeout = seconds; })
        .def_property("send_timeout", [](PyApp &self) { return self.app.http().sendTimeout; },
                      [](PyApp &self, unsigned seconds) { self.app.http().sendTimeout = seconds; })
        .def_property_readonly("running", [](PyApp &self) { return self.running; });
}

} // namespace uwspy
