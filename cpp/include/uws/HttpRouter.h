// Routes by method and path pattern: literal segments, ':name' parameters and a trailing
// '*'. The most specific route wins, segment by segment (literal over parameter over
// wildcard), then a route for the exact method over one for any method, then the earliest.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "uws/HttpParser.h"

namespace uws {

template <class Handler> class HttpRouter {
public:
    // method: "GET", "POST", ... or "*" for any.
    void add(std::string method, std::string_view pattern, Handler handler) {
        Route route;
        route.method = std::move(method);
        route.handler = std::move(handler);
        for (std::string_view segment : split(pattern)) {
            if (segment == "*") {
                route.segments.push_back({Kind::Wildcard, ""});
                break; // a wildcard takes the rest of the path
            }
            if (!segment.empty() && segment.front() == ':') {
                route.segments.push_back({Kind::Parameter, std::string(segment.substr(1))});
            } else {
                route.segments.push_back({Kind::Literal, std::string(segment)});
            }
        }
        routes_.push_back(std::move(route));
    }

    // The best route for the request, or nullptr; fills request.parameters and parameterNames.
    Handler *match(std::string_view method, HttpRequest &request) {
        std::vector<std::string_view> path = split(request.path);
        Route *best = nullptr;
        for (Route &route : routes_) {
            if (route.method != "*" && route.method != method) continue;
            if (!matches(route, path)) continue;
            if (!best || moreSpecific(route, *best)) best = &route;
        }
        if (!best) return nullptr;
        request.parameters.clear();
        request.parameterNames.clear();
        for (size_t i = 0; i < best->segments.size(); i++) {
            const Segment &segment = best->segments[i];
            if (segment.kind == Kind::Parameter) {
                request.parameters.push_back(path[i]);
                request.parameterNames.push_back(segment.text);
            } else if (segment.kind == Kind::Wildcard) {
                std::string_view rest;
                if (i < path.size()) {
                    const char *begin = path[i].data();
                    rest = std::string_view(begin, size_t(request.path.data() + request.path.size() - begin));
                }
                request.parameters.push_back(rest);
                request.parameterNames.push_back("*");
            }
        }
        return &best->handler;
    }

    // The methods of routes matching the request's path, ", "-separated ("*" routes excluded).
    std::string methodsFor(const HttpRequest &request) const {
        std::vector<std::string_view> path = split(request.path);
        std::string methods;
        for (const Route &route : routes_) {
            if (route.method == "*" || !matches(route, path)) continue;
            if (methods.find(route.method) != std::string::npos) continue;
            if (!methods.empty()) methods += ", ";
            methods += route.method;
        }
        return methods;
    }

    bool empty() const { return routes_.empty(); }

private:
    enum class Kind { Literal = 0, Parameter = 1, Wildcard = 2 };
    struct Segment {
        Kind kind;
        std::string text;
    };
    struct Route {
        std::string method;
        std::vector<Segment> segments;
        Handler handler;
    };

    // "/a/b" -> {"a", "b"}; "/" -> {""}.
    static std::vector<std::string_view> split(std::string_view path) {
        std::vector<std::string_view> out;
        if (!path.empty() && path.front() == '/') path.remove_prefix(1);
        for (;;) {
            size_t slash = path.find('/');
            out.push_back(path.substr(0, slash));
            if (slash == std::string_view::npos) break;
            path.remove_prefix(slash + 1);
        }
        return out;
    }

    static bool matches(const Route &route, const std::vector<std::string_view> &path) {
        size_t i = 0;
        for (; i < route.segments.size(); i++) {
            const Segment &segment = route.segments[i];
            if (segment.kind == Kind::Wildcard) return true;
            if (i >= path.size()) return false;
            if (segment.kind == Kind::Literal && segment.text != path[i]) return false;
            if (segment.kind == Kind::Parameter && path[i].empty()) return false;
        }
        return i == path.size();
    }

    static bool moreSpecific(const Route &a, const Route &b) {
        size_t n = a.segments.size() < b.segments.size() ? a.segments.size() : b.segments.size();
        for (size_t i = 0; i < n; i++) {
            if (a.segments[i].kind != b.segments[i].kind) return a.segments[i].kind < b.segments[i].kind;
        }
        if (a.segments.size() != b.segments.size()) {
            // Same shape so far: the longer pattern is the more specific one unless it only adds a wildcard.
            const Route &longer = a.segments.size() > b.segments.size() ? a : b;
            bool longerWins = longer.segments[n].kind != Kind::Wildcard;
            return (&longer == &a) == longerWins;
        }
        return a.method != "*" && b.method == "*";
    }

    std::vector<Route> routes_;
};

} // namespace uws
