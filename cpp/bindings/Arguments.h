// Converting Python arguments to what the core takes, written once for every entry point:
// payloads (str as UTF-8, bytes, any contiguous buffer), opcodes, HTTP text, and strong
// references held by C++ callbacks. Only cpp/bindings includes Python.h or pybind11.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <string_view>

#include "uws/WebSocketParser.h"

namespace uwspy {

namespace py = pybind11;

// A view of str (as UTF-8), bytes, or any contiguous buffer. Releases what it borrowed.
class Payload {
public:
    Payload() = default;
    Payload(const Payload &) = delete;
    Payload &operator=(const Payload &) = delete;

    ~Payload() {
        if (hasBuffer_) PyBuffer_Release(&buffer_);
    }
    // False with a Python error set (TypeError for an unsupported type).
    bool load(PyObject *object, bool &isText) {
        if (PyUnicode_Check(object)) {
            Py_ssize_t length;
            const char *data = PyUnicode_AsUTF8AndSize(object, &length);
            if (!data) return false;
            view = std::string_view(data, size_t(length));
            isText = true;
            return true;
        }
        isText = false;
        if (PyBytes_Check(object)) {
            view = std::string_view(PyBytes_AS_STRING(object), size_t(PyBytes_GET_SIZE(object)));
            return true;
        }
        if (PyObject_GetBuffer(object, &buffer_, PyBUF_SIMPLE) != 0) {
            PyErr_Format(PyExc_TypeError, "expected str, bytes, bytearray or memoryview, not %.100s",
                         Py_TYPE(object)->tp_name);
            return false;
        }
        hasBuffer_ = true;
        view = std::string_view(static_cast<const char *>(buffer_.buf), size_t(buffer_.len));
        return true;
    }
    bool load(PyObject *object) {
        bool isText;
        return load(object, isText);
    }
    std::string_view view;

private:
    Py_buffer buffer_{};
    bool hasBuffer_ = false;
};

// Which opcodes an entry point sends: data frames only (publish), or also ping and pong
// (send).
enum class AllowedOpCodes { Data, DataAndControl };

// The opcode of a message: `requested` when given (not null, not None), else text for a str
// payload and binary otherwise. False with ValueError set when `requested` is not allowed
// here, or is a ping or pong whose payload is over 125 bytes (RFC 6455 5.5).
inline bool opCodeArgument(PyObject *requested, bool isText, size_t payloadSize, AllowedOpCodes allowed,
                           const char *function, uws::OpCode &out) {
    if (!requested || requested == Py_None) {
        out = isText ? uws::OpCode::Text : uws::OpCode::Binary;
        return true;
    }
    long value = PyLong_AsLong(requested);
    if (value == -1 && PyErr_Occurred()) return false;
    bool control = value == 9 || value == 10;
    if (allowed == AllowedOpCodes::DataAndControl) {
        if (value != 1 && value != 2 && !control) {
            PyErr_Format(PyExc_ValueError, "%s() opcode must be TEXT, BINARY, PING or PONG, not %ld", function, value);
            return false;
        }
    } else if (value != 1 && value != 2) {
        PyErr_Format(PyExc_ValueError, "%s() opcode must be TEXT or BINARY, not %ld", function, value);
        return false;
    }
    if (control && payloadSize > 125) {
        PyErr_SetString(PyExc_ValueError, "a ping or pong payload is at most 125 bytes");
        return false;
    }
    out = uws::OpCode(value);
    return true;
}

// Bytes of a str/bytes argument for HTTP text (headers, bodies); None is empty.
inline std::string textArgument(const py::handle &value) {
    if (PyUnicode_Check(value.ptr())) return value.cast<std::string>();
    if (PyBytes_Check(value.ptr())) return std::string(PyBytes_AS_STRING(value.ptr()), size_t(PyBytes_GET_SIZE(value.ptr())));
    if (value.is_none()) return {};
    throw py::type_error("expected str or bytes");
}

// HTTP header bytes as str, one character per byte.
inline py::str latin1(std::string_view text) {
    PyObject *object = PyUnicode_DecodeLatin1(text.data(), Py_ssize_t(text.size()), nullptr);
    if (!object) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(object);
}

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

} // namespace uwspy
