// WebSocket as a plain CPython type: its methods are the per-message hot path, so they use
// METH_FASTCALL with no argument-parsing layer in between.
#include "PyWebSocket.h"

#include <cstring>

#include "Arguments.h"

namespace uwspy {

Constants constants;

namespace {

uws::WebSocket *openSocket(PyWebSocketObject *self) {
    if (!self->ws) {
        PyErr_SetString(constants.closedError, "this WebSocket is closed");
    }
    return self->ws;
}

// Positional-or-keyword arguments: fills out[0..count) from args/kwnames; NULL when absent.
bool bindArguments(const char *function, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                   const char *const *names, int count, PyObject **out) {
    if (nargs > count) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", function, count, nargs);
        return false;
    }
    for (int i = 0; i < count; i++) out[i] = i < nargs ? args[i] : nullptr;
    if (!kwnames) return true;
    Py_ssize_t keywords = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < keywords; k++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
        if (!name) return false;
        int index = -1;
        for (int i = 0; i < count; i++) {
            if (std::strcmp(name, names[i]) == 0) index = i;
        }
        if (index < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'", function, name);
            return false;
        }
        if (out[index]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", function, name);
            return false;
        }
        out[index] = args[nargs + k];
    }
    return true;
}

PyObject *statusObject(uws::SendStatus status) {
    PyObject *result = constants.sendStatus[int(status)];
    Py_INCREF(result);
    return result;
}

const char *const kFragmentInProgress =
    "a fragmented message is being sent: finish it with send_last_fragment() first";

PyObject *wsSend(PyWebSocketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"data", "opcode", "compress"};
    PyObject *values[3];
    if (!bindArguments("send", args, nargs, kwnames, names, 3, values)) return nullptr;
    if (!values[0]) {
        PyErr_SetString(PyExc_TypeError, "send() missing required argument 'data'");
        return nullptr;
    }
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    Payload payload;
    bool isText;
    uws::OpCode opCode;
    if (!payload.load(values[0], isText) ||
        !opCodeArgument(values[1], isText, payload.view.size(), AllowedOpCodes::DataAndControl, "send", opCode)) {
        return nullptr;
    }
    bool data = opCode == uws::OpCode::Text || opCode == uws::OpCode::Binary;
    if (data && ws->sendingFragments()) {
        PyErr_SetString(PyExc_RuntimeError, kFragmentInProgress);
        return nullptr;
    }
    bool compress = values[2] && PyObject_IsTrue(values[2]) == 1;
    return statusObject(ws->send(payload.view, opCode, compress));
}

PyObject *wsPing(PyWebSocketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"data"};
    PyObject *values[1];
    if (!bindArguments("ping", args, nargs, kwnames, names, 1, values)) return nullptr;
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    Payload payload;
    if (values[0] && !payload.load(values[0])) return nullptr;
    if (payload.view.size() > 125) {
        PyErr_Format(PyExc_ValueError, "ping() payload is %zu bytes; a ping carries at most 125 (RFC 6455 5.5)",
                     payload.view.size());
        return nullptr;
    }
    return statusObject(ws->ping(payload.view));
}

// send_first_fragment / send_fragment / send_last_fragment.
PyObject *sendFragment(PyWebSocketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                       uws::WebSocket::Fragment position, const char *function) {
    static const char *const firstNames[] = {"data", "opcode", "compress"};
    static const char *const laterNames[] = {"data"};
    bool first = position == uws::WebSocket::Fragment::First;
    PyObject *values[3] = {};
    if (!bindArguments(function, args, nargs, kwnames, first ? firstNames : laterNames, first ? 3 : 1, values)) {
        return nullptr;
    }
    if (!values[0]) {
        PyErr_Format(PyExc_TypeError, "%s() missing required argument 'data'", function);
        return nullptr;
    }
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    Payload payload;
    bool isText;
    if (!payload.load(values[0], isText)) return nullptr;
    uws::OpCode opCode = uws::OpCode::Binary;
    if (first) {
        if (ws->sendingFragments()) {
            PyErr_SetString(PyExc_RuntimeError, kFragmentInProgress);
            return nullptr;
        }
        if (!opCodeArgument(values[1], isText, payload.view.size(), AllowedOpCodes::Data, function, opCode)) {
            return nullptr;
        }
    } else if (!ws->sendingFragments()) {
        PyErr_Format(PyExc_RuntimeError, "%s(): no fragmented message in progress (start one with send_first_fragment())",
                     function);
        return nullptr;
    }
    bool compress = values[2] && PyObject_IsTrue(values[2]) == 1;
    return statusObject(ws->sendFragment(payload.view, position, opCode, compress));
}

PyObject *wsSendFirstFragment(PyWebSocketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    return sendFragment(self, args, nargs, kwnames, uws::WebSocket::Fragment::First, "send_first_fragment");
}

PyObject *wsSendFragment(PyWebSocketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    return sendFragment(self, args, nargs, kwnames, uws::WebSocket::Fragment::Middle, "send_fragment");
}

PyObject *wsSendLastFragment(PyWebSocketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    return sendFragment(self, args, nargs, kwnames, uws::WebSocket::Fragment::Last, "send_last_fragment");
}

PyObject *wsEnd(PyWebSocketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"code", "reason"};
    PyObject *values[2];
    if (!bindArguments("end", args, nargs, kwnames, names, 2, values)) return nullptr;
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    long code = uws::CloseCode::Normal;
    if (values[0] && values[0] != Py_None) {
        code = PyLong_AsLong(values[0]);
        if (code == -1 && PyErr_Occurred()) return nullptr;
        if (!uws::isValidCloseCode(uint16_t(code)) || code > 4999) {
            PyErr_Format(PyExc_ValueError, "end() code %ld is not a close code one may send (1000-1003, 1007-1014, 3000-4999)", code);
            return nullptr;
        }
    }
    Payload reason;
    if (values[1] && !reason.load(values[1])) return nullptr;
    ws->end(uint16_t(code), reason.view);
    Py_RETURN_NONE;
}

PyObject *wsClose(PyWebSocketObject *self, PyObject *) {
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    ws->terminate();
    Py_RETURN_NONE;
}

PyObject *wsBufferedAmount(PyWebSocketObject *self, PyObject *) {
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    return PyLong_FromSize_t(ws->bufferedAmount());
}

PyObject *wsRemoteAddress(PyWebSocketObject *self, PyObject *) {
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    std::string address = ws->remoteAddress();
    return PyUnicode_FromStringAndSize(address.data(), Py_ssize_t(address.size()));
}

PyObject *wsUserData(PyWebSocketObject *self, PyObject *) {
    if (!openSocket(self)) return nullptr;
    Py_INCREF(self->userData);
    return self->userData;
}

PyObject *wsIsClosed(PyWebSocketObject *self, PyObject *) { return PyBool_FromLong(self->ws == nullptr); }

PyObject *wsCork(PyWebSocketObject *self, PyObject *callback) {
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    bool alreadyCorked = ws->isCorked();
    ws->cork();
    PyObject *result = PyObject_CallNoArgs(callback);
    // The callback may have closed the socket; self->ws says whether it is still there.
    if (!alreadyCorked && self->ws) self->ws->flushCork();
    return result;
}

PyObject *wsSubscribe(PyWebSocketObject *self, PyObject *topicObject) {
    uws::WebSocket *ws = openSocket(self);
    Payload topic;
    if (!ws || !topic.load(topicObject)) return nullptr;
    return PyBool_FromLong(ws->subscribe(topic.view));
}

PyObject *wsUnsubscribe(PyWebSocketObject *self, PyObject *topicObject) {
    uws::WebSocket *ws = openSocket(self);
    Payload topic;
    if (!ws || !topic.load(topicObject)) return nullptr;
    return PyBool_FromLong(ws->unsubscribe(topic.view));
}

PyObject *wsIsSubscribed(PyWebSocketObject *self, PyObject *topicObject) {
    uws::WebSocket *ws = openSocket(self);
    Payload topic;
    if (!ws || !topic.load(topicObject)) return nullptr;
    return PyBool_FromLong(ws->isSubscribed(topic.view));
}

PyObject *wsTopics(PyWebSocketObject *self, PyObject *) {
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    const auto &topics = ws->subscriptions().topics;
    PyObject *list = PyList_New(Py_ssize_t(topics.size()));
    if (!list) return nullptr;
    for (size_t i = 0; i < topics.size(); i++) {
        const std::string &name = topics[i].topic->name;
        PyObject *item = PyUnicode_DecodeUTF8(name.data(), Py_ssize_t(name.size()), "surrogateescape");
        if (!item) {
            Py_DECREF(list);
            return nullptr;
        }
        PyList_SET_ITEM(list, Py_ssize_t(i), item);
    }
    return list;
}

PyObject *wsPublish(PyWebSocketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"topic", "message", "opcode", "compress"};
    PyObject *values[4];
    if (!bindArguments("publish", args, nargs, kwnames, names, 4, values)) return nullptr;
    if (!values[0] || !values[1]) {
        PyErr_SetString(PyExc_TypeError, "publish() needs a topic and a message");
        return nullptr;
    }
    uws::WebSocket *ws = openSocket(self);
    if (!ws) return nullptr;
    Payload topic, message;
    bool isText;
    uws::OpCode opCode;
    if (!topic.load(values[0]) || !message.load(values[1], isText) ||
        !opCodeArgument(values[2], isText, message.view.size(), AllowedOpCodes::Data, "publish", opCode)) {
        return nullptr;
    }
    bool compress = values[3] && PyObject_IsTrue(values[3]) == 1;
    return PyBool_FromLong(ws->publish(topic.view, message.view, opCode, compress));
}

PyObject *wsRepr(PyWebSocketObject *self) {
    if (!self->ws) return PyUnicode_FromString("<WebSocket closed>");
    std::string address = self->ws->remoteAddress();
    return PyUnicode_FromFormat("<WebSocket %s>", address.c_str());
}

int wsTraverse(PyWebSocketObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->userData);
    return 0;
}

int wsClear(PyWebSocketObject *self) {
    Py_CLEAR(self->userData);
    return 0;
}

void wsDealloc(PyWebSocketObject *self) {
    PyObject_GC_UnTrack(self);
    wsClear(self);
    Py_TYPE(self)->tp_free(reinterpret_cast<PyObject *>(self));
}

PyMethodDef wsMethods[] = {
    {"send", (PyCFunction)(void (*)())wsSend, METH_FASTCALL | METH_KEYWORDS,
     "send(data, opcode=None, compress=False) -> SendStatus\n\nstr is sent as text, bytes-like as binary "
     "unless opcode says otherwise. SUCCESS: written or corked; BACKPRESSURE: queued because the peer "
     "reads slowly; DROPPED: not sent, the socket is over max_backpressure."},
    {"ping", (PyCFunction)(void (*)())wsPing, METH_FASTCALL | METH_KEYWORDS,
     "ping(data=b'') -> SendStatus\n\nSends a ping frame (payload at most 125 bytes, else ValueError); "
     "the client's pong reaches the pong handler."},
    {"send_first_fragment", (PyCFunction)(void (*)())wsSendFirstFragment, METH_FASTCALL | METH_KEYWORDS,
     "send_first_fragment(data, opcode=None, compress=False) -> SendStatus\n\nStarts a message sent in "
     "fragments (FIN clear); opcode and compress apply to the whole message. Until send_last_fragment(), "
     "ping()/send(opcode=PING) may go out between fragments but another data message raises RuntimeError "
     "and published messages wait. Only this first fragment can be DROPPED."},
    {"send_fragment", (PyCFunction)(void (*)())wsSendFragment, METH_FASTCALL | METH_KEYWORDS,
     "send_fragment(data) -> SendStatus\n\nA middle fragment (continuation frame, FIN clear). RuntimeError "
     "when no fragmented message was started."},
    {"send_last_fragment", (PyCFunction)(void (*)())wsSendLastFragment, METH_FASTCALL | METH_KEYWORDS,
     "send_last_fragment(data) -> SendStatus\n\nThe last fragment (continuation frame, FIN set): the message "
     "is complete. RuntimeError when no fragmented message was started."},
    {"end", (PyCFunction)(void (*)())wsEnd, METH_FASTCALL | METH_KEYWORDS,
     "end(code=1000, reason='') -> None\n\nStarts the close handshake; the close handler runs now."},
    {"close", (PyCFunction)wsClose, METH_NOARGS,
     "close() -> None\n\nCloses the TCP connection at once; the close handler gets 1006."},
    {"get_buffered_amount", (PyCFunction)wsBufferedAmount, METH_NOARGS,
     "Bytes queued because the kernel would not take them yet."},
    {"get_remote_address", (PyCFunction)wsRemoteAddress, METH_NOARGS, "The peer's IP address as text."},
    {"get_user_data", (PyCFunction)wsUserData, METH_NOARGS, "The user_data given to res.upgrade(), or None."},
    {"is_closed", (PyCFunction)wsIsClosed, METH_NOARGS, "True once the close handler has run."},
    {"subscribe", (PyCFunction)wsSubscribe, METH_O, "subscribe(topic) -> bool: False if already subscribed."},
    {"unsubscribe", (PyCFunction)wsUnsubscribe, METH_O, "unsubscribe(topic) -> bool: False if not subscribed."},
    {"is_subscribed", (PyCFunction)wsIsSubscribed, METH_O, "is_subscribed(topic) -> bool"},
    {"get_topics", (PyCFunction)wsTopics, METH_NOARGS, "The topics this socket is subscribed to."},
    {"publish", (PyCFunction)(void (*)())wsPublish, METH_FASTCALL | METH_KEYWORDS,
     "publish(topic, message, opcode=None, compress=False) -> bool\n\nSends to every subscriber of topic "
     "except this socket; the fan-out runs in C++. False if the topic has no subscribers."},
    {"cork", (PyCFunction)wsCork, METH_O,
     "cork(fn) -> result of fn()\n\nRuns fn with sends to this socket gathered into one write."},
    {nullptr, nullptr, 0, nullptr},
};

} // namespace

PyTypeObject PyWebSocketType = {PyVarObject_HEAD_INIT(nullptr, 0)};

bool initWebSocketType(py::module_ &module) {
    PyWebSocketType.tp_name = "uws_py._core.WebSocket";
    PyWebSocketType.tp_basicsize = sizeof(PyWebSocketObject);
    PyWebSocketType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
    PyWebSocketType.tp_doc = "A WebSocket connection. Handed to handlers; created by the server only.";
    PyWebSocketType.tp_methods = wsMethods;
    PyWebSocketType.tp_dealloc = (destructor)wsDealloc;
    PyWebSocketType.tp_traverse = (traverseproc)wsTraverse;
    PyWebSocketType.tp_clear = (inquiry)wsClear;
    PyWebSocketType.tp_repr = (reprfunc)wsRepr;
    if (PyType_Ready(&PyWebSocketType) < 0) return false;
    Py_INCREF(&PyWebSocketType);
    module.add_object("WebSocket", reinterpret_cast<PyObject *>(&PyWebSocketType));
    return true;
}

PyObject *newPyWebSocket(uws::WebSocket *ws, PyObject *userData, PyApp *app) {
    PyWebSocketObject *self = PyObject_GC_New(PyWebSocketObject, &PyWebSocketType);
    if (!self) return nullptr;
    self->ws = ws;
    self->app = app;
    self->userData = userData ? userData : Py_None;
    Py_INCREF(self->userData);
    PyObject_GC_Track(self);
    return reinterpret_cast<PyObject *>(self);
}

} // namespace uwspy
