// A minimal test harness for the core's unit tests, so that they need nothing but a compiler.
//
// CHECK(cond) and CHECK_EQ(actual, expected) count passes and failures; a failure prints
// file:line, the expression, both values and the enclosing scopes (RUN_TEST names the test,
// check::Scope adds the loop iteration). A test keeps going after a failure so that one run
// shows every broken case. main() ends with `return check::report("test_name");`, which
// prints "test_name: N passed, M failed" and gives the exit status.
#pragma once

#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace check {

struct State {
    int passed = 0;
    int failed = 0;
    std::vector<std::string> scopes;
};

inline State &state() {
    static State s;
    return s;
}

// Output is capped so that a loop failing on every iteration stays readable; the count is not.
constexpr int kMaxReportedFailures = 50;

// Strings are quoted with non-printable bytes escaped: the parsers' inputs are mostly that.
inline std::string quote(std::string_view text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c >= 0x20 && c < 0x7F) {
            out += char(c);
        } else {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\x%02X", c);
            out += escaped;
        }
    }
    return out + "\"";
}

template <class T, class = void> struct Streamable : std::false_type {};
template <class T>
struct Streamable<T, std::void_t<decltype(std::declval<std::ostream &>() << std::declval<const T &>())>>
    : std::true_type {};

template <class T> struct IsVector : std::false_type {};
template <class T, class A> struct IsVector<std::vector<T, A>> : std::true_type {};

template <class T> std::string describe(const T &value) {
    if constexpr (std::is_same_v<T, bool>) {
        return value ? "true" : "false";
    } else if constexpr (std::is_convertible_v<const T &, std::string_view>) {
        return quote(value);
    } else if constexpr (std::is_integral_v<T>) {
        return std::to_string(value); // also char and uint8_t: their numeric value
    } else if constexpr (IsVector<T>::value) {
        std::string out = "{";
        for (size_t i = 0; i < value.size(); i++) {
            out += (i ? ", " : "") + describe(value[i]);
        }
        return out + "}";
    } else if constexpr (Streamable<T>::value) {
        std::ostringstream out;
        out << value;
        return out.str();
    } else if constexpr (std::is_enum_v<T>) {
        return std::to_string(static_cast<long long>(value));
    } else {
        return "<value>";
    }
}

inline void pass() { state().passed++; }

inline void fail(const char *file, int line, const std::string &what) {
    State &s = state();
    s.failed++;
    if (s.failed > kMaxReportedFailures) {
        return;
    }
    std::fprintf(stderr, "%s:%d: FAILED %s\n", file, line, what.c_str());
    for (const std::string &scope : s.scopes) {
        std::fprintf(stderr, "    in %s\n", scope.c_str());
    }
    if (s.failed == kMaxReportedFailures) {
        std::fprintf(stderr, "(further failures are counted but not shown)\n");
    }
}

inline bool check(bool ok, const char *file, int line, const char *expression) {
    if (ok) {
        pass();
    } else {
        fail(file, line, std::string("CHECK(") + expression + ")");
    }
    return ok;
}

template <class A, class B>
bool checkEqual(const A &actual, const B &expected, const char *file, int line, const char *actualText,
                const char *expectedText) {
    if (actual == expected) {
        pass();
        return true;
    }
    fail(file, line,
         std::string("CHECK_EQ(") + actualText + ", " + expectedText + ")\n    actual:   " + describe(actual) +
             "\n    expected: " + describe(expected));
    return false;
}

// Names what the checks inside its lifetime are about, e.g. Scope scope("prefix length ", n).
class Scope {
public:
    template <class... Parts> explicit Scope(const Parts &...parts) {
        std::ostringstream text;
        (text << ... << parts);
        state().scopes.push_back(text.str());
    }
    ~Scope() { state().scopes.pop_back(); }
    Scope(const Scope &) = delete;
    Scope &operator=(const Scope &) = delete;
};

template <class Test> void run(const char *name, Test test) {
    Scope scope(name);
    test();
}

inline int report(const char *binaryName) {
    const State &s = state();
    std::printf("%s: %d passed, %d failed\n", binaryName, s.passed, s.failed);
    return s.failed ? 1 : 0;
}

} // namespace check

// Both return whether the check held, so that a test can skip what depends on it.
#define CHECK(condition) ::check::check(static_cast<bool>(condition), __FILE__, __LINE__, #condition)
#define CHECK_EQ(actual, expected) ::check::checkEqual((actual), (expected), __FILE__, __LINE__, #actual, #expected)
#define RUN_TEST(function) ::check::run(#function, function)
