// The realtime fast path. Every step mirrors a line of Dispatcher.on_message; where the
// Python code would take a rare branch (a refusal, an error, a built-in, a handler that is
// not a plain function), this code calls the Python dispatcher's method for it instead of
// repeating its rules, so both paths give the same replies (tests/unit/realtime/
// test_fast_path.py feeds them the same messages).
#include "PyRealtime.h"

#include <structmember.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "PyBehavior.h"
#include "PyWebSocket.h"
#include "uws/RealtimeScan.h"

namespace uwspy {

namespace {

// Attribute and method names, interned once.
struct Names {
    PyObject *bucket, *batcher, *fast, *handler, *histogram, *calls, *type, *id, *handleAdmitted, *dispatch,
        *reply, *rateLimited, *onMessage, *observe, *send, *getUserData, *take, *clock, *tokens, *updated, *rate,
        *capacity, *serverTime, *pong, *failedRouteKeyword, *topic, *data, *echo, *from, *message, *subscribed,
        *unsubscribed, *published, *topicsAllowed, *ws, *closed, *clientId, *topicHook, *historyOn, *broker, *relay,
        *presence, *reserved, *maxSubscriptions, *maxTopicLength, *isSubscribed, *getTopics, *subscribe,
        *unsubscribe, *publish, *compressName, *messages, *maxBatchItems, *batchItem, *batch, *timestamp, *ack, *ping, *subscribeKind,
        *unsubscribeKind, *publishKind;
} names;

// _core.Counter: an exact event count kept as a C integer. Route._calls holds one; the fast
// path adds to it directly and the Python paths through add().
struct CounterObject {
    PyObject_HEAD
    unsigned long long value;
};

PyObject *counterNew(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static const char *keywords[] = {"value", nullptr};
    unsigned long long value = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|K:Counter", const_cast<char **>(keywords), &value)) return nullptr;
    PyObject *self = type->tp_alloc(type, 0);
    if (self) reinterpret_cast<CounterObject *>(self)->value = value;
    return self;
}

PyObject *counterAdd(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned long long n = 1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "Counter.add takes at most one argument");
        return nullptr;
    }
    if (nargs == 1) {
        n = PyLong_AsUnsignedLongLong(args[0]);
        if (n == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return nullptr;
    }
    auto *counter = reinterpret_cast<CounterObject *>(self);
    counter->value += n;
    return PyLong_FromUnsignedLongLong(counter->value);
}

PyObject *counterValue(PyObject *self, void *) {
    return PyLong_FromUnsignedLongLong(reinterpret_cast<CounterObject *>(self)->value);
}

PyObject *counterRepr(PyObject *self) {
    return PyUnicode_FromFormat("Counter(%llu)", reinterpret_cast<CounterObject *>(self)->value);
}

PyMethodDef counterMethods[] = {
    {"add", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(counterAdd)), METH_FASTCALL,
     "add(n=1) -> int\n\nAdds n (a non-negative int) and returns the new value."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef counterGetSet[] = {
    {"value", counterValue, nullptr, "The count, an int.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyTypeObject CounterType = {PyVarObject_HEAD_INIT(nullptr, 0)};

// One attribute of a __slots__ class, read and written at its offset in the object: the
// generic getattr (type lookup, descriptor call) was the largest cost left on the path. The
// offset is the class's member descriptor's, found when the dispatcher is made; an object of
// another type (a subclass may define a property of that name) goes through getattr.
struct Slot {
    PyTypeObject *type = nullptr;
    Py_ssize_t offset = -1;
    PyObject *name = nullptr;

    bool resolve(PyObject *owner, PyObject *attribute) {
        type = reinterpret_cast<PyTypeObject *>(owner);
        name = attribute;
        offset = -1; // the object is zero-filled: 0 would be the reference count
        PyObject *descriptor = PyObject_GetAttr(owner, attribute);
        if (!descriptor) return false;
        if (Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
            PyMemberDef *member = reinterpret_cast<PyMemberDescrObject *>(descriptor)->d_member;
            if (member->type == T_OBJECT_EX && !(member->flags & READONLY)) offset = member->offset;
        }
        Py_DECREF(descriptor);
        return true;
    }
    __attribute__((always_inline)) PyObject **at(PyObject *object) const {
        if (offset < 0 || Py_TYPE(object) != type) return nullptr;
        return reinterpret_cast<PyObject **>(reinterpret_cast<char *>(object) + offset);
    }
    // at() for an object the caller found to be exactly of the slot's type.
    __attribute__((always_inline)) PyObject **ofType(PyObject *object) const {
        if (offset < 0) return nullptr;
        return reinterpret_cast<PyObject **>(reinterpret_cast<char *>(object) + offset);
    }
    // A new reference; null with AttributeError when unset, as getattr. Inlined: the pub/sub
    // path reads a dozen of these per message.
    __attribute__((always_inline)) PyObject *get(PyObject *object) const {
        PyObject **slot = at(object);
        if (slot && *slot) return Py_NewRef(*slot);
        return PyObject_GetAttr(object, name);
    }
    bool set(PyObject *object, PyObject *value) const {
        PyObject **slot = at(object);
        if (!slot) return PyObject_SetAttr(object, name, value) == 0;
        PyObject *old = *slot;
        *slot = Py_NewRef(value);
        Py_XDECREF(old);
        return true;
    }
};

// A time in milliseconds as text, formatted again only when it changed: the PONGs and BATCH
// frames of one dispatch share theirs. Zero-filled is unformatted (a number has a digit).
class MillisecondsText {
public:
    std::string_view of(long long value) {
        if (length_ == 0 || value != value_) {
            value_ = value;
            length_ = size_t(std::to_chars(digits_, digits_ + sizeof digits_, value).ptr - digits_);
        }
        return std::string_view(digits_, length_);
    }

private:
    long long value_;
    char digits_[24];
    size_t length_;
};

// A clock read once per batch of the loop's events: `value` was read in dispatch number
// `dispatch` of `loop`. In zero-filled memory (the dispatcher object's), so no initializers.
template <class T>
struct PerDispatch {
    const uws::Loop *loop;
    uint64_t dispatch;
    T value;

    // The time for a message on `ws`: read() once per dispatch of its loop, afresh for a socket
    // that is not the core's or outside a dispatch.
    template <class Read>
    T at(PyObject *ws, Read read) {
        uws::WebSocket *socket =
            Py_TYPE(ws) == &PyWebSocketType ? reinterpret_cast<PyWebSocketObject *>(ws)->ws : nullptr;
        if (!socket) return read();
        const uws::Loop *now = socket->loop;
        if (now != loop || now->dispatches() != dispatch || !now->inDispatch()) {
            loop = now;
            dispatch = now->dispatches();
            value = read();
        }
        return value;
    }
};

struct RealtimeDispatchObject {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dispatcher;   // the Python Dispatcher: every path but the common one
    PyObject *routes;       // the Router's dict, read live (routes may be added later)
    PyObject *loads, *dumps;
    PyObject *bucketType;   // ratelimit.TokenBucket: its take() is done here ...
    PyObject *monotonic;    // ... when its clock is time.monotonic (tests inject others)
    PyObject *one;          // the int 1: a call count's step, and TEXT as the Python path passes it to ws.send
    unsigned long long sampleMask;
    Py_ssize_t maxPayloadLength;
    Py_ssize_t maxBatchItems; // Dispatcher.max_batch_items, which sets it here when it changes
    bool compress;
    bool answersPing;       // PING is the stock built-in: PONG is made here
    // SUBSCRIBE, UNSUBSCRIBE, PUBLISH are the stock built-ins: their plain case is done here.
    bool answersSubscribe, answersUnsubscribe, answersPublish;
    bool nativeJson;            // loads and dumps are orjson's: plain requests are read here (decodeMessage)
                                // and plain replies written here (appendJson)
    bool answersBatch;          // BATCH is Dispatcher.batch: its items of the built-ins above are done here
    PyObject *collecting;       // the replies of the BATCH being answered, else null (borrowed)
    PyObject *pubsub;           // the engine's PubSub: read per message (hooks may be set later)
    PyObject *stockReserved;    // users.is_reserved, checked here as ...
    PyObject *reservedPrefix;   // ... topic.startswith(USER_TOPIC_PREFIX) ...
    PyObject *reservedTopic;    // ... or topic == CONTROL_TOPIC
    PyObject *clientType, *routeType, *pubsubType; // session.Client, routing.Route, pubsub.PubSub: the owners of the slots below
    // The last route looked up: `routes[lastKind]` (lastRoute null: no such route) while the
    // routes dict's version is still lastRoutesVersion (any change to the dict changes it).
    PyObject *lastKind, *lastRoute;
    uint64_t lastRoutesVersion;
    // PubSub.max_topic_length's int as last read, and its value: an int is immutable and the
    // one held here cannot be freed (its address reused), so while the slot holds it the
    // value stands.
    PyObject *maxTopicLengthObject;
    Py_ssize_t maxTopicLengthValue;
    // The token bucket's clock, read once per batch of the loop's events (a clock read costs
    // 47-51 ns of CPU on the bench machine's VM, 2-5 % of the whole realtime path per message).
    PerDispatch<double> clock;
    // protocol.now_ms() for the PONGs' serverTime and the BATCH frames' timestamp, read in the
    // same way, and its text.
    PerDispatch<long long> wall;
    MillisecondsText wallText;
    // stockBuiltin of each scanned kind (ScannedKind order), computed for the routes dict's
    // version stockRoutesVersion (stockKnown false: not yet).
    bool stockKnown;
    uint64_t stockRoutesVersion;
    int8_t stock[5];
    Slot clientBucket, clientBatcher, bucketClock, bucketTokens, bucketUpdated, bucketRate, bucketCapacity, routeFast,
        routeHandler, routeHistogram, routeCalls, clientTopicsAllowed, clientWs, clientClosed, clientId,
        pubsubTopicHook, pubsubHistoryOn, pubsubBroker, pubsubRelay, pubsubPresence, pubsubReserved,
        pubsubMaxSubscriptions, pubsubMaxTopicLength, pubsubCompress;
};

// The same clock as time.monotonic and time.perf_counter on Linux.
double monotonicSeconds() {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return double(now.tv_sec) + double(now.tv_nsec) * 1e-9;
}

template <typename... Args>
PyObject *callMethod(PyObject *name, PyObject *self, Args... args) {
    PyObject *argv[] = {self, args...};
    return PyObject_VectorcallMethod(name, argv, 1 + sizeof...(Args), nullptr);
}

// A call whose result is not needed: true when it returned.
bool done(PyObject *result) {
    if (!result) return false;
    Py_DECREF(result);
    return true;
}

bool readDouble(PyObject *object, const Slot &slot, double &out) {
    PyObject *value = slot.get(object);
    if (!value) return false;
    out = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return !(out == -1.0 && PyErr_Occurred());
}

bool writeDouble(PyObject *object, const Slot &slot, double value) {
    PyObject *boxed = PyFloat_FromDouble(value);
    if (!boxed) return false;
    bool ok = slot.set(object, boxed);
    Py_DECREF(boxed);
    return ok;
}

// A float slot's value read without taking a reference: the common case of readDouble.
// OfType: the caller found `object` to be exactly of the slot's type.
template <bool OfType = false>
__attribute__((always_inline)) inline bool peekDouble(PyObject *object, const Slot &slot, double &out) {
    PyObject **at = OfType ? slot.ofType(object) : slot.at(object);
    if (at && *at && PyFloat_CheckExact(*at)) {
        out = PyFloat_AS_DOUBLE(*at);
        return true;
    }
    return readDouble(object, slot, out);
}

// writeDouble without a new float when the slot's float is referenced by the slot alone: no
// one else can see it, so changing its value in place is the same as replacing it (and saves
// an allocation and a deallocation per message). OfType as peekDouble's.
template <bool OfType = false>
__attribute__((always_inline)) inline bool storeDouble(PyObject *object, const Slot &slot, double value) {
    PyObject **at = OfType ? slot.ofType(object) : slot.at(object);
    if (at && *at && PyFloat_CheckExact(*at) && Py_REFCNT(*at) == 1) {
        reinterpret_cast<PyFloatObject *>(*at)->ob_fval = value;
        return true;
    }
    return writeDouble(object, slot, value);
}

// time.monotonic() for a message of `ws`: read once per batch of the loop's events (every
// message of one batch is given the time the first of them was taken at, at most one batch
// earlier than a fresh read: the bucket sees the messages of one read arrive together), and
// read afresh for a socket that is not the core's (tests, calls from Python). A time in the
// past never grants a token a fresh one would not (refill only grows with time, and a
// refusal goes to TokenBucket.take(), which reads the clock itself); the one difference is
// that a full bucket's `updated` may be set up to one batch earlier, so the next refill counts
// that part of the batch too (rate x the batch's duration, at most, once per full bucket).
double batchSeconds(RealtimeDispatchObject *self, PyObject *ws) { return self->clock.at(ws, monotonicSeconds); }

int truth(PyObject *result);

// TokenBucket.take(first) then, when `rest` is not 0, take(rest), both at `now`, done in C
// when both are granted: 1 taken, 0 for the method (nothing changed: another clock, or too
// few tokens), -1 error. The arithmetic is the Python method's, in the same order, so that
// both paths leave the bucket alike: the second take's refill is (now - now) x rate, 0, and
// its tokens are within the capacity already, so it only subtracts. `now` is the batch's time
// (batchSeconds); when the bucket was last updated after it (by the Python path, which reads
// the clock itself), the clock is read afresh, so no refill is ever negative.
int takeHere(RealtimeDispatchObject *self, PyObject *bucket, Py_ssize_t first, Py_ssize_t rest, double now) {
    if (Py_TYPE(bucket) != reinterpret_cast<PyTypeObject *>(self->bucketType)) return 0;
    PyObject **clockAt = self->bucketClock.ofType(bucket);
    bool ownClock;
    if (clockAt && *clockAt) {
        ownClock = *clockAt == self->monotonic;
    } else {
        PyObject *clock = self->bucketClock.get(bucket);
        if (!clock) return -1;
        ownClock = clock == self->monotonic;
        Py_DECREF(clock);
    }
    if (!ownClock) return 0;
    double tokens, updated, rate, capacity;
    if (!peekDouble<true>(bucket, self->bucketTokens, tokens) ||
        !peekDouble<true>(bucket, self->bucketUpdated, updated) || !peekDouble<true>(bucket, self->bucketRate, rate) ||
        !peekDouble<true>(bucket, self->bucketCapacity, capacity)) {
        return -1;
    }
    if (now < updated) now = monotonicSeconds();
    tokens = tokens + (now - updated) * rate;
    if (tokens > capacity) tokens = capacity;
    if (tokens < double(first)) return 0;
    tokens = tokens - double(first);
    if (rest != 0) {
        if (tokens < double(rest)) return 0;
        tokens = tokens - double(rest);
    }
    bool stored =
        storeDouble<true>(bucket, self->bucketUpdated, now) && storeDouble<true>(bucket, self->bucketTokens, tokens);
    return stored ? 1 : -1;
}

// TokenBucket.take(count) (one token per message, the rest of a BATCH's items after its
// first): 1 taken, 0 refused, -1 error. Done in C when granted (takeHere); a refusal (with its
// window bookkeeping) and any other clock go to the method itself.
int takeTokens(RealtimeDispatchObject *self, PyObject *bucket, Py_ssize_t count, double now) {
    if (int here = takeHere(self, bucket, count, 0, now)) return here;
    if (count == 1) return truth(callMethod(names.take, bucket));
    PyObject *needed = PyLong_FromSsize_t(count);
    int taken = needed ? truth(callMethod(names.take, bucket, needed)) : -1;
    Py_XDECREF(needed);
    return taken;
}

// TokenBucket.take() for a message of `client`, a refusal answered by Dispatcher.rate_limited
// (takeUntaken's slow path): 1 taken, 0 refused (answered), -1 error.
__attribute__((noinline, cold)) int takeUntakenInPython(RealtimeDispatchObject *self, PyObject *client,
                                                         PyObject *bucket) {
    int taken = truth(callMethod(names.take, bucket));
    if (taken != 0) return taken;
    return done(callMethod(names.rateLimited, self->dispatcher, client, bucket)) ? 0 : -1;
}

// The token of a message of `client` not taken yet: `untaken` is its bucket (borrowed; Py_None
// without a rate limit), set to null here, so that it is taken once. A refusal is answered by
// Dispatcher.rate_limited. 1 taken, 0 refused (answered), -1 error.
inline int takeUntaken(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *&untaken) {
    PyObject *bucket = untaken;
    untaken = nullptr;
    if (!bucket || bucket == Py_None) return 1;
    if (int here = takeHere(self, bucket, 1, 0, batchSeconds(self, ws))) return here;
    return takeUntakenInPython(self, client, bucket); // TokenBucket.take(): a refusal or another clock
}

// Dispatcher.handle_admitted(ws, client, data, opcode): everything after the token, in Python.
bool admittedInPython(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, std::string_view message,
                      PyObject *opCodeObject, bool binary, PyObject *data) {
    PyObject *made = nullptr;
    if (!data) {
        made = binary ? PyBytes_FromStringAndSize(message.data(), Py_ssize_t(message.size()))
                      : PyUnicode_DecodeUTF8(message.data(), Py_ssize_t(message.size()), nullptr);
        if (!made) return false;
        data = made;
    }
    bool ok = done(callMethod(names.handleAdmitted, self->dispatcher, ws, client, data, opCodeObject));
    Py_XDECREF(made);
    return ok;
}

// The handler raised: Dispatcher.dispatch(client, message, None, failed_route=route) answers
// it, with the exception as the one being handled (it logs it with logger.exception).
bool handlerFailed(RealtimeDispatchObject *self, PyObject *client, PyObject *message, PyObject *route) {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) return false; // KeyboardInterrupt and the like go on
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback) PyException_SetTraceback(value, traceback);
    PyObject *previous = PyErr_GetHandledException();
    PyErr_SetHandledException(value);
    PyObject *argv[] = {self->dispatcher, client, message, Py_None, route};
    PyObject *result = PyObject_VectorcallMethod(names.dispatch, argv, 4, names.failedRouteKeyword);
    PyErr_SetHandledException(previous);
    Py_XDECREF(previous);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return done(result);
}

bool sendText(RealtimeDispatchObject *self, PyObject *ws, PyObject *encoded) {
    if (Py_TYPE(ws) == &PyWebSocketType) {
        uws::WebSocket *socket = reinterpret_cast<PyWebSocketObject *>(ws)->ws;
        if (!socket) {
            PyErr_SetString(constants.closedError, "this WebSocket is closed");
            return false;
        }
        socket->send(std::string_view(PyBytes_AS_STRING(encoded), size_t(PyBytes_GET_SIZE(encoded))),
                     uws::OpCode::Text, self->compress);
        return true;
    }
    return done(callMethod(names.send, ws, encoded, self->one, self->compress ? Py_True : Py_False));
}

// ---- the reply's JSON, written here -----------------------------------------------------
// orjson.dumps's bytes for the values replies are made of: dicts with str keys, lists, str,
// int within 64 bits, bool, None (exact types only). Anything else (a float, a tuple, a big
// int, a subclass, a lone surrogate, deep nesting) answers 0 and the reply is left to
// orjson.dumps, which encodes it or raises as before. tests/unit/realtime/test_fast_path.py
// compares the bytes of both over generated values.

constexpr int maxJsonDepth = 32; // orjson allows more; deeper replies are rare and go to orjson

// A growing byte buffer (std::string's append is out of line in libstdc++, and the reply is
// written a few bytes at a time). It writes into its own storage, or in place into memory
// lent to it (a socket's cork buffer, see uws::WebSocket::reserveInPlace) until that is full:
// it then moves what it wrote into its storage and goes on there.
// `length` bytes from `bytes` to `to`, for the short texts replies copy from a request (an id,
// a timestamp, a topic): up to 16 bytes with two loads and two stores that overlap, no call;
// longer ones by memcpy.
__attribute__((always_inline)) inline void copyShort(char *to, const char *bytes, size_t length) {
    if (length >= 8 && length <= 16) {
        uint64_t head, tail;
        std::memcpy(&head, bytes, 8);
        std::memcpy(&tail, bytes + length - 8, 8);
        std::memcpy(to, &head, 8);
        std::memcpy(to + length - 8, &tail, 8);
    } else if (length >= 4 && length < 8) {
        uint32_t head, tail;
        std::memcpy(&head, bytes, 4);
        std::memcpy(&tail, bytes + length - 4, 4);
        std::memcpy(to, &head, 4);
        std::memcpy(to + length - 4, &tail, 4);
    } else if (length < 4) {
        if (length != 0) { // 1-3 bytes: the first, the middle and the last (some the same)
            to[0] = bytes[0];
            to[length / 2] = bytes[length / 2];
            to[length - 1] = bytes[length - 1];
        }
    } else {
        std::memcpy(to, bytes, length);
    }
}

struct JsonBuffer {
    char *data = nullptr;
    size_t size = 0, capacity = 0;
    char *storage = nullptr;
    size_t storageCapacity = 0;

    // A new text, in the buffer's storage.
    void start() {
        data = storage;
        capacity = storageCapacity;
        size = 0;
    }
    // A new text, in the `room` bytes at `place`.
    void startInPlace(char *place, size_t room) {
        data = place;
        capacity = room;
        size = 0;
    }
    bool inPlace() const { return data != storage; }
    __attribute__((noinline)) void grow(size_t more) {
        size_t wanted = size + more;
        if (wanted <= capacity) return;
        bool lent = inPlace();
        if (wanted > storageCapacity) {
            size_t next = storageCapacity ? storageCapacity * 2 : 1024;
            while (next < wanted) next *= 2;
            // Lent memory in use: the storage holds nothing of this text, a fresh block will do.
            char *moved = static_cast<char *>(lent ? std::malloc(next) : std::realloc(storage, next));
            if (!moved) throw std::bad_alloc();
            if (lent) std::free(storage);
            storage = moved;
            storageCapacity = next;
        }
        if (lent && size) std::memcpy(storage, data, size);
        data = storage;
        capacity = storageCapacity;
    }
    // Room for `more` bytes written at data + size without further checks.
    __attribute__((always_inline)) void reserve(size_t more) {
        if (capacity - size < more) grow(more);
    }
    __attribute__((always_inline)) void push(char c) {
        if (size == capacity) grow(1);
        data[size++] = c;
    }
    __attribute__((always_inline)) void append(const char *bytes, size_t length) {
        reserve(length);
        std::memcpy(data + size, bytes, length);
        size += length;
    }
    // append for a short text (copyShort).
    __attribute__((always_inline)) void appendShort(const char *bytes, size_t length) {
        reserve(length);
        copyShort(data + size, bytes, length);
        size += length;
    }
    std::string_view view() const { return std::string_view(data, size); }
    ~JsonBuffer() { std::free(storage); }
    // After a reply: a storage grown past 1 MiB for a large one is given back.
    void settle() {
        if (storageCapacity > (1u << 20)) {
            std::free(storage);
            storage = nullptr;
            storageCapacity = 0;
        }
        start();
    }
};

// The buffer replies are written into: used under the GIL, by one reply at a time (nothing
// calls back into Python between its writing and its send).
JsonBuffer jsonBuffer;

// The escape of a byte inside a JSON string as orjson writes it: 0 for none (the byte itself).
char shortEscape(unsigned char c) {
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\t': return 't';
    case '\n': return 'n';
    case '\f': return 'f';
    case '\r': return 'r';
    default: return 0;
    }
}

// The bytes a JSON string escapes: under 0x20, '"' and '\\'.
struct JsonEscapes {
    bool table[256] = {};
    constexpr JsonEscapes() {
        for (int c = 0; c < 0x20; c++) table[c] = true;
        table[int('"')] = true;
        table[int('\\')] = true;
    }
};
constexpr JsonEscapes jsonEscapes;

// Does this word of eight bytes hold one that JSON escapes (under 0x20, '"' or '\\')? The
// usual zero-byte test on the word and its XORs with '"' and '\\'.
__attribute__((always_inline)) inline bool escapesIn(uint64_t word) {
    constexpr uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = word ^ (ones * '"'), backslash = word ^ (ones * '\\');
    return (((word - ones * 0x20) & ~word) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash)) & highs;
}

// Copies text[0, length) to `to` when none of its bytes escapes: true; false (and `to` holding
// any of it) when one does. Whole words, the last one overlapping the one before, and for
// short texts two overlapping halves tested as one word: no byte loop, no memcpy call.
__attribute__((always_inline)) inline bool copyPlain(const unsigned char *text, size_t length, char *to) {
    if (length >= 8) {
        uint64_t word;
        for (size_t at = 0; at + 8 < length; at += 8) {
            std::memcpy(&word, text + at, 8);
            if (escapesIn(word)) return false;
            std::memcpy(to + at, &word, 8);
        }
        std::memcpy(&word, text + length - 8, 8);
        if (escapesIn(word)) return false;
        std::memcpy(to + length - 8, &word, 8);
        return true;
    }
    // A text of 2 to 7 bytes as two overlapping words of `Word` (2 or 4 bytes), its head and
    // its tail; tested as one word of eight bytes (the pair repeated when it holds four).
    auto headAndTail = [text, length, to](auto word) __attribute__((always_inline)) {
        using Word = decltype(word);
        constexpr size_t size = sizeof(Word);
        Word head, tail;
        std::memcpy(&head, text, size);
        std::memcpy(&tail, text + length - size, size);
        uint64_t both = uint64_t(head) | uint64_t(tail) << (8 * size);
        if constexpr (size == 2) both |= both << 32;
        if (escapesIn(both)) return false;
        std::memcpy(to, &head, size);
        std::memcpy(to + length - size, &tail, size);
        return true;
    };
    if (length >= 4) return headAndTail(uint32_t());
    if (length >= 2) return headAndTail(uint16_t());
    if (length == 1) {
        if (jsonEscapes.table[text[0]]) return false;
        to[0] = char(text[0]);
    }
    return true;
}

// appendJsonString for a text with an escape: in chunks, each reserving room for its worst
// case (every byte a 6-byte \u00XX) once; eight bytes at a time while none of them escapes,
// else byte by byte for the next eight.
__attribute__((noinline)) void appendEscapedString(JsonBuffer &out, const unsigned char *bytes, Py_ssize_t length) {
    static const char hex[] = "0123456789abcdef";
    constexpr Py_ssize_t chunk = 256;
    out.push('"');
    Py_ssize_t at = 0;
    while (at < length) {
        Py_ssize_t stop = length - at > chunk ? at + chunk : length;
        out.reserve(size_t(stop - at) * 6);
        char *to = out.data + out.size;
        while (at < stop) {
            for (; at + 8 <= stop; at += 8) {
                uint64_t word;
                std::memcpy(&word, bytes + at, 8);
                if (escapesIn(word)) break;
                std::memcpy(to, &word, 8);
                to += 8;
            }
            Py_ssize_t bytewise = stop - at > 8 ? at + 8 : stop;
            for (; at < bytewise; at++) {
                unsigned char c = bytes[at];
                if (!jsonEscapes.table[c]) {
                    *to++ = char(c);
                } else if (char escape = shortEscape(c)) {
                    to[0] = '\\';
                    to[1] = escape;
                    to += 2;
                } else {
                    std::memcpy(to, "\\u00", 4);
                    to[4] = hex[c >> 4];
                    to[5] = hex[c & 15];
                    to += 6;
                }
            }
        }
        out.size = size_t(to - out.data);
    }
    out.push('"');
}

// A string's UTF-8 as orjson writes it, quoted and escaped.
__attribute__((always_inline)) inline void appendJsonString(JsonBuffer &out, const char *text, Py_ssize_t length) {
    const auto *bytes = reinterpret_cast<const unsigned char *>(text);
    out.reserve(size_t(length) + 2);
    char *to = out.data + out.size;
    to[0] = '"';
    if (copyPlain(bytes, size_t(length), to + 1)) {
        to[length + 1] = '"';
        out.size += size_t(length) + 2;
        return;
    }
    appendEscapedString(out, bytes, length);
}

void appendInteger(JsonBuffer &out, long long number) {
    char digits[24];
    auto result = std::to_chars(digits, digits + sizeof digits, number);
    out.append(digits, size_t(result.ptr - digits));
}

// An exact str: 1 written, 0 not (lone surrogates: orjson words the error).
__attribute__((always_inline)) inline int appendStr(JsonBuffer &out, PyObject *value) {
    Py_ssize_t length;
    const char *text;
    if (PyUnicode_IS_ASCII(value)) {
        text = reinterpret_cast<const char *>(PyUnicode_DATA(value));
        length = PyUnicode_GET_LENGTH(value);
    } else {
        text = PyUnicode_AsUTF8AndSize(value, &length);
        if (!text) {
            PyErr_Clear();
            return 0;
        }
    }
    appendJsonString(out, text, length);
    return 1;
}

// 1 written, 0 not a value written here (no exception set), -1 error.
int appendJson(JsonBuffer &out, PyObject *value, int depth) {
    if (PyUnicode_CheckExact(value)) return appendStr(out, value);
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) return 0; // up to 2**64 - 1 or an error: orjson's
        if (number == -1 && PyErr_Occurred()) return -1;
        appendInteger(out, number);
        return 1;
    }
    if (value == Py_None) {
        out.append("null", 4);
        return 1;
    }
    if (value == Py_True) {
        out.append("true", 4);
        return 1;
    }
    if (value == Py_False) {
        out.append("false", 5);
        return 1;
    }
    if (depth >= maxJsonDepth) return 0;
    if (PyDict_CheckExact(value)) {
        out.push('{');
        Py_ssize_t position = 0;
        PyObject *key, *item;
        bool first = true;
        while (PyDict_Next(value, &position, &key, &item)) {
            if (!PyUnicode_CheckExact(key)) return 0;
            if (!first) out.push(',');
            first = false;
            if (!appendStr(out, key)) return 0;
            out.push(':');
            // A str value (most are) without the call.
            int written = PyUnicode_CheckExact(item) ? appendStr(out, item) : appendJson(out, item, depth + 1);
            if (written <= 0) return written;
        }
        out.push('}');
        return 1;
    }
    if (PyList_CheckExact(value)) {
        out.push('[');
        for (Py_ssize_t index = 0; index < PyList_GET_SIZE(value); index++) {
            if (index) out.push(',');
            int written = appendJson(out, PyList_GET_ITEM(value, index), depth + 1);
            if (written <= 0) return written;
        }
        out.push(']');
        return 1;
    }
    return 0;
}

bool isIdKey(PyObject *key) {
    return key == names.id || (PyUnicode_GET_LENGTH(key) == 2 && PyUnicode_IS_ASCII(key) &&
                               std::memcmp(PyUnicode_DATA(key), "id", 2) == 0);
}

// {**reply, "id": id}'s JSON without making that dict: a reply's own "id" key keeps its place
// and takes the value, else the id comes last. `reply` is an exact dict. As appendJson: 1, 0, -1.
int appendReplyWithId(JsonBuffer &out, PyObject *reply, PyObject *id) {
    out.push('{');
    Py_ssize_t position = 0;
    PyObject *key, *item;
    bool first = true, placed = false;
    while (PyDict_Next(reply, &position, &key, &item)) {
        if (!PyUnicode_CheckExact(key)) return 0;
        if (!first) out.push(',');
        first = false;
        if (!appendStr(out, key)) return 0;
        out.push(':');
        if (!placed && isIdKey(key)) {
            item = id;
            placed = true;
        }
        int written = PyUnicode_CheckExact(item) ? appendStr(out, item) : appendJson(out, item, 1);
        if (written <= 0) return written;
    }
    if (!placed) {
        out.append(first ? "\"id\":" : ",\"id\":", first ? 5 : 6);
        int written = appendJson(out, id, 1);
        if (written <= 0) return written;
    }
    out.push('}');
    return 1;
}

// The reply encoded and sent, with the request's `id` (null: none) as {**reply, "id": id}
// would have it (`reply` is then an exact dict). Written here when appendJson can, straight
// into the socket's cork buffer when it takes it (a compressed reply, a backlog, a reply too
// large for what is left of the cork buffer go through send()); else by orjson.dumps. A
// TypeError from orjson (an unencodable reply) goes to Client.send, which answers INTERNAL.
bool encodeAndSend(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *reply, PyObject *id) {
    bool coreSocket = Py_TYPE(ws) == &PyWebSocketType;
    if (self->nativeJson) {
        JsonBuffer &out = jsonBuffer;
        uws::WebSocket *socket = coreSocket ? reinterpret_cast<PyWebSocketObject *>(ws)->ws : nullptr;
        uws::WebSocket::InPlace space = socket ? socket->reserveInPlace(self->compress) : uws::WebSocket::InPlace{nullptr, 0};
        if (space.data) out.startInPlace(space.data, space.capacity);
        else out.start();
        int written;
        try {
            written = id ? appendReplyWithId(out, reply, id) : appendJson(out, reply, 0);
        } catch (const std::bad_alloc &) {
            out.settle();
            PyErr_NoMemory();
            return false;
        }
        if (written > 0) {
            bool ok = true;
            if (coreSocket) {
                if (!socket) {
                    PyErr_SetString(constants.closedError, "this WebSocket is closed");
                    ok = false;
                } else if (out.inPlace()) {
                    socket->commitInPlace(out.size, uws::OpCode::Text);
                } else {
                    socket->send(out.view(), uws::OpCode::Text, self->compress);
                }
                out.settle();
                return ok;
            }
            PyObject *encoded = PyBytes_FromStringAndSize(out.data, Py_ssize_t(out.size));
            out.settle();
            ok = encoded && sendText(self, ws, encoded);
            Py_XDECREF(encoded);
            return ok;
        }
        out.settle();
        if (written < 0) return false;
    }
    PyObject *withId = reply;
    if (id) {
        withId = PyDict_Copy(reply);
        if (!withId || PyDict_SetItem(withId, names.id, id) < 0) {
            Py_XDECREF(withId);
            return false;
        }
    }
    PyObject *encoded = PyObject_Vectorcall(self->dumps, &withId, 1, nullptr);
    bool ok;
    if (encoded) {
        ok = sendText(self, ws, encoded);
        Py_DECREF(encoded);
    } else if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        ok = done(callMethod(names.send, client, withId));
    } else {
        ok = false;
    }
    if (id) Py_DECREF(withId);
    return ok;
}

// ---- the request's JSON, read here -------------------------------------------------------
// orjson.loads's result for the requests clients send: an object of objects, arrays, strings
// without escapes, integers of up to 18 digits, true, false, null, nested at most
// maxJsonDepth deep. Anything else (an escape, a fraction or exponent, a longer or "-0"
// integer, deeper nesting, and every malformed text) gives null with no exception set, and
// the text is left to orjson.loads, which reads it or raises as before. Keys, and the
// top-level "type" value, come from a small cache of interned strings: the dict and route
// lookups then find them by identity. tests/unit/realtime/test_fast_path.py compares the
// results of both over generated texts.

struct JsonReader {
    const unsigned char *at, *end;
    __attribute__((always_inline)) void skipSpace() {
        while (at < end && (*at == ' ' || *at == '\n' || *at == '\r' || *at == '\t')) at++;
    }
    // After an item of an object or array: 1 at the next item (past the ','), 0 past the
    // closing byte, -1 anything else.
    int next(unsigned char close) {
        skipSpace();
        if (at < end && *at == ',') {
            at++;
            skipSpace();
            return 1;
        }
        if (at < end && *at == close) {
            at++;
            return 0;
        }
        return -1;
    }
};

// The bytes that end a run of plain string bytes: '"', '\\' and those under 0x20.
struct JsonStringStops {
    bool table[256] = {};
    constexpr JsonStringStops() {
        for (int c = 0; c < 0x20; c++) table[c] = true;
        table[int('"')] = true;
        table[int('\\')] = true;
    }
};
constexpr JsonStringStops jsonStringStops;

constexpr size_t keyCacheSize = 1024, keyCacheLongest = 32;
PyObject *keyCache[keyCacheSize]; // interned ASCII strings, by a hash of their bytes

// The cache's index for a key's bytes: its length and its first and last (up to) 4 bytes,
// mixed by one multiplication. Only a position in the cache: the bytes are compared in full
// before a cached string is used. (A per-byte hash cost a multiplication per byte, in a
// chain; keys are mostly short and differ in their ends.)
__attribute__((always_inline)) inline size_t keyCacheIndex(const unsigned char *bytes, size_t length) {
    uint64_t mixed = length;
    if (length >= 4) {
        uint32_t head, tail;
        std::memcpy(&head, bytes, 4);
        std::memcpy(&tail, bytes + length - 4, 4);
        mixed |= (uint64_t(head) << 32 | tail) << 6;
    } else {
        for (size_t index = 0; index < length; index++) mixed |= uint64_t(bytes[index]) << (8 * index + 8);
    }
    mixed ^= mixed >> 29;
    mixed *= 0x9e3779b97f4a7c15ull;
    return size_t(mixed >> 40) & (keyCacheSize - 1);
}

PyObject *cachedString(const unsigned char *bytes, size_t length) {
    PyObject *&slot = keyCache[keyCacheIndex(bytes, length)];
    if (slot && size_t(PyUnicode_GET_LENGTH(slot)) == length && std::memcmp(PyUnicode_DATA(slot), bytes, length) == 0) {
        return Py_NewRef(slot);
    }
    PyObject *text = PyUnicode_New(Py_ssize_t(length), 127);
    if (!text) return nullptr;
    std::memcpy(PyUnicode_DATA(text), bytes, length);
    PyUnicode_InternInPlace(&text);
    Py_XSETREF(slot, Py_NewRef(text));
    return text;
}

// At the opening quote.
PyObject *readJsonString(JsonReader &reader, bool cached) {
    // The position in a local: through the reader, every byte read (an unsigned char may
    // alias anything) made the compiler store and reload it per byte.
    const unsigned char *start = reader.at + 1, *at = start, *end = reader.end;
    unsigned char high = 0;
    while (at < end && !jsonStringStops.table[*at]) high |= *at++;
    reader.at = at;
    if (at >= end || *at != '"') return nullptr; // an escape, a control character, the end
    size_t length = size_t(at - start);
    reader.at = at + 1;
    if (high & 0x80) {
        PyObject *text = PyUnicode_DecodeUTF8(reinterpret_cast<const char *>(start), Py_ssize_t(length), nullptr);
        if (!text && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear(); // orjson words it
        return text;
    }
    if (cached && length <= keyCacheLongest) return cachedString(start, length);
    PyObject *text = PyUnicode_New(Py_ssize_t(length), 127);
    if (text) std::memcpy(PyUnicode_DATA(text), start, length);
    return text;
}

PyObject *readJsonNumber(JsonReader &reader) {
    bool negative = *reader.at == '-';
    if (negative) reader.at++;
    const unsigned char *digits = reader.at;
    long long value = 0;
    while (reader.at < reader.end && *reader.at >= '0' && *reader.at <= '9') {
        if (reader.at - digits == 18) return nullptr; // 19 digits or more: orjson's
        value = value * 10 + (*reader.at++ - '0');
    }
    size_t count = size_t(reader.at - digits);
    if (count == 0 || (count > 1 && *digits == '0') || (negative && value == 0)) return nullptr;
    if (reader.at < reader.end && (*reader.at == '.' || *reader.at == 'e' || *reader.at == 'E')) return nullptr;
    return PyLong_FromLongLong(negative ? -value : value);
}

PyObject *readJsonValue(JsonReader &reader, int depth, bool cached);

// At the '{'. For the top-level object (depth 0), `type` (when given) receives the value of
// its "type" key, borrowed from the object (the last one when the key repeats, as the dict
// keeps), or stays null.
PyObject *readJsonObject(JsonReader &reader, int depth, PyObject **type = nullptr) {
    reader.at++;
    PyObject *object = PyDict_New();
    if (!object) return nullptr;
    reader.skipSpace();
    if (reader.at < reader.end && *reader.at == '}') {
        reader.at++;
        return object;
    }
    while (true) {
        if (reader.at >= reader.end || *reader.at != '"') break;
        PyObject *key = readJsonString(reader, true);
        if (!key) break;
        reader.skipSpace();
        if (reader.at >= reader.end || *reader.at != ':') {
            Py_DECREF(key);
            break;
        }
        reader.at++;
        reader.skipSpace();
        bool isType = depth == 0 && key == names.type;
        PyObject *value = readJsonValue(reader, depth + 1, isType);
        if (!value || PyDict_SetItem(object, key, value) < 0) {
            Py_DECREF(key);
            Py_XDECREF(value);
            break;
        }
        if (isType && type) *type = value; // the dict holds it now
        Py_DECREF(key);
        Py_DECREF(value);
        int more = reader.next('}');
        if (more > 0) continue;
        if (more == 0) return object;
        break;
    }
    Py_DECREF(object);
    return nullptr;
}

// At the '['.
PyObject *readJsonArray(JsonReader &reader, int depth) {
    reader.at++;
    PyObject *array = PyList_New(0);
    if (!array) return nullptr;
    reader.skipSpace();
    if (reader.at < reader.end && *reader.at == ']') {
        reader.at++;
        return array;
    }
    while (true) {
        PyObject *value = readJsonValue(reader, depth + 1, false);
        if (!value) break;
        int appended = PyList_Append(array, value);
        Py_DECREF(value);
        if (appended < 0) break;
        int more = reader.next(']');
        if (more > 0) continue;
        if (more == 0) return array;
        break;
    }
    Py_DECREF(array);
    return nullptr;
}

bool readJsonWord(JsonReader &reader, const char *word, size_t length) {
    if (size_t(reader.end - reader.at) < length || std::memcmp(reader.at, word, length) != 0) return false;
    reader.at += length;
    return true;
}

PyObject *readJsonValue(JsonReader &reader, int depth, bool cached) {
    if (reader.at >= reader.end) return nullptr;
    switch (*reader.at) {
    case '"': return readJsonString(reader, cached);
    case '{': return depth < maxJsonDepth ? readJsonObject(reader, depth) : nullptr;
    case '[': return depth < maxJsonDepth ? readJsonArray(reader, depth) : nullptr;
    case 't': return readJsonWord(reader, "true", 4) ? Py_NewRef(Py_True) : nullptr;
    case 'f': return readJsonWord(reader, "false", 5) ? Py_NewRef(Py_False) : nullptr;
    case 'n': return readJsonWord(reader, "null", 4) ? Py_NewRef(Py_None) : nullptr;
    default: return (*reader.at == '-' || (*reader.at >= '0' && *reader.at <= '9')) ? readJsonNumber(reader) : nullptr;
    }
}

// The message decoded: a new reference, or null with an exception (orjson.loads's for a text
// read there). `type`, when given, receives the value of the decoded object's "type" key as
// the C reader found it (borrowed), else stays null (then look it up).
PyObject *decodeMessage(RealtimeDispatchObject *self, std::string_view message, PyObject *data,
                        PyObject **type = nullptr) {
    if (self->nativeJson) {
        JsonReader reader{reinterpret_cast<const unsigned char *>(message.data()),
                          reinterpret_cast<const unsigned char *>(message.data()) + message.size()};
        reader.skipSpace();
        if (reader.at < reader.end && *reader.at == '{') {
            PyObject *found = nullptr;
            PyObject *decoded = readJsonObject(reader, 0, &found);
            if (decoded) {
                reader.skipSpace();
                if (reader.at == reader.end) {
                    if (type) *type = found;
                    return decoded;
                }
                Py_DECREF(decoded);
            } else if (PyErr_Occurred()) {
                return nullptr;
            }
        }
    }
    PyObject *source = data;
    if (source) {
        Py_INCREF(source);
    } else {
        source = PyBytes_FromStringAndSize(message.data(), Py_ssize_t(message.size()));
        if (!source) return nullptr;
    }
    PyObject *decoded = PyObject_Vectorcall(self->loads, &source, 1, nullptr);
    Py_DECREF(source);
    return decoded;
}

// A plain sync handler's return value, as on_message answers it: {**reply, "id": id} when the
// request has an id, written without making that dict (encodeAndSend). A reply that is the
// message itself needs no id: {**message, "id": message["id"]} equals it.
bool answer(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *message, PyObject *reply) {
    PyObject *batcher = self->clientBatcher.get(client);
    if (!batcher) return false;
    bool direct = PyDict_CheckExact(reply) && batcher == Py_None;
    Py_DECREF(batcher);
    if (direct && reply == message) return encodeAndSend(self, ws, client, reply, nullptr);
    PyObject *requestId = PyDict_GetItemWithError(message, names.id); // read after the handler ran, as in Python
    if (!requestId && PyErr_Occurred()) return false;
    if (!requestId) requestId = Py_None;
    if (!direct) return done(callMethod(names.reply, self->dispatcher, client, requestId, reply, Py_None));
    // The message may hold the only reference to its id, and the reply (if the handler kept
    // the message) to the message.
    Py_INCREF(requestId);
    Py_INCREF(reply);
    bool ok = encodeAndSend(self, ws, client, reply, requestId == Py_None ? nullptr : requestId);
    Py_DECREF(reply);
    Py_DECREF(requestId);
    return ok;
}

// protocol.now_ms(): wall-clock milliseconds.
long long nowMilliseconds() {
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

// protocol.now_ms() for a reply to a message of `ws`: read once per dispatch of the loop, as
// batchSeconds reads the monotonic clock, and afresh for a socket that is not the core's (tests,
// calls from Python). A PONG's serverTime is then at most one dispatch's duration earlier than
// a fresh read would give (the time spent on the events before it in that dispatch): a time
// taken while the server was handling the events its request arrived with.
long long dispatchMilliseconds(RealtimeDispatchObject *self, PyObject *ws) {
    return self->wall.at(ws, nowMilliseconds);
}

// dispatchMilliseconds as text.
std::string_view dispatchMillisecondsText(RealtimeDispatchObject *self, PyObject *ws) {
    return self->wallText.of(dispatchMilliseconds(self, ws));
}

bool isPing(PyObject *kind) {
    return PyUnicode_GET_LENGTH(kind) == 4 && PyUnicode_CompareWithASCIIString(kind, "PING") == 0;
}

// A built-in's reply (a dict made here), as Dispatcher.reply gives it: sent, or collected
// for the BATCH being answered, with the request's id when it is not None.
bool answerBuiltin(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *message, PyObject *reply) {
    if (!self->collecting) return answer(self, ws, client, message, reply);
    PyObject *requestId = PyDict_GetItemWithError(message, names.id);
    if (!requestId && PyErr_Occurred()) return false;
    if (requestId && requestId != Py_None && PyDict_SetItem(reply, names.id, requestId) < 0) return false;
    return PyList_Append(self->collecting, reply) == 0;
}

// Builtins.ping's {"type": "PONG", "serverTime": ...}, answered as Dispatcher.reply would.
bool answerPing(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *message) {
    PyObject *reply = PyDict_New();
    if (!reply) return false;
    PyObject *serverTime = PyLong_FromLongLong(dispatchMilliseconds(self, ws));
    bool ok = serverTime && PyDict_SetItem(reply, names.type, names.pong) == 0 &&
              PyDict_SetItem(reply, names.serverTime, serverTime) == 0 && answerBuiltin(self, ws, client, message, reply);
    Py_XDECREF(serverTime);
    Py_DECREF(reply);
    return ok;
}

// ---- SUBSCRIBE, UNSUBSCRIBE, PUBLISH: their plain case -------------------------------------
// Plain: no batcher, an open client, no topic hook, broker, relay, presence or history, a
// token without topic claims, and a valid topic within the limits. Then the reply and the
// fan-out are Builtins' (builtins.py) and PubSub's (pubsub.py) exactly; in every other case,
// errors included, the Python dispatcher answers, so its texts stay the only ones.

bool isNone(PyObject *object, const Slot &slot, int &plain) {
    PyObject *value = slot.get(object);
    if (!value) return false;
    if (value != Py_None) plain = 0;
    Py_DECREF(value);
    return true;
}

bool isFalse(PyObject *object, const Slot &slot, int &plain) {
    PyObject *value = slot.get(object);
    if (!value) return false;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (truth < 0) return false;
    if (truth) plain = 0;
    return true;
}

// isNone and isFalse reading the slot in place when it is one (no reference taken, the bool
// compared), else as they do. Inlined: plainPubSub makes eight of these per message.
__attribute__((always_inline)) inline bool slotIsNone(PyObject *object, const Slot &slot, int &plain) {
    PyObject **at = slot.at(object);
    if (!at || !*at) return isNone(object, slot, plain);
    if (*at != Py_None) plain = 0;
    return true;
}

__attribute__((always_inline)) inline bool slotIsFalse(PyObject *object, const Slot &slot, int &plain) {
    PyObject **at = slot.at(object);
    if (!at || (*at != Py_False && *at != Py_True)) return isFalse(object, slot, plain);
    if (*at == Py_True) plain = 0;
    return true;
}

// 1 when `client`'s pub/sub request can be done here, 0 when Python must, -1 on error; the
// client's ws (a new reference) in `clientWs` when 1. Stops at the first state that is not
// plain.
int plainPubSub(RealtimeDispatchObject *self, PyObject *client, PyObject *&clientWs) {
    int plain = 1;
    PyObject *pubsub = self->pubsub;
    if (!slotIsNone(client, self->clientBatcher, plain) || (plain && !slotIsFalse(client, self->clientClosed, plain)) ||
        (plain && !slotIsNone(client, self->clientTopicsAllowed, plain)) ||
        (plain && !slotIsNone(pubsub, self->pubsubTopicHook, plain)) ||
        (plain && !slotIsNone(pubsub, self->pubsubBroker, plain)) ||
        (plain && !slotIsNone(pubsub, self->pubsubRelay, plain)) ||
        (plain && !slotIsNone(pubsub, self->pubsubPresence, plain)) ||
        (plain && !slotIsFalse(pubsub, self->pubsubHistoryOn, plain))) {
        return -1;
    }
    if (!plain) return 0;
    clientWs = self->clientWs.get(client);
    if (!clientWs) return -1;
    if (clientWs == Py_None) {
        Py_CLEAR(clientWs);
        return 0;
    }
    return 1;
}

bool readSize(PyObject *object, const Slot &slot, Py_ssize_t &out) {
    PyObject *value = slot.get(object);
    if (!value) return false;
    out = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    return !(out == -1 && PyErr_Occurred());
}

// PubSub.max_topic_length, read again only when its slot holds another object.
bool maxTopicLength(RealtimeDispatchObject *self, Py_ssize_t &out) {
    PyObject **at = self->pubsubMaxTopicLength.at(self->pubsub);
    if (at && *at && *at == self->maxTopicLengthObject) {
        out = self->maxTopicLengthValue;
        return true;
    }
    if (!readSize(self->pubsub, self->pubsubMaxTopicLength, out)) return false;
    if (at && *at && PyLong_CheckExact(*at)) {
        Py_XSETREF(self->maxTopicLengthObject, Py_NewRef(*at));
        self->maxTopicLengthValue = out;
    }
    return true;
}

// The topic field when PubSub.check_topic would pass it before the subscription count: a
// non-empty str, not reserved, not too long. 1 valid (its UTF-8 in `view`), 0 not, -1 error.
int plainTopic(RealtimeDispatchObject *self, PyObject *topic, std::string_view &view, bool checkReserved) {
    if (!topic || !PyUnicode_CheckExact(topic) || PyUnicode_GET_LENGTH(topic) == 0) return 0;
    if (checkReserved) {
        PyObject *reserved = self->pubsubReserved.get(self->pubsub);
        if (!reserved) return -1;
        bool stock = reserved == self->stockReserved;
        bool none = reserved == Py_None;
        Py_DECREF(reserved);
        if (!none) {
            if (!stock) return 0;
            Py_ssize_t prefixed = PyUnicode_Tailmatch(topic, self->reservedPrefix, 0, PY_SSIZE_T_MAX, -1);
            if (prefixed < 0) return -1;
            if (prefixed) return 0;
            int equal = PyUnicode_Compare(topic, self->reservedTopic);
            if (equal == -1 && PyErr_Occurred()) return -1;
            if (equal == 0) return 0;
        }
        Py_ssize_t maxLength;
        if (!maxTopicLength(self, maxLength)) return -1;
        if (PyUnicode_GET_LENGTH(topic) > maxLength) return 0;
    }
    Py_ssize_t length;
    const char *utf8 = PyUnicode_AsUTF8AndSize(topic, &length);
    if (!utf8) {
        PyErr_Clear();
        return 0;
    }
    view = std::string_view(utf8, size_t(length));
    return 1;
}

uws::WebSocket *nativeSocket(PyObject *ws) {
    return Py_TYPE(ws) == &PyWebSocketType ? reinterpret_cast<PyWebSocketObject *>(ws)->ws : nullptr;
}

// A socket method's bool result: 1, 0, or -1 on error.
int truth(PyObject *result) {
    if (!result) return -1;
    int value = PyObject_IsTrue(result);
    Py_DECREF(result);
    return value;
}

// {"type": kind, "topic": topic}, answered with the request's id.
bool answerTopic(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *message, PyObject *kind,
                 PyObject *topic) {
    PyObject *reply = PyDict_New();
    if (!reply) return false;
    bool ok = PyDict_SetItem(reply, names.type, kind) == 0 && PyDict_SetItem(reply, names.topic, topic) == 0 &&
              answerBuiltin(self, ws, client, message, reply);
    Py_DECREF(reply);
    return ok;
}

// The prelude SUBSCRIBE, UNSUBSCRIBE and PUBLISH share: the request is plain (plainPubSub)
// and its topic valid (plainTopic). 1 with the client's ws (a new reference) in `clientWs`
// and the topic's UTF-8 in `view`; 0 for the Python path, -1 error (neither set).
int plainTopicRequest(RealtimeDispatchObject *self, PyObject *client, PyObject *topic, bool checkReserved,
                      PyObject *&clientWs, std::string_view &view) {
    int plain = plainPubSub(self, client, clientWs);
    if (plain <= 0) return plain;
    int valid = plainTopic(self, topic, view, checkReserved);
    if (valid <= 0) Py_CLEAR(clientWs);
    return valid;
}

// The UTF-8 of a str: its data when it is compact ASCII (no call), else PyUnicode_AsUTF8AndSize's.
bool utf8View(PyObject *text, std::string_view &view) {
    if (PyUnicode_IS_COMPACT_ASCII(text)) {
        view = std::string_view(static_cast<const char *>(PyUnicode_DATA(text)), size_t(PyUnicode_GET_LENGTH(text)));
        return true;
    }
    Py_ssize_t length;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &length);
    if (!utf8) return false;
    view = std::string_view(utf8, size_t(length));
    return true;
}

// plainTopic on the UTF-8 of a str (a scanned plain string: valid UTF-8 without escapes),
// with no str made: the same checks, startswith and == being byte tests on UTF-8 and the
// length counted in code points. 1 valid, 0 not, -1 error.
int plainTopicText(RealtimeDispatchObject *self, std::string_view text, bool checkReserved) {
    if (text.empty()) return 0;
    if (!checkReserved) return 1;
    PyObject *reserved = self->pubsubReserved.get(self->pubsub);
    if (!reserved) return -1;
    bool stock = reserved == self->stockReserved;
    bool none = reserved == Py_None;
    Py_DECREF(reserved);
    if (!none) {
        if (!stock) return 0;
        std::string_view prefix, control;
        if (!utf8View(self->reservedPrefix, prefix) || !utf8View(self->reservedTopic, control)) return -1;
        // First bytes first: most topics start like neither reserved name.
        if ((prefix.empty() || text[0] == prefix[0]) && text.size() >= prefix.size() &&
            std::memcmp(text.data(), prefix.data(), prefix.size()) == 0) {
            return 0;
        }
        if (text.size() == control.size() && text[0] == control[0] && text == control) return 0;
    }
    Py_ssize_t maxLength;
    if (!maxTopicLength(self, maxLength)) return -1;
    if (Py_ssize_t(text.size()) > maxLength) {
        Py_ssize_t characters = 0;
        for (char c : text) characters += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
        if (characters > maxLength) return 0;
    }
    return 1;
}

// plainTopicRequest for a scanned topic's text: 1 with the client's ws (a new reference) in
// `clientWs`, 0 for the Python path, -1 error.
int plainTopicTextRequest(RealtimeDispatchObject *self, PyObject *client, std::string_view text, bool checkReserved,
                          PyObject *&clientWs) {
    int plain = plainPubSub(self, client, clientWs);
    if (plain <= 0) return plain;
    int valid = plainTopicText(self, text, checkReserved);
    if (valid <= 0) Py_CLEAR(clientWs);
    return valid;
}

// The topic as a str: `topic` (a new reference) when the caller has one, else made from `view`.
PyObject *topicObject(PyObject *topic, std::string_view view) {
    if (topic) return Py_NewRef(topic);
    return PyUnicode_DecodeUTF8(view.data(), Py_ssize_t(view.size()), nullptr);
}

// check_topic's subscription count, then Client.subscribe, on a plain request's client ws
// (borrowed) for the topic `view` (`topic` its str, or null: made only when needed).
// 1 subscribed, 0 for the Python path, -1 error.
int subscribeView(RealtimeDispatchObject *self, PyObject *clientWs, PyObject *topic, std::string_view view) {
    Py_ssize_t maxSubscriptions;
    if (!readSize(self->pubsub, self->pubsubMaxSubscriptions, maxSubscriptions)) return -1;
    if (uws::WebSocket *socket = nativeSocket(clientWs)) {
        if (Py_ssize_t(socket->subscriptions().topics.size()) >= maxSubscriptions && !socket->isSubscribed(view)) {
            return 0;
        }
        // Plain: no presence, no broker, so PubSub.on_subscription would do nothing.
        socket->subscribe(view, false);
        return 1;
    }
    if (Py_TYPE(clientWs) == &PyWebSocketType) return 0; // closed: the Python path raises what it raises
    PyObject *name = topicObject(topic, view);
    if (!name) return -1;
    int subscribed = truth(callMethod(names.isSubscribed, clientWs, name));
    if (subscribed == 0) {
        PyObject *topics = callMethod(names.getTopics, clientWs);
        Py_ssize_t count = topics ? PyObject_Length(topics) : -1;
        Py_XDECREF(topics);
        subscribed = count < 0 ? -1 : count < maxSubscriptions;
    }
    if (subscribed > 0 && truth(callMethod(names.subscribe, clientWs, name)) < 0) subscribed = -1;
    Py_DECREF(name);
    return subscribed;
}

// Client.unsubscribe on a plain request's client ws (borrowed): 1 done, 0 for the Python
// path, -1 error.
int unsubscribeView(PyObject *clientWs, PyObject *topic, std::string_view view) {
    if (uws::WebSocket *socket = nativeSocket(clientWs)) {
        socket->unsubscribe(view, false);
        return 1;
    }
    if (Py_TYPE(clientWs) == &PyWebSocketType) return 0; // closed
    PyObject *name = topicObject(topic, view);
    if (!name) return -1;
    int done = truth(callMethod(names.unsubscribe, clientWs, name)) < 0 ? -1 : 1;
    Py_DECREF(name);
    return done;
}

// check_topic's subscription count, then Client.subscribe, for a plain request: 1 subscribed,
// 0 for the Python path, -1 error.
int subscribeTopic(RealtimeDispatchObject *self, PyObject *client, PyObject *topic) {
    PyObject *clientWs = nullptr;
    std::string_view view;
    int valid = plainTopicRequest(self, client, topic, true, clientWs, view);
    if (valid <= 0) return valid;
    int subscribed = subscribeView(self, clientWs, topic, view);
    Py_DECREF(clientWs);
    return subscribed;
}

// Client.unsubscribe for a plain request: 1 done, 0 for the Python path, -1 error.
int unsubscribeTopic(RealtimeDispatchObject *self, PyObject *client, PyObject *topic) {
    PyObject *clientWs = nullptr;
    std::string_view view;
    int valid = plainTopicRequest(self, client, topic, false, clientWs, view);
    if (valid <= 0) return valid;
    valid = unsubscribeView(clientWs, topic, view);
    Py_DECREF(clientWs);
    return valid;
}

// A decoded SUBSCRIBE (`subscribing`) or UNSUBSCRIBE: 1 answered, 0 for the Python path, -1 error.
int topicHere(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *message, bool subscribing) {
    PyObject *topic = PyDict_GetItemWithError(message, names.topic);
    if (!topic && PyErr_Occurred()) return -1;
    int done = subscribing ? subscribeTopic(self, client, topic) : unsubscribeTopic(self, client, topic);
    if (done <= 0) return done;
    return answerTopic(self, ws, client, message, subscribing ? names.subscribed : names.unsubscribed, topic) ? 1 : -1;
}

// PubSub.publish_from on a plain topic: one MESSAGE encoded once, fanned out by the core,
// echoed to the publisher when asked; then PUBLISHED when the request has an id.
int publishHere(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *message) {
    PyObject *data = PyDict_GetItemWithError(message, names.data);
    if (!data) return PyErr_Occurred() ? -1 : 0;
    PyObject *topic = PyDict_GetItemWithError(message, names.topic);
    if (!topic && PyErr_Occurred()) return -1;
    PyObject *clientWs = nullptr;
    std::string_view view;
    int valid = plainTopicRequest(self, client, topic, true, clientWs, view);
    if (valid <= 0) return valid;
    if (Py_TYPE(clientWs) == &PyWebSocketType && !nativeSocket(clientWs)) valid = 0; // closed
    PyObject *echoFlag = valid > 0 ? PyDict_GetItemWithError(message, names.echo) : nullptr;
    int echo = echoFlag ? PyObject_IsTrue(echoFlag) : 0;
    if (valid > 0 && (echo < 0 || (!echoFlag && PyErr_Occurred()))) valid = -1;
    PyObject *compressFlag = valid > 0 ? self->pubsubCompress.get(self->pubsub) : nullptr;
    int compress = compressFlag ? PyObject_IsTrue(compressFlag) : 0;
    Py_XDECREF(compressFlag);
    if (valid > 0 && (!compressFlag || compress < 0)) valid = -1;
    PyObject *from = valid > 0 ? self->clientId.get(client) : nullptr;
    if (valid > 0 && !from) valid = -1;
    if (valid <= 0) {
        Py_DECREF(clientWs);
        return valid;
    }
    PyObject *delivery = PyDict_New();
    PyObject *payload = nullptr;
    bool ok = delivery && PyDict_SetItem(delivery, names.type, names.message) == 0 &&
              PyDict_SetItem(delivery, names.topic, topic) == 0 && PyDict_SetItem(delivery, names.data, data) == 0 &&
              PyDict_SetItem(delivery, names.from, from) == 0 &&
              (payload = PyObject_Vectorcall(self->dumps, &delivery, 1, nullptr)) != nullptr;
    Py_XDECREF(delivery);
    Py_DECREF(from);
    if (ok) {
        std::string_view bytes(PyBytes_AS_STRING(payload), size_t(PyBytes_GET_SIZE(payload)));
        if (uws::WebSocket *socket = nativeSocket(clientWs)) {
            socket->publish(view, bytes, uws::OpCode::Text, compress != 0);
        } else {
            ok = truth(callMethod(names.publish, clientWs, topic, payload, self->one, compress ? Py_True : Py_False)) >= 0;
        }
    }
    // Client.send(message) for the echo: the same bytes (the client is open, without batcher).
    if (ok && echo) ok = sendText(self, clientWs, payload);
    Py_XDECREF(payload);
    Py_DECREF(clientWs);
    if (!ok) return -1;
    int hasId = PyDict_Contains(message, names.id);
    if (hasId < 0) return -1;
    if (!hasId) return 1;
    return answerTopic(self, ws, client, message, names.published, topic) ? 1 : -1;
}

int builtinHere(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *kind, PyObject *message);
bool batchItems(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *items, Py_ssize_t from,
                PyObject *replies);
bool batchReply(RealtimeDispatchObject *self, PyObject *client, PyObject *message, PyObject *replies);

// A BATCH of `count` items refused by the rate limit: Dispatcher.rate_limited with the id of
// the decoded request `message` (as Python reads it) and the tokens asked for. True when done.
bool batchRateLimited(RealtimeDispatchObject *self, PyObject *client, PyObject *bucket, PyObject *message,
                      Py_ssize_t count) {
    PyObject *requestId = PyDict_GetItemWithError(message, names.id);
    PyObject *tokens = requestId || !PyErr_Occurred() ? PyLong_FromSsize_t(count) : nullptr;
    bool ok = tokens && done(callMethod(names.rateLimited, self->dispatcher, client, bucket,
                                        requestId ? requestId : Py_None, tokens));
    Py_XDECREF(tokens);
    return ok;
}

// Dispatcher.batch at the top level: the same checks (a failing one goes to Python before
// anything is done), one token per item taken through TokenBucket.take, each item of a
// built-in above done here and every other one by Dispatcher.batch_item, the replies sent in
// one BATCH frame (or an ACK) by Client.send. 1 answered, 0 for the Python path, -1 error.
int batchHere(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *message) {
    PyObject *items = PyDict_GetItemWithError(message, names.messages);
    if (!items) return PyErr_Occurred() ? -1 : 0;
    if (!PyList_CheckExact(items)) return 0;
    Py_ssize_t count = PyList_GET_SIZE(items);
    if (count > self->maxBatchItems) return 0;
    Py_INCREF(items);
    PyObject *bucket = self->clientBucket.get(client);
    if (!bucket) {
        Py_DECREF(items);
        return -1;
    }
    if (bucket != Py_None && count > 1) {
        int taken = takeTokens(self, bucket, count - 1, batchSeconds(self, ws));
        if (taken <= 0) {
            bool ok = taken == 0 && batchRateLimited(self, client, bucket, message, count);
            Py_DECREF(bucket);
            Py_DECREF(items);
            return ok ? 1 : -1;
        }
    }
    Py_DECREF(bucket);
    PyObject *replies = PyList_New(0);
    bool ok = replies != nullptr && batchItems(self, ws, client, items, 0, replies);
    Py_DECREF(items);
    ok = ok && batchReply(self, client, message, replies);
    Py_XDECREF(replies);
    return ok ? 1 : -1;
}

// The items of a BATCH from `from` on, their replies appended to `replies`: each built-in
// above done here and every other one by Dispatcher.batch_item.
bool batchItems(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *items, Py_ssize_t from,
                PyObject *replies) {
    bool ok = true;
    PyObject *outer = self->collecting;
    for (Py_ssize_t i = from; ok && i < PyList_GET_SIZE(items); i++) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(items, i));
        PyObject *kind = PyDict_CheckExact(item) ? PyDict_GetItemWithError(item, names.type) : nullptr;
        int here = 0;
        if (kind && PyUnicode_CheckExact(kind)) {
            Py_INCREF(kind);
            self->collecting = replies;
            here = builtinHere(self, ws, client, kind, item);
            self->collecting = outer;
            Py_DECREF(kind);
        } else if (PyErr_Occurred()) {
            here = -1;
        }
        if (here == 0) ok = done(callMethod(names.batchItem, self->dispatcher, client, item, replies));
        else ok = here > 0;
        Py_DECREF(item);
    }
    return ok;
}

// Dispatcher.batch's answer: the replies in one BATCH frame, an ACK when there are none and
// the request has an id, else nothing; sent by Client.send.
bool batchReply(RealtimeDispatchObject *self, PyObject *client, PyObject *message, PyObject *replies) {
    bool ok = true;
    int hasId = PyDict_Contains(message, names.id);
    PyObject *frame = nullptr;
    if (hasId >= 0 && (PyList_GET_SIZE(replies) || hasId)) frame = PyDict_New();
    PyObject *timestamp = frame && PyList_GET_SIZE(replies) ? PyLong_FromLongLong(nowMilliseconds()) : nullptr;
    if (hasId < 0 || (frame == nullptr && (PyList_GET_SIZE(replies) || hasId))) {
        ok = false;
    } else if (PyList_GET_SIZE(replies)) {
        ok = timestamp && PyDict_SetItem(frame, names.type, names.batch) == 0 &&
             PyDict_SetItem(frame, names.timestamp, timestamp) == 0 &&
             PyDict_SetItem(frame, names.messages, replies) == 0 &&
             (!hasId || PyDict_SetItem(frame, names.id, PyDict_GetItem(message, names.id)) == 0) &&
             done(callMethod(names.send, client, frame));
    } else if (hasId) {
        ok = PyDict_SetItem(frame, names.type, names.ack) == 0 &&
             PyDict_SetItem(frame, names.id, PyDict_GetItem(message, names.id)) == 0 &&
             done(callMethod(names.send, client, frame));
    }
    Py_XDECREF(timestamp);
    Py_XDECREF(frame);
    return ok;
}

bool named(PyObject *kind, const char *text, Py_ssize_t length) {
    return PyUnicode_GET_LENGTH(kind) == length && PyUnicode_CompareWithASCIIString(kind, text) == 0;
}

// A built-in done here: 1, 0 when it is for the Python dispatcher, -1 error.
int builtinHere(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *kind, PyObject *message) {
    if (self->answersPing && isPing(kind)) return answerPing(self, ws, client, message) ? 1 : -1;
    if (self->answersPublish && named(kind, "PUBLISH", 7)) return publishHere(self, ws, client, message);
    if (self->answersSubscribe && named(kind, "SUBSCRIBE", 9)) return topicHere(self, ws, client, message, true);
    if (self->answersUnsubscribe && named(kind, "UNSUBSCRIBE", 11)) return topicHere(self, ws, client, message, false);
    // A BATCH inside a BATCH is Python's to refuse.
    if (self->answersBatch && !self->collecting && named(kind, "BATCH", 5)) return batchHere(self, ws, client, message);
    return 0;
}

// A decoded message for a fast route: count, call (one call in sampleMask + 1 timed), answer.
bool callFastRoute(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *message, PyObject *route) {
    // Route._calls is a _core.Counter: a C integer, incremented in place (a Python int here
    // cost an addition and an allocation per message).
    // The counter is read in place (no reference: nothing runs between the read and the
    // increment), and the histogram only for the one call in sampleMask + 1 that is timed.
    unsigned long long calls;
    PyObject **counterAt = self->routeCalls.at(route);
    if (counterAt && *counterAt && Py_IS_TYPE(*counterAt, &CounterType)) {
        calls = ++reinterpret_cast<CounterObject *>(*counterAt)->value;
    } else {
        PyObject *counter = self->routeCalls.get(route);
        if (!counter) return false;
        if (!Py_IS_TYPE(counter, &CounterType)) {
            Py_DECREF(counter);
            PyErr_SetString(PyExc_TypeError, "Route._calls must be a uws_py._core.Counter");
            return false;
        }
        calls = ++reinterpret_cast<CounterObject *>(counter)->value;
        Py_DECREF(counter);
    }
    PyObject *histogram = Py_NewRef(Py_None);
    if (!(calls & self->sampleMask)) {
        Py_SETREF(histogram, self->routeHistogram.get(route));
        if (!histogram) return false;
    }
    PyObject *handler = self->routeHandler.get(route);
    if (!handler) {
        Py_DECREF(histogram);
        return false;
    }
    bool timed = histogram != Py_None;
    double started = timed ? monotonicSeconds() : 0.0;
    PyObject *argv[] = {client, message};
    PyObject *reply = PyObject_Vectorcall(handler, argv, 2, nullptr);
    Py_DECREF(handler);
    if (reply && timed) {
        PyObject *elapsed = PyFloat_FromDouble(monotonicSeconds() - started);
        if (!elapsed || !done(callMethod(names.observe, histogram, elapsed))) Py_CLEAR(reply);
        Py_XDECREF(elapsed);
    }
    Py_DECREF(histogram);
    if (!reply) return handlerFailed(self, client, message, route);
    bool ok = answer(self, ws, client, message, reply);
    Py_DECREF(reply);
    return ok;
}

// ---- Built-ins answered from the scan, without decoding -----------------------------------
// uws::scanRealtimeMessage (cpp/src/RealtimeScan.cpp) validates the text and finds its fields;
// when it knows the message, its type is PING, SUBSCRIBE, UNSUBSCRIBE or PUBLISH (or a BATCH of
// them: batchFromScan) (the stock built-in,
// with no route of that name), its id absent, null, a canonical integer or an escape-free
// string, the client without batcher and the request plain (for the pub/sub ones), the reply
// is written here as the bytes orjson.dumps gives for Dispatcher.reply's dict: the same keys in
// the same order, the id's and topic's text copied (orjson writes them back as they are). In
// every other case it returns 0 and the message takes the decoding path above, unchanged.

bool sendBytes(RealtimeDispatchObject *self, PyObject *ws, std::string_view bytes) {
    if (Py_TYPE(ws) == &PyWebSocketType) {
        uws::WebSocket *socket = reinterpret_cast<PyWebSocketObject *>(ws)->ws;
        if (!socket) {
            PyErr_SetString(constants.closedError, "this WebSocket is closed");
            return false;
        }
        socket->send(bytes, uws::OpCode::Text, self->compress);
        return true;
    }
    PyObject *encoded = PyBytes_FromStringAndSize(bytes.data(), Py_ssize_t(bytes.size()));
    if (!encoded) return false;
    bool ok = done(callMethod(names.send, ws, encoded, self->one, self->compress ? Py_True : Py_False));
    Py_DECREF(encoded);
    return ok;
}

// A reply's bytes, written with appendJson's buffer and writers: for the socket it answers,
// in place in its cork buffer when it takes it (as encodeAndSend's replies), else in `Inline`
// bytes on the stack (the heap past them). ReplyText's 192 bytes hold a reply (about three
// PONGs), BatchText's 2 KiB the BATCH frame of a few dozen items. HeaderRoom: the frame
// header expected in the cork buffer (reserveInPlace), 2 bytes for a short reply, 4 for a
// BATCH frame, which is mostly longer than 125 bytes.
template <size_t Inline, size_t HeaderRoom>
class ReplyBytes {
public:
    ReplyBytes() { out_.startInPlace(inline_, sizeof inline_); }
    // The reply to ws (on the stack when ws is null), sent by sendTo(ws): nothing may be sent
    // to any socket in between.
    ReplyBytes(RealtimeDispatchObject *self, PyObject *ws) {
        uws::WebSocket *socket =
            ws && Py_TYPE(ws) == &PyWebSocketType ? reinterpret_cast<PyWebSocketObject *>(ws)->ws : nullptr;
        uws::WebSocket::InPlace space =
            socket ? socket->reserveInPlace(self->compress, HeaderRoom) : uws::WebSocket::InPlace{nullptr, 0};
        if (space.data) {
            corked_ = socket;
            out_.startInPlace(space.data, space.capacity);
        } else {
            out_.startInPlace(inline_, sizeof inline_);
        }
    }
    ReplyBytes(const ReplyBytes &) = delete;
    ReplyBytes &operator=(const ReplyBytes &) = delete;

    __attribute__((always_inline)) void add(std::string_view text) { out_.appendShort(text.data(), text.size()); }
    // A string literal: a copy of a size known here, written without a call.
    template <size_t Size>
    __attribute__((always_inline)) void add(const char (&literal)[Size]) {
        out_.append(literal, Size - 1);
    }
    void add(long long number) { appendInteger(out_, number); }
    // A str's JSON, quoted and escaped as orjson writes it.
    void addString(std::string_view text) { appendJsonString(out_, text.data(), Py_ssize_t(text.size())); }
    // ,"id":ID} or } when the request has no id (or a null one).
    __attribute__((always_inline)) void closeWithId(const uws::ScannedValue &id) {
        if (id.present() && id.kind != uws::JsonKind::Null) {
            add(",\"id\":");
            add(id.raw);
        }
        add("}");
    }
    // Room for `more` bytes at end(), then wrote(n) for the n written there.
    __attribute__((always_inline)) char *room(size_t more) {
        out_.reserve(more);
        return end();
    }
    char *end() { return out_.data + out_.size; }
    void wrote(size_t written) { out_.size += written; }
    size_t size() const { return out_.size; }
    std::string_view view() const { return out_.view(); }
    // Queued in the cork buffer where it was written, else sent by sendBytes.
    bool sendTo(RealtimeDispatchObject *self, PyObject *ws) {
        if (corked_ && out_.inPlace()) {
            corked_->commitInPlace(out_.size, uws::OpCode::Text, HeaderRoom);
            return true;
        }
        return sendBytes(self, ws, view());
    }

private:
    char inline_[Inline];
    JsonBuffer out_;
    uws::WebSocket *corked_ = nullptr; // the socket whose cork buffer was lent
};

using ReplyText = ReplyBytes<192, 2>;
using BatchText = ReplyBytes<2048, 4>;

// 1 when the built-in `name` is the stock one and no route of that name is registered (the
// checks handle() makes before builtinHere), 0 not, -1 error. stockScanned keeps its answers
// while the routes dict is unchanged (its version tag), so a built-in's message looks nothing up.
int stockBuiltin(RealtimeDispatchObject *self, bool answers, PyObject *name) {
    if (!answers) return 0;
    PyObject *route = PyDict_GetItemWithError(self->routes, name);
    if (route) return 0;
    return PyErr_Occurred() ? -1 : 1;
}

// The client has no batcher (the reply is sent at once, as answer() does): 1, 0, -1 error.
int withoutBatcher(RealtimeDispatchObject *self, PyObject *client) {
    PyObject *batcher = self->clientBatcher.get(client);
    if (!batcher) return -1;
    bool none = batcher == Py_None;
    Py_DECREF(batcher);
    return none;
}

// A scanned SUBSCRIBE's or UNSUBSCRIBE's subscription change for a plain topic, without the
// reply: 1 done, 0 for the Python path, -1 error.
int topicScanned(RealtimeDispatchObject *self, PyObject *client, const uws::RealtimeScan &scan, bool subscribing) {
    if (!scan.topic.plainString()) return 0;
    std::string_view text = scan.topic.text();
    PyObject *clientWs = nullptr;
    int done = plainTopicTextRequest(self, client, text, subscribing, clientWs);
    if (done <= 0) return done;
    done = subscribing ? subscribeView(self, clientWs, nullptr, text) : unsubscribeView(clientWs, nullptr, text);
    Py_DECREF(clientWs);
    return done;
}

// {"type":"SUBSCRIBED"|"UNSUBSCRIBED","topic":TOPIC[,"id":ID]} (into a ReplyText or BatchText)
template <class Text>
void addTopicReply(Text &reply, const uws::RealtimeScan &scan, bool subscribing) {
    reply.add(subscribing ? "{\"type\":\"SUBSCRIBED\",\"topic\":" : "{\"type\":\"UNSUBSCRIBED\",\"topic\":");
    reply.add(scan.topic.raw);
    reply.closeWithId(scan.id);
}

// {"type":"SUBSCRIBED"|"UNSUBSCRIBED","topic":TOPIC[,"id":ID]} for a plain topic.
int topicFromScan(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, const uws::RealtimeScan &scan,
                  bool subscribing) {
    int done = topicScanned(self, client, scan, subscribing);
    if (done <= 0) return done;
    ReplyText reply(self, ws);
    addTopicReply(reply, scan, subscribing);
    return reply.sendTo(self, ws) ? 1 : -1;
}

int publishScanned(RealtimeDispatchObject *self, PyObject *client, const uws::RealtimeScan &scan);
template <class Text>
void addPublishedReply(Text &reply, const uws::RealtimeScan &scan);

// publishHere from the scan: the MESSAGE {"type":"MESSAGE","topic":..,"data":..,"from":..}
// written with the data's text copied (only when it is plain: what orjson.dumps would write
// for its value), fanned out by the core, echoed when "echo" is true; then PUBLISHED when
// the request has an id (null included, answered without it, as Dispatcher.reply does).
int publishFromScan(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, const uws::RealtimeScan &scan) {
    int done = publishScanned(self, client, scan);
    if (done <= 0 || !scan.id.present()) return done;
    ReplyText reply(self, ws);
    addPublishedReply(reply, scan);
    return reply.sendTo(self, ws) ? 1 : -1;
}

// {"type":"PUBLISHED","topic":TOPIC[,"id":ID]} (into a ReplyText or BatchText)
template <class Text>
void addPublishedReply(Text &reply, const uws::RealtimeScan &scan) {
    reply.add("{\"type\":\"PUBLISHED\",\"topic\":");
    reply.add(scan.topic.raw);
    reply.closeWithId(scan.id);
}

// The truth of a bool without a call, of anything else by PyObject_IsTrue: 1, 0, -1 error.
int truthOf(PyObject *value) {
    if (value == Py_True) return 1;
    if (value == Py_False) return 0;
    return PyObject_IsTrue(value);
}

// A MESSAGE's "from", the client's id, when it is written here (escaped as orjson escapes
// it): an exact str with its UTF-8 in `view`, 1; 0 for anything else (orjson's rules).
int fromText(PyObject *from, std::string_view &view) {
    if (!PyUnicode_CheckExact(from)) return 0;
    if (utf8View(from, view)) return 1;
    PyErr_Clear(); // lone surrogates: the Python path's encode says what happens
    return 0;
}

// publishFromScan without the PUBLISHED reply: the MESSAGE fanned out and echoed. 1 done, 0
// for the Python path (nothing done), -1 error. The topic's subscribers are found first: a
// topic nobody subscribes to (the publish still counted by the core) gets no MESSAGE written
// unless it is echoed.
int publishScanned(RealtimeDispatchObject *self, PyObject *client, const uws::RealtimeScan &scan) {
    if (!scan.data.plain || !scan.topic.plainString()) return 0;
    bool echo;
    switch (scan.echo.kind) {
    case uws::JsonKind::Absent:
    case uws::JsonKind::Null:
    case uws::JsonKind::False:
        echo = false;
        break;
    case uws::JsonKind::True:
        echo = true;
        break;
    default:
        return 0; // the truth of other values is Python's
    }
    std::string_view view = scan.topic.text();
    PyObject *clientWs = nullptr;
    int valid = plainTopicTextRequest(self, client, view, true, clientWs);
    if (valid <= 0) return valid;
    uws::WebSocket *socket = nativeSocket(clientWs);
    PyObject *compressFlag = nullptr, *from = nullptr;
    int compress = -1;
    std::string_view fromView;
    if (!socket && Py_TYPE(clientWs) == &PyWebSocketType) {
        valid = 0; // closed
    } else if (!(compressFlag = self->pubsubCompress.get(self->pubsub)) || (compress = truthOf(compressFlag)) < 0 ||
               !(from = self->clientId.get(client))) {
        valid = -1;
    } else {
        valid = fromText(from, fromView);
    }
    Py_XDECREF(compressFlag);
    if (valid <= 0) {
        Py_XDECREF(from);
        Py_DECREF(clientWs);
        return valid;
    }
    uws::Topic *topic = socket ? socket->startPublish(view) : nullptr;
    bool ok = true;
    if (topic || echo || !socket) {
        ReplyText delivery;
        delivery.add("{\"type\":\"MESSAGE\",\"topic\":");
        delivery.add(scan.topic.raw);
        delivery.add(",\"data\":");
        delivery.add(scan.data.raw);
        delivery.add(",\"from\":");
        delivery.addString(fromView);
        delivery.add("}");
        std::string_view bytes = delivery.view();
        if (topic) {
            socket->publishTo(*topic, bytes, uws::OpCode::Text, compress != 0);
        } else if (!socket) {
            PyObject *name = topicObject(nullptr, view);
            PyObject *payload = name ? PyBytes_FromStringAndSize(bytes.data(), Py_ssize_t(bytes.size())) : nullptr;
            ok = payload &&
                 truth(callMethod(names.publish, clientWs, name, payload, self->one, compress ? Py_True : Py_False)) >= 0;
            Py_XDECREF(payload);
            Py_XDECREF(name);
        }
        if (ok && echo) ok = sendBytes(self, clientWs, bytes);
    }
    Py_DECREF(from);
    Py_DECREF(clientWs);
    return ok ? 1 : -1;
}

// The built-ins answered from a scan, in the order of RealtimeDispatchObject::stock; None for
// every other type.
enum class ScannedKind : uint8_t { Ping, Subscribe, Unsubscribe, Publish, Batch, None };

// `kind` when `type` (as long as `name`) is `name`, else None: a comparison of a known size.
template <size_t Size>
ScannedKind scannedKindIf(std::string_view type, const char (&name)[Size], ScannedKind kind) {
    return std::memcmp(type.data(), name, Size - 1) == 0 ? kind : ScannedKind::None;
}

// The kind a type names: the names' lengths differ, so one comparison after the switch.
ScannedKind scannedKind(std::string_view type) {
    auto is = [&type](const auto &name, ScannedKind kind) { return scannedKindIf(type, name, kind); };
    switch (type.size()) {
    case 4: return is("PING", ScannedKind::Ping);
    case 5: return is("BATCH", ScannedKind::Batch);
    case 7: return is("PUBLISH", ScannedKind::Publish);
    case 9: return is("SUBSCRIBE", ScannedKind::Subscribe);
    case 11: return is("UNSUBSCRIBE", ScannedKind::Unsubscribe);
    default: return ScannedKind::None;
    }
}

// The types answered from a scan, in a BATCH too, their ScannedKind their code (the scan's
// typeCode): the scan of any other item stops at its type.
int scannedType(std::string_view type) {
    ScannedKind kind = scannedKind(type);
    return kind < ScannedKind::Batch ? int(kind) : -1;
}

// Those and BATCH, at the top level: the scan of any other message stops at its type.
int scannedTopType(std::string_view type) {
    ScannedKind kind = scannedKind(type);
    return kind != ScannedKind::None ? int(kind) : -1;
}

// stockBuiltin for a scanned kind, looked up afresh: 1, 0, -1 error.
int stockOfKind(RealtimeDispatchObject *self, ScannedKind kind) {
    switch (kind) {
    case ScannedKind::Ping: return stockBuiltin(self, self->answersPing, names.ping);
    case ScannedKind::Subscribe: return stockBuiltin(self, self->answersSubscribe, names.subscribeKind);
    case ScannedKind::Unsubscribe: return stockBuiltin(self, self->answersUnsubscribe, names.unsubscribeKind);
    case ScannedKind::Publish: return stockBuiltin(self, self->answersPublish, names.publishKind);
    case ScannedKind::Batch: return stockBuiltin(self, self->answersBatch, names.batch);
    default: return 0;
    }
}

// stockOfKind of the five scanned kinds into self->stock, for the routes dict's `version`:
// false on error.
__attribute__((noinline)) bool refreshStock(RealtimeDispatchObject *self, uint64_t version) {
    static_assert(sizeof self->stock == size_t(ScannedKind::None), "one entry per scanned kind");
    for (int i = 0; i < int(ScannedKind::None); i++) {
        int known = stockOfKind(self, ScannedKind(i));
        if (known < 0) return false;
        self->stock[i] = int8_t(known);
    }
    self->stockKnown = true;
    self->stockRoutesVersion = version;
    return true;
}

// stockBuiltin for a scanned kind: 1, 0, -1 error. Kept for all five while the routes dict is
// unchanged (its version tag, as lookupRoute), so that a built-in's message looks no route up.
int stockScanned(RealtimeDispatchObject *self, ScannedKind kind) {
#if PY_VERSION_HEX < 0x030C0000
    uint64_t version = reinterpret_cast<PyDictObject *>(self->routes)->ma_version_tag;
    if ((!self->stockKnown || version != self->stockRoutesVersion) && !refreshStock(self, version)) return -1;
    return self->stock[int(kind)];
#else
    return stockOfKind(self, kind);
#endif
}

// The items of a BATCH answered from the scan at most (a longer one takes the decoding path).
constexpr size_t kScanBatchItems = 32;

// The stock built-in for a scanned item (the checks answerFromScan makes for a message of
// its type): 1 with its kind, 0 when the BATCH is for the decoding path, -1 error.
int scannedItem(RealtimeDispatchObject *self, const uws::RealtimeScan &item, ScannedKind &kind) {
    // (A plain type is one scannedType took: its kind is the scan's typeCode.)
    if (!item.type.plainString() || (item.id.present() && !item.id.plain)) return 0;
    kind = ScannedKind(item.typeCode);
    if (kind >= ScannedKind::Batch || (kind == ScannedKind::Publish && !item.data.present())) return 0;
    return stockScanned(self, kind);
}

// A BATCH's PONG, ,{"type":"PONG","serverTime":T,"id":ID} (without the comma first, without
// ,"id":ID when the PING has none or a null one), written with one room check and copies of
// sizes known here: the same text for every PING of the frame, its id copied from the request.
class PongHead {
public:
    explicit PongHead(std::string_view now) {
        constexpr std::string_view start = ",{\"type\":\"PONG\",\"serverTime\":";
        std::memcpy(text_, start.data(), start.size());
        std::memcpy(text_ + start.size(), now.data(), now.size()); // at most 20 digits
        std::memcpy(text_ + start.size() + now.size(), ",\"id\":", 6);
        size_ = start.size() + now.size() + 6;
    }
    template <class Text>
    __attribute__((always_inline)) void addTo(Text &frame, const uws::ScannedValue &id, bool first) {
        bool withId = id.present() && id.kind != uws::JsonKind::Null;
        size_t skip = first ? 1 : 0, head = size_ - (withId ? 0 : 6), idSize = withId ? id.raw.size() : 0;
        char *to = frame.room(kCopied + idSize + 1);
        std::memcpy(to, text_ + skip, kCopied); // a fixed size: its bytes past the head are written over or left unsent
        to += head - skip;
        if (withId) {
            copyShort(to, id.raw.data(), idSize);
            to += idSize;
        }
        *to++ = '}';
        frame.wrote(size_t(to - frame.end()));
    }

private:
    static constexpr size_t kCopied = 64; // >= the longest head: 30 + 20 + 6
    char text_[kCopied + 1] = {};
    size_t size_;
};

// The tokens of a scanned BATCH of `count` items whose frame's token is `untaken` (not null;
// see takeUntaken): one for the frame and one per item after the first, as handle takes the
// frame's and batchHere the items' (TokenBucket.take(), then take(count - 1)). Both in one
// go when both are granted in C; else those two takes in turn, a refusal answered as theirs
// (the items' by Dispatcher.rate_limited with the request's id as Python reads it). 1 taken,
// 0 refused (answered), -1 error.
int takeBatchUntaken(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *&untaken, size_t count,
                     std::string_view message) {
    PyObject *bucket = untaken;
    if (bucket == Py_None || count <= 1) return takeUntaken(self, ws, client, untaken);
    untaken = nullptr;
    double now = batchSeconds(self, ws);
    Py_ssize_t rest = Py_ssize_t(count) - 1;
    if (int here = takeHere(self, bucket, 1, rest, now)) return here;
    int taken = takeHere(self, bucket, 1, 0, now);
    if (taken == 0) taken = takeUntakenInPython(self, client, bucket);
    if (taken <= 0) return taken;
    taken = takeTokens(self, bucket, rest, now);
    if (taken != 0) return taken;
    PyObject *decoded = decodeMessage(self, message, nullptr);
    bool ok = decoded && batchRateLimited(self, client, bucket, decoded, Py_ssize_t(count));
    Py_XDECREF(decoded);
    return ok ? 0 : -1;
}

// The rest of a BATCH answered from the scan when item `from` is for the Python path (a
// subscription over the limit, a reserved topic...): the message decoded, the replies so far
// decoded from their bytes, then batchHere's loop from that item on and its reply.
int batchRestInPython(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, std::string_view message,
                      std::string_view replies, size_t from) {
    PyObject *decoded = decodeMessage(self, message, nullptr);
    if (!decoded) return -1;
    std::string list;
    list.reserve(replies.size() + 2);
    list += '[';
    list.append(replies);
    list += ']';
    PyObject *collected = decodeMessage(self, list, nullptr);
    PyObject *items = collected ? PyDict_GetItemWithError(decoded, names.messages) : nullptr;
    bool ok = items && PyList_CheckExact(items) && PyList_CheckExact(collected) &&
              batchItems(self, ws, client, items, Py_ssize_t(from), collected) &&
              batchReply(self, client, decoded, collected);
    if (!ok && !PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "a scanned BATCH decoded otherwise");
    Py_XDECREF(collected);
    Py_DECREF(decoded);
    return ok ? 1 : -1;
}

// batchHere from the scan, for a BATCH whose items are all built-ins the scan knows (PING,
// and SUBSCRIBE, UNSUBSCRIBE, PUBLISH with a plain topic): the same checks first (a failing
// one sends the whole BATCH to the decoding path, nothing done, its token `untaken`), the
// frame's and the items' tokens (takeBatchUntaken), then each item done as from the scan with its reply's bytes written into the BATCH
// frame {"type":"BATCH","timestamp":..,"messages":[..](,"id":ID)} (or {"type":"ACK","id":ID},
// or nothing) as Dispatcher.batch's dict encodes. An item the Python path must do hands it
// and the rest over (batchRestInPython). 1 answered, 0 not, -1 error.
int batchFromScan(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *&untaken,
                  std::string_view message, const uws::RealtimeScan &scan, const uws::ScannedItems &scanned) {
    // The items were scanned with the message (each an object of a type scannedType accepts).
    if (self->collecting || scan.messages.kind != uws::JsonKind::Array) return 0;
    size_t count = scanned.count;
    const uws::RealtimeScan *items = scanned.scans;
    if (Py_ssize_t(count) > self->maxBatchItems) return 0;
    int plain = 1;
    if (!slotIsFalse(client, self->clientClosed, plain)) return -1;
    if (!plain) return 0; // Client.send drops the reply
    ScannedKind kinds[kScanBatchItems];
    bool pingsOnly = true, any = false; // any: an item with a reply (all but PUBLISH without an id)
    for (size_t i = 0; i < count; i++) {
        int known = scannedItem(self, items[i], kinds[i]);
        if (known <= 0) return known;
        pingsOnly = pingsOnly && kinds[i] == ScannedKind::Ping;
        any = any || kinds[i] != ScannedKind::Publish || items[i].id.present();
    }
    int taken = takeBatchUntaken(self, ws, client, untaken, count, message);
    if (taken <= 0) return taken < 0 ? -1 : 1;
    // The frame written from its start: the timestamp (Dispatcher.batch reads it after the
    // items) is the dispatch's time, which the PONGs have too. PINGs send nothing while the
    // frame is written, so theirs goes straight into the cork buffer; the other items may.
    std::string_view now = dispatchMillisecondsText(self, ws);
    BatchText frame(self, pingsOnly ? ws : nullptr);
    if (any) {
        frame.add("{\"type\":\"BATCH\",\"timestamp\":");
        frame.add(now);
        frame.add(",\"messages\":[");
    } else if (scan.id.present()) {
        frame.add("{\"type\":\"ACK\"");
    }
    size_t itemsStart = frame.size();
    PongHead pong(now);
    bool first = true;
    for (size_t i = 0; i < count; i++) {
        const uws::RealtimeScan &item = items[i];
        ScannedKind kind = kinds[i];
        if (kind == ScannedKind::Ping) {
            pong.addTo(frame, item.id, first);
            first = false;
            continue;
        }
        bool subscribing = kind == ScannedKind::Subscribe;
        int result = kind == ScannedKind::Publish ? publishScanned(self, client, item)
                                                  : topicScanned(self, client, item, subscribing);
        if (result < 0) return -1;
        if (result == 0) return batchRestInPython(self, ws, client, message, frame.view().substr(itemsStart), i);
        if (kind == ScannedKind::Publish && !item.id.present()) continue; // PUBLISHED only with an id
        if (!first) frame.add(",");
        first = false;
        if (kind == ScannedKind::Publish) {
            addPublishedReply(frame, item);
        } else {
            addTopicReply(frame, item, subscribing);
        }
    }
    if (any) {
        frame.add("]");
    } else if (!scan.id.present()) {
        return 1; // no reply: nothing is sent (the written nothing abandoned)
    }
    if (scan.id.present()) {
        // "id" in message: kept when null too.
        frame.add(",\"id\":");
        frame.add(scan.id.raw);
    }
    frame.add("}");
    return frame.sendTo(self, ws) ? 1 : -1;
}

// False when `message` starts as most do, {"type":" then a type that is none of those (or
// has an escape): the decoding path takes it without a scan. Only ever a shortcut to that
// path, which is right for every message.
bool mayBeScannedType(std::string_view message) {
    constexpr std::string_view prefix = "{\"type\":\"";
    if (message.size() <= prefix.size() || message.compare(0, prefix.size(), prefix) != 0) return true;
    std::string_view rest = message.substr(prefix.size());
    auto startsWith = [&rest](std::string_view name) {
        return rest.size() > name.size() && rest.compare(0, name.size(), name) == 0 && rest[name.size()] == '"';
    };
    switch (rest[0]) {
    case 'B':
        return startsWith("BATCH");
    case 'P':
        return startsWith("PING") || startsWith("PUBLISH");
    case 'S':
        return startsWith("SUBSCRIBE");
    case 'U':
        return startsWith("UNSUBSCRIBE");
    default:
        return false;
    }
}

// A built-in answered from the message's bytes: 1 answered, 0 for the decoding path, -1 error.
// `untaken` is the message's token, not taken yet (takeUntaken): taken here once the message is
// known to be answered here (so before anything is done for it; the scan changes nothing), and
// null then; else the decoding path takes it.
int answerFromScan(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, PyObject *&untaken,
                   std::string_view message) {
    if (!self->answersPing && !self->answersSubscribe && !self->answersUnsubscribe && !self->answersPublish &&
        !self->answersBatch) {
        return 0;
    }
    if (!mayBeScannedType(message)) return 0;
    uws::RealtimeScan scan;
    // A BATCH's items, scanned with it: storage left unset, each constructed as it is scanned.
    alignas(uws::RealtimeScan) unsigned char storage[sizeof(uws::RealtimeScan) * kScanBatchItems];
    uws::ScannedItems items;
    items.scans = reinterpret_cast<uws::RealtimeScan *>(storage);
    items.capacity = kScanBatchItems;
    items.filter = scannedType;
    if (!uws::scanRealtimeMessage(message, scan, scannedTopType, &items) || !scan.type.plainString()) return 0;
    const uws::ScannedValue &id = scan.id;
    if (id.present() && !id.plain) return 0; // copied into the reply as it is
    ScannedKind kind = ScannedKind(scan.typeCode); // scannedTopType's, for a plain type
    if (kind == ScannedKind::None || (kind == ScannedKind::Publish && !scan.data.present())) return 0;
    int stock = stockScanned(self, kind);
    if (stock > 0) stock = withoutBatcher(self, client);
    if (stock <= 0) return stock;
    if (kind == ScannedKind::Batch) return batchFromScan(self, ws, client, untaken, message, scan, items);
    int taken = takeUntaken(self, ws, client, untaken);
    if (taken <= 0) return taken < 0 ? -1 : 1;
    if (kind == ScannedKind::Ping) {
        // Builtins.ping's {"type": "PONG", "serverTime": now_ms()}.
        ReplyText reply(self, ws);
        reply.add("{\"type\":\"PONG\",\"serverTime\":");
        reply.add(dispatchMillisecondsText(self, ws));
        reply.closeWithId(id);
        return reply.sendTo(self, ws) ? 1 : -1;
    }
    if (kind == ScannedKind::Publish) return publishFromScan(self, ws, client, scan);
    return topicFromScan(self, ws, client, scan, kind == ScannedKind::Subscribe);
}

// routes.get(kind), borrowed (null, without an exception, when there is none). The answer for
// the last kind is kept while the routes dict is unchanged (its version tag), which saves the
// dict lookup for a run of messages of one type.
PyObject *lookupRoute(RealtimeDispatchObject *self, PyObject *kind) {
#if PY_VERSION_HEX < 0x030C0000
    uint64_t version = reinterpret_cast<PyDictObject *>(self->routes)->ma_version_tag;
    if (kind == self->lastKind && version == self->lastRoutesVersion) return self->lastRoute;
    PyObject *route = PyDict_GetItemWithError(self->routes, kind);
    if (!route && PyErr_Occurred()) return nullptr;
    Py_XSETREF(self->lastKind, Py_NewRef(kind));
    Py_XSETREF(self->lastRoute, Py_XNewRef(route));
    self->lastRoutesVersion = version;
    return route;
#else
    return PyDict_GetItemWithError(self->routes, kind);
#endif
}

// One message of `client` on `ws`. `data` is the message object when the caller has one
// (a call from Python), else null: it is made only for the paths that need it.
bool handle(RealtimeDispatchObject *self, PyObject *ws, PyObject *client, std::string_view message,
            PyObject *opCodeObject, bool binary, PyObject *data) {
    PyObject *bucket = self->clientBucket.get(client);
    if (!bucket) return false;
    // The size is in bytes already: the same test as the Python path's on decoded text.
    bool oversize = binary || Py_ssize_t(message.size()) > self->maxPayloadLength;
    // The message's token: taken by answerFromScan when it answers the message, else here,
    // before anything else is done for it (as Dispatcher.on_message takes it first).
    PyObject *untaken = bucket;
    int scanned = oversize ? 0 : answerFromScan(self, ws, client, untaken, message);
    if (scanned == 0 && untaken) {
        int taken = takeUntaken(self, ws, client, untaken);
        if (taken <= 0) scanned = taken < 0 ? -1 : 1;
    }
    Py_DECREF(bucket);
    if (scanned) return scanned > 0;
    if (oversize) return admittedInPython(self, ws, client, message, opCodeObject, binary, data);
    PyObject *kind = nullptr;
    PyObject *decoded = decodeMessage(self, message, data, &kind);
    if (!decoded) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) return false;
        PyErr_Clear(); // not JSON: the Python path decodes again and words the error
        return admittedInPython(self, ws, client, message, opCodeObject, binary, data);
    }
    if (!kind && PyDict_CheckExact(decoded)) kind = PyDict_GetItemWithError(decoded, names.type);
    if (!kind || !PyUnicode_CheckExact(kind) || PyUnicode_GET_LENGTH(kind) == 0) {
        Py_DECREF(decoded);
        if (PyErr_Occurred()) return false;
        return admittedInPython(self, ws, client, message, opCodeObject, binary, data);
    }
    PyObject *route = lookupRoute(self, kind);
    if (!route && PyErr_Occurred()) {
        Py_DECREF(decoded);
        return false;
    }
    int fast = 0;
    if (route) {
        Py_INCREF(route);
        PyObject **flagAt = self->routeFast.at(route);
        if (flagAt && (*flagAt == Py_True || *flagAt == Py_False)) {
            fast = *flagAt == Py_True; // the common case, without a reference or a call
        } else {
            PyObject *flag = self->routeFast.get(route);
            fast = flag ? PyObject_IsTrue(flag) : -1;
            Py_XDECREF(flag);
        }
    }
    bool ok;
    if (fast < 0) {
        ok = false;
    } else if (fast) {
        ok = callFastRoute(self, ws, client, decoded, route);
    } else {
        int here = route ? 0 : builtinHere(self, ws, client, kind, decoded);
        ok = here > 0 || (here == 0 && done(callMethod(names.dispatch, self->dispatcher, client, decoded, Py_None)));
    }
    Py_XDECREF(route);
    Py_DECREF(decoded);
    return ok;
}

PyObject *clientOf(PyObject *ws) {
    if (Py_TYPE(ws) == &PyWebSocketType) {
        auto *handle = reinterpret_cast<PyWebSocketObject *>(ws);
        if (!handle->ws) {
            PyErr_SetString(constants.closedError, "this WebSocket is closed");
            return nullptr;
        }
        Py_INCREF(handle->userData);
        return handle->userData;
    }
    return callMethod(names.getUserData, ws);
}

// dispatch(ws, data, opcode), as Dispatcher.on_message is called.
PyObject *dispatchCall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    auto *self = reinterpret_cast<RealtimeDispatchObject *>(callable);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 3 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "RealtimeDispatch takes (ws, data, opcode)");
        return nullptr;
    }
    PyObject *ws = args[0], *data = args[1], *opCodeObject = args[2];
    long opCode = PyLong_Check(opCodeObject) ? PyLong_AsLong(opCodeObject) : -1;
    if (opCode == -1 && PyErr_Occurred()) return nullptr;
    std::string_view message;
    bool viewed = false;
    if (PyUnicode_Check(data) && opCode == 1) {
        Py_ssize_t length;
        const char *utf8 = PyUnicode_AsUTF8AndSize(data, &length);
        if (utf8) {
            message = std::string_view(utf8, size_t(length));
            viewed = true;
        } else {
            PyErr_Clear(); // lone surrogates: the Python path measures and refuses them
        }
    } else if (PyBytes_Check(data) && opCode == 2) {
        message = std::string_view(PyBytes_AS_STRING(data), size_t(PyBytes_GET_SIZE(data)));
        viewed = true;
    }
    if (!viewed) {
        return callMethod(names.onMessage, self->dispatcher, ws, data, opCodeObject);
    }
    PyObject *client = clientOf(ws);
    if (!client) return nullptr;
    bool ok = handle(self, ws, client, message, opCodeObject, opCode == 2, data);
    Py_DECREF(client);
    if (!ok) return nullptr;
    Py_RETURN_NONE;
}

PyObject *dispatchNew(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static const char *keywords[] = {"dispatcher", "routes", "loads", "dumps", "client_type", "route_type",
                                     "bucket_type", "monotonic", "sample_mask", "max_payload_length", "compress",
                                     "builtins", "pubsub", "reserved", "reserved_prefix", "reserved_topic", nullptr};
    PyObject *dispatcher, *routes, *loads, *dumps, *clientType, *routeType, *bucketType, *monotonic, *builtins, *pubsub,
        *reserved, *reservedPrefix, *reservedTopic;
    unsigned long long sampleMask;
    Py_ssize_t maxPayloadLength;
    int compress;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OOO!O!O!OKnpO!OOUU", const_cast<char **>(keywords), &dispatcher,
                                     &PyDict_Type, &routes, &loads, &dumps, &PyType_Type, &clientType, &PyType_Type,
                                     &routeType, &PyType_Type, &bucketType, &monotonic, &sampleMask,
                                     &maxPayloadLength, &compress, &PyFrozenSet_Type, &builtins, &pubsub, &reserved,
                                     &reservedPrefix, &reservedTopic)) {
        return nullptr;
    }
    bool answers[5];
    const char *builtinNames[5] = {"PING", "SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "BATCH"};
    for (int i = 0; i < 5; i++) {
        PyObject *name = PyUnicode_FromString(builtinNames[i]);
        int contained = name ? PySet_Contains(builtins, name) : -1;
        Py_XDECREF(name);
        if (contained < 0) return nullptr;
        answers[i] = contained != 0;
    }
    auto *self = reinterpret_cast<RealtimeDispatchObject *>(type->tp_alloc(type, 0));
    if (!self) return nullptr;
    self->vectorcall = dispatchCall;
    self->dispatcher = Py_NewRef(dispatcher);
    self->routes = Py_NewRef(routes);
    self->loads = Py_NewRef(loads);
    self->dumps = Py_NewRef(dumps);
    self->bucketType = Py_NewRef(bucketType);
    self->clientType = Py_NewRef(clientType);
    self->routeType = Py_NewRef(routeType);
    self->pubsub = Py_NewRef(pubsub);
    self->pubsubType = Py_NewRef(reinterpret_cast<PyObject *>(Py_TYPE(pubsub)));
    self->stockReserved = Py_NewRef(reserved);
    self->reservedPrefix = Py_NewRef(reservedPrefix);
    self->reservedTopic = Py_NewRef(reservedTopic);
    PyObject *pubsubType = self->pubsubType;
    if (!self->clientBucket.resolve(clientType, names.bucket) || !self->clientBatcher.resolve(clientType, names.batcher) ||
        !self->bucketClock.resolve(bucketType, names.clock) || !self->bucketTokens.resolve(bucketType, names.tokens) ||
        !self->bucketUpdated.resolve(bucketType, names.updated) || !self->bucketRate.resolve(bucketType, names.rate) ||
        !self->bucketCapacity.resolve(bucketType, names.capacity) || !self->routeFast.resolve(routeType, names.fast) ||
        !self->routeHandler.resolve(routeType, names.handler) ||
        !self->routeHistogram.resolve(routeType, names.histogram) || !self->routeCalls.resolve(routeType, names.calls) ||
        !self->clientTopicsAllowed.resolve(clientType, names.topicsAllowed) ||
        !self->clientWs.resolve(clientType, names.ws) || !self->clientClosed.resolve(clientType, names.closed) ||
        !self->clientId.resolve(clientType, names.clientId) ||
        !self->pubsubTopicHook.resolve(pubsubType, names.topicHook) ||
        !self->pubsubHistoryOn.resolve(pubsubType, names.historyOn) ||
        !self->pubsubBroker.resolve(pubsubType, names.broker) || !self->pubsubRelay.resolve(pubsubType, names.relay) ||
        !self->pubsubPresence.resolve(pubsubType, names.presence) ||
        !self->pubsubReserved.resolve(pubsubType, names.reserved) ||
        !self->pubsubMaxSubscriptions.resolve(pubsubType, names.maxSubscriptions) ||
        !self->pubsubMaxTopicLength.resolve(pubsubType, names.maxTopicLength) ||
        !self->pubsubCompress.resolve(pubsubType, names.compressName)) {
        Py_DECREF(self);
        return nullptr;
    }
    self->monotonic = Py_NewRef(monotonic);
    self->one = PyLong_FromLong(1);
    self->sampleMask = sampleMask;
    self->maxPayloadLength = maxPayloadLength;
    PyObject *maxBatchItems = PyObject_GetAttr(dispatcher, names.maxBatchItems);
    self->maxBatchItems = maxBatchItems ? PyLong_AsSsize_t(maxBatchItems) : -1;
    Py_XDECREF(maxBatchItems);
    if (self->maxBatchItems == -1 && PyErr_Occurred()) {
        Py_DECREF(self);
        return nullptr;
    }
    self->compress = compress != 0;
    self->answersPing = answers[0];
    self->answersSubscribe = answers[1];
    self->answersUnsubscribe = answers[2];
    self->answersPublish = answers[3];
    self->answersBatch = answers[4];
    self->collecting = nullptr;
    self->maxTopicLengthObject = nullptr;
    self->nativeJson = false;
    if (PyObject *orjson = PyImport_ImportModule("orjson")) {
        PyObject *orjsonDumps = PyObject_GetAttrString(orjson, "dumps");
        PyObject *orjsonLoads = PyObject_GetAttrString(orjson, "loads");
        self->nativeJson = orjsonDumps == dumps && orjsonLoads == loads;
        Py_XDECREF(orjsonDumps);
        Py_XDECREF(orjsonLoads);
        Py_DECREF(orjson);
    }
    PyErr_Clear(); // no orjson: every reply goes to dumps
    return reinterpret_cast<PyObject *>(self);
}

int dispatchTraverse(RealtimeDispatchObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->dispatcher);
    Py_VISIT(self->routes);
    Py_VISIT(self->loads);
    Py_VISIT(self->dumps);
    Py_VISIT(self->bucketType);
    Py_VISIT(self->clientType);
    Py_VISIT(self->routeType);
    Py_VISIT(self->monotonic);
    Py_VISIT(self->pubsub);
    Py_VISIT(self->pubsubType);
    Py_VISIT(self->stockReserved);
    Py_VISIT(self->reservedPrefix);
    Py_VISIT(self->reservedTopic);
    Py_VISIT(self->lastKind);
    Py_VISIT(self->lastRoute);
    return 0;
}

int dispatchClear(RealtimeDispatchObject *self) {
    Py_CLEAR(self->dispatcher);
    Py_CLEAR(self->routes);
    Py_CLEAR(self->loads);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->bucketType);
    Py_CLEAR(self->clientType);
    Py_CLEAR(self->routeType);
    Py_CLEAR(self->monotonic);
    Py_CLEAR(self->pubsub);
    Py_CLEAR(self->pubsubType);
    Py_CLEAR(self->stockReserved);
    Py_CLEAR(self->reservedPrefix);
    Py_CLEAR(self->reservedTopic);
    Py_CLEAR(self->lastKind);
    Py_CLEAR(self->lastRoute);
    Py_CLEAR(self->maxTopicLengthObject);
    Py_CLEAR(self->one);
    return 0;
}

void dispatchDealloc(RealtimeDispatchObject *self) {
    PyObject_GC_UnTrack(self);
    dispatchClear(self);
    Py_TYPE(self)->tp_free(reinterpret_cast<PyObject *>(self));
}

bool internNames() {
    struct {
        PyObject **slot;
        const char *text;
    } table[] = {{&names.bucket, "bucket"}, {&names.batcher, "batcher"}, {&names.fast, "fast"},
                 {&names.handler, "handler"}, {&names.histogram, "histogram"}, {&names.calls, "_calls"},
                 {&names.type, "type"}, {&names.id, "id"}, {&names.handleAdmitted, "handle_admitted"},
                 {&names.dispatch, "dispatch"}, {&names.reply, "reply"}, {&names.rateLimited, "rate_limited"},
                 {&names.onMessage, "on_message"}, {&names.observe, "observe"}, {&names.send, "send"},
                 {&names.getUserData, "get_user_data"}, {&names.take, "take"}, {&names.clock, "clock"},
                 {&names.tokens, "tokens"}, {&names.updated, "updated"}, {&names.rate, "rate"},
                 {&names.capacity, "capacity"}, {&names.serverTime, "serverTime"}, {&names.pong, "PONG"},
                 {&names.topic, "topic"}, {&names.data, "data"}, {&names.echo, "echo"}, {&names.from, "from"},
                 {&names.message, "MESSAGE"}, {&names.subscribed, "SUBSCRIBED"},
                 {&names.unsubscribed, "UNSUBSCRIBED"}, {&names.published, "PUBLISHED"},
                 {&names.topicsAllowed, "topics_allowed"}, {&names.ws, "ws"}, {&names.closed, "closed"},
                 {&names.clientId, "id"}, {&names.topicHook, "topic_hook"}, {&names.historyOn, "history_on"},
                 {&names.broker, "broker"}, {&names.relay, "relay"}, {&names.presence, "presence"},
                 {&names.reserved, "reserved"}, {&names.maxSubscriptions, "max_subscriptions"},
                 {&names.maxTopicLength, "max_topic_length"}, {&names.isSubscribed, "is_subscribed"},
                 {&names.getTopics, "get_topics"}, {&names.subscribe, "subscribe"},
                 {&names.unsubscribe, "unsubscribe"}, {&names.publish, "publish"},
                 {&names.compressName, "compress"}, {&names.messages, "messages"},
                 {&names.maxBatchItems, "max_batch_items"}, {&names.batchItem, "batch_item"}, {&names.batch, "BATCH"},
                 {&names.timestamp, "timestamp"}, {&names.ack, "ACK"}, {&names.ping, "PING"},
                 {&names.subscribeKind, "SUBSCRIBE"}, {&names.unsubscribeKind, "UNSUBSCRIBE"},
                 {&names.publishKind, "PUBLISH"}};
    for (auto &entry : table) {
        *entry.slot = PyUnicode_InternFromString(entry.text);
        if (!*entry.slot) return false;
    }
    names.failedRouteKeyword = Py_BuildValue("(s)", "failed_route");
    return names.failedRouteKeyword != nullptr;
}

} // namespace

PyTypeObject RealtimeDispatchType = {PyVarObject_HEAD_INIT(nullptr, 0)};

static PyMemberDef dispatchMembers[] = {
    {"max_batch_items", T_PYSSIZET, offsetof(RealtimeDispatchObject, maxBatchItems), 0,
     "The most items of a BATCH answered here (Dispatcher.max_batch_items sets it; more go to Python)."},
    {nullptr, 0, 0, 0, nullptr},
};

bool realtimeMessage(PyObject *dispatch, PyObject *ws, std::string_view message, uws::OpCode opCode) {
    auto *self = reinterpret_cast<RealtimeDispatchObject *>(dispatch);
    PyObject *client = clientOf(ws);
    if (!client) return false;
    bool ok = handle(self, ws, client, message, constants.opCodes[int(opCode)], opCode != uws::OpCode::Text, nullptr);
    Py_DECREF(client);
    return ok;
}

bool initRealtimeDispatchType(py::module_ &module) {
    if (!internNames()) return false;
    RealtimeDispatchType.tp_name = "uws_py._core.RealtimeDispatch";
    RealtimeDispatchType.tp_basicsize = sizeof(RealtimeDispatchObject);
    RealtimeDispatchType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL;
    RealtimeDispatchType.tp_doc =
        "RealtimeDispatch(dispatcher, routes, loads, dumps, client_type, route_type, bucket_type, monotonic, sample_mask, "
        "max_payload_length, compress, builtins, pubsub, reserved, reserved_prefix, reserved_topic)\n\n"
        "The realtime route's message handler: Dispatcher.on_message's common case in C, and the plain case of "
        "the stock built-ins named in builtins (PING, SUBSCRIBE, UNSUBSCRIBE, PUBLISH, BATCH); everything else handed "
        "to the Python dispatcher.";
    RealtimeDispatchType.tp_vectorcall_offset = offsetof(RealtimeDispatchObject, vectorcall);
    RealtimeDispatchType.tp_call = PyVectorcall_Call;
    RealtimeDispatchType.tp_new = dispatchNew;
    RealtimeDispatchType.tp_dealloc = (destructor)dispatchDealloc;
    RealtimeDispatchType.tp_traverse = (traverseproc)dispatchTraverse;
    RealtimeDispatchType.tp_clear = (inquiry)dispatchClear;
    RealtimeDispatchType.tp_members = dispatchMembers;
    CounterType.tp_name = "uws_py._core.Counter";
    CounterType.tp_basicsize = sizeof(CounterObject);
    CounterType.tp_flags = Py_TPFLAGS_DEFAULT;
    CounterType.tp_doc = "Counter(value=0)\n\nAn exact event count kept as a C integer (a route's handler calls).";
    CounterType.tp_new = counterNew;
    CounterType.tp_repr = counterRepr;
    CounterType.tp_methods = counterMethods;
    CounterType.tp_getset = counterGetSet;
    if (PyType_Ready(&CounterType) < 0) return false;
    Py_INCREF(&CounterType);
    module.add_object("Counter", reinterpret_cast<PyObject *>(&CounterType));
    if (PyType_Ready(&RealtimeDispatchType) < 0) return false;
    Py_INCREF(&RealtimeDispatchType);
    module.add_object("RealtimeDispatch", reinterpret_cast<PyObject *>(&RealtimeDispatchType));
    // For the tests (tests/unit/realtime/test_scan.py): the scanner's verdict on `message`
    // (UTF-8 bytes), None for "I don't know", else {field: (kind, raw bytes, plain)} for the
    // fields present and "keys": the top-level key count.
    module.def(
        "_scan_realtime_message",
        [](py::bytes message) -> py::object {
            uws::RealtimeScan scan;
            if (!uws::scanRealtimeMessage(std::string_view(message), scan)) return py::none();
            static const char *kinds[] = {"absent", "null", "true", "false", "integer",
                                          "number", "string", "array", "object"};
            py::dict fields;
            const std::pair<const char *, const uws::ScannedValue *> named[] = {
                {"type", &scan.type}, {"id", &scan.id}, {"topic", &scan.topic}, {"data", &scan.data},
                {"echo", &scan.echo}};
            for (const auto &[name, value] : named) {
                if (!value->present()) continue;
                fields[name] = py::make_tuple(kinds[int(value->kind)], py::bytes(value->raw.data(), value->raw.size()),
                                              value->plain);
            }
            fields["keys"] = scan.keys;
            return fields;
        },
        py::arg("message"), "The realtime message scanner's verdict (for tests).");
    return true;
}

} // namespace uwspy
