// HttpRouter: which route wins (literal over parameter over wildcard, segment by segment, then
// the exact method over "*", then the earliest), and what it fills in for parameters.
#include <algorithm>
#include <string>
#include <vector>

#include "check.h"
#include "uws/HttpParser.h"
#include "uws/HttpRouter.h"

namespace {

using Router = uws::HttpRouter<std::string>;

struct Route {
    const char *method;
    const char *pattern;
};

// Each route's handler is its own description, e.g. "GET /users/:id".
std::string nameOf(const Route &route) { return std::string(route.method) + " " + route.pattern; }

Router routerWith(const std::vector<Route> &routes) {
    Router router;
    for (const Route &route : routes) {
        router.add(route.method, route.pattern, nameOf(route));
    }
    return router;
}

std::string winner(Router &router, const char *method, const std::string &path) {
    uws::HttpRequest request;
    request.path = path;
    std::string *handler = router.match(method, request);
    return handler ? *handler : "<none>";
}

struct Match {
    std::string handler = "<none>";
    std::vector<std::string> names;
    std::vector<std::string> values;
};

Match matchWithParameters(Router &router, const char *method, const std::string &path) {
    uws::HttpRequest request;
    request.path = path;
    Match result;
    std::string *handler = router.match(method, request);
    if (!handler) {
        return result;
    }
    result.handler = *handler;
    for (std::string_view name : request.parameterNames) {
        result.names.emplace_back(name);
    }
    for (std::string_view value : request.parameters) {
        // Values are views into the request's path, not copies.
        bool inPath = value.data() >= path.data() && value.data() + value.size() <= path.data() + path.size();
        CHECK(inPath || value.empty());
        result.values.emplace_back(value);
    }
    return result;
}

struct PrecedenceCase {
    const char *why;
    std::vector<Route> routes;
    const char *method;
    const char *path;
    const char *expected; // a pattern's nameOf, or "<none>"
};

// Specificity must not depend on the order routes were added, so each case runs both ways.
void testPrecedence() {
    const std::vector<PrecedenceCase> cases = {
        {"literal over parameter", {{"GET", "/users/:id"}, {"GET", "/users/me"}}, "GET", "/users/me", "GET /users/me"},
        {"parameter when the literal differs", {{"GET", "/users/:id"}, {"GET", "/users/me"}}, "GET", "/users/42",
         "GET /users/:id"},
        {"parameter over wildcard", {{"GET", "/files/*"}, {"GET", "/files/:name"}}, "GET", "/files/a",
         "GET /files/:name"},
        {"wildcard takes deeper paths", {{"GET", "/files/*"}, {"GET", "/files/:name"}}, "GET", "/files/a/b",
         "GET /files/*"},
        {"literal over wildcard", {{"GET", "/*"}, {"GET", "/health"}}, "GET", "/health", "GET /health"},
        {"the first differing segment decides", {{"GET", "/:a/b"}, {"GET", "/x/:b"}}, "GET", "/x/b", "GET /x/:b"},
        {"the first differing segment decides over a later literal", {{"GET", "/:a/b/c"}, {"GET", "/x/:b/:c"}},
         "GET", "/x/b/c", "GET /x/:b/:c"},
        {"exact path over the same prefix plus wildcard", {{"GET", "/a/*"}, {"GET", "/a"}}, "GET", "/a", "GET /a"},
        {"wildcard for the rest", {{"GET", "/a/*"}, {"GET", "/a"}}, "GET", "/a/b", "GET /a/*"},
        {"exact method over any", {{"*", "/a"}, {"GET", "/a"}}, "GET", "/a", "GET /a"},
        {"any method when no exact one", {{"*", "/a"}, {"GET", "/a"}}, "POST", "/a", "* /a"},
        {"specificity before method", {{"GET", "/a/:x"}, {"*", "/a/b"}}, "GET", "/a/b", "* /a/b"},
        {"specificity before method, wildcard", {{"GET", "/*"}, {"*", "/a"}}, "GET", "/a", "* /a"},
        {"exact method over any, with parameters", {{"*", "/u/:id"}, {"GET", "/u/:name"}}, "GET", "/u/1",
         "GET /u/:name"},
        {"other methods do not match", {{"POST", "/a"}, {"PUT", "/a"}}, "GET", "/a", "<none>"},
        {"methods are case-sensitive", {{"get", "/a"}}, "GET", "/a", "<none>"},
        {"root", {{"GET", "/"}, {"GET", "/:x"}}, "GET", "/", "GET /"},
        {"root is not a prefix", {{"GET", "/"}}, "GET", "/x", "<none>"},
        {"a parameter needs a non-empty segment", {{"GET", "/users/:id"}}, "GET", "/users/", "<none>"},
        {"a parameter needs a segment", {{"GET", "/users/:id"}}, "GET", "/users", "<none>"},
        {"a trailing slash is a segment", {{"GET", "/a"}}, "GET", "/a/", "<none>"},
        {"no partial segments", {{"GET", "/a"}}, "GET", "/ab", "<none>"},
        {"longer literal paths do not match", {{"GET", "/a/b"}}, "GET", "/a", "<none>"},
        {"'*' alone matches everything", {{"GET", "*"}}, "GET", "/x/y/z", "GET *"},
    };
    for (const PrecedenceCase &c : cases) {
        check::Scope scope(c.why);
        std::vector<Route> routes = c.routes;
        {
            check::Scope order("in the order given");
            Router router = routerWith(routes);
            CHECK_EQ(winner(router, c.method, c.path), c.expected);
        }
        std::reverse(routes.begin(), routes.end());
        {
            check::Scope order("in reverse order");
            Router router = routerWith(routes);
            CHECK_EQ(winner(router, c.method, c.path), c.expected);
        }
    }
}

void testEarliestOfEqualRoutesWins() {
    Router router;
    router.add("GET", "/a/:x", "first");
    router.add("GET", "/a/:y", "second");
    router.add("*", "/b", "any first");
    router.add("*", "/b", "any second");
    CHECK_EQ(winner(router, "GET", "/a/1"), "first");
    CHECK_EQ(winner(router, "GET", "/b"), "any first");
}

void testParameters() {
    Router router = routerWith({{"GET", "/rooms/:room/users/:user"}, {"GET", "/u/:id/*"}, {"GET", "/plain"}});

    Match m = matchWithParameters(router, "GET", "/rooms/lobby/users/alice");
    CHECK_EQ(m.handler, "GET /rooms/:room/users/:user");
    CHECK_EQ(m.names, (std::vector<std::string>{"room", "user"}));
    CHECK_EQ(m.values, (std::vector<std::string>{"lobby", "alice"}));

    m = matchWithParameters(router, "GET", "/u/7/x/y");
    CHECK_EQ(m.handler, "GET /u/:id/*");
    CHECK_EQ(m.names, (std::vector<std::string>{"id", "*"}));
    CHECK_EQ(m.values, (std::vector<std::string>{"7", "x/y"}));

    m = matchWithParameters(router, "GET", "/plain");
    CHECK_EQ(m.handler, "GET /plain");
    CHECK(m.names.empty());
    CHECK(m.values.empty());
}

void testWildcardRemainder() {
    Router router = routerWith({{"GET", "/static/*"}, {"*", "/*"}});
    const std::vector<std::pair<const char *, std::pair<const char *, const char *>>> cases = {
        {"/static/css/site.css", {"GET /static/*", "css/site.css"}},
        {"/static/a", {"GET /static/*", "a"}},
        {"/static/", {"GET /static/*", ""}},
        {"/static", {"GET /static/*", ""}},
        {"/static//x", {"GET /static/*", "/x"}},
        {"/", {"* /*", ""}},
        {"/anything/deep/path", {"* /*", "anything/deep/path"}},
    };
    for (const auto &[path, expected] : cases) {
        check::Scope scope(path);
        Match m = matchWithParameters(router, "GET", path);
        CHECK_EQ(m.handler, expected.first);
        CHECK_EQ(m.names, (std::vector<std::string>{"*"}));
        CHECK_EQ(m.values, (std::vector<std::string>{expected.second}));
    }

    // Whatever follows a '*' in a pattern is ignored: the wildcard takes the rest.
    Router trailing = routerWith({{"GET", "/a/*/b"}});
    Match m = matchWithParameters(trailing, "GET", "/a/x/y");
    CHECK_EQ(m.handler, "GET /a/*/b");
    CHECK_EQ(m.values, (std::vector<std::string>{"x/y"}));
}

void testParametersReplacedOnEachMatch() {
    Router router = routerWith({{"GET", "/a/:x/:y"}, {"GET", "/b/:z"}});
    uws::HttpRequest request;
    std::string first = "/a/1/2";
    request.path = first;
    CHECK(router.match("GET", request) != nullptr);
    CHECK_EQ(request.parameters.size(), size_t(2));
    std::string second = "/b/3";
    request.path = second;
    CHECK(router.match("GET", request) != nullptr);
    if (CHECK_EQ(request.parameters.size(), size_t(1))) {
        CHECK_EQ(request.parameters[0], "3");
        CHECK_EQ(request.parameterNames[0], "z");
    }
    CHECK_EQ(request.parameterNames.size(), size_t(1));
}

// The router sees the path only: the query of a parsed request does not take part.
void testMatchesParsedRequestPath() {
    Router router = routerWith({{"GET", "/rooms/:room"}});
    std::string bytes = "GET /rooms/lobby?user=a/b HTTP/1.1\r\nHost: x\r\n\r\n";
    uws::HttpRequest request;
    size_t headLength = 0;
    CHECK_EQ(int(uws::parseHttpRequest(bytes.data(), bytes.size(), {}, request, headLength)),
             int(uws::HttpParseStatus::Complete));
    std::string *handler = router.match(request.method, request);
    if (CHECK(handler != nullptr)) {
        CHECK_EQ(*handler, "GET /rooms/:room");
        CHECK_EQ(request.parameters, (std::vector<std::string_view>{"lobby"}));
    }
}

void testEmptyRouter() {
    Router router;
    CHECK(router.empty());
    CHECK_EQ(winner(router, "GET", "/"), "<none>");
    router.add("GET", "/", "root");
    CHECK(!router.empty());
}

} // namespace

int main() {
    RUN_TEST(testPrecedence);
    RUN_TEST(testEarliestOfEqualRoutesWins);
    RUN_TEST(testParameters);
    RUN_TEST(testWildcardRemainder);
    RUN_TEST(testParametersReplacedOnEachMatch);
    RUN_TEST(testMatchesParsedRequestPath);
    RUN_TEST(testEmptyRouter);
    return check::report("test_router");
}
