// The storm half of tests/support/storm.py (issue 19 item 2): COUNT WebSocket upgrade attempts
// at an even pace over SECONDS, from the given 127.x.y.z source addresses, each with a
// deadline, on one epoll loop. Each attempt's outcome is the HTTP status of the answer (101,
// 503, 429, ...), "timeout", "reset" (closed before a status) or "error:<errno name>"; a
// refusal is checked for a Retry-After header. Upgraded connections are held (their bytes
// read and dropped) until "stop" (or EOF) on stdin.
//
// stdout: "resolved {json}" once every attempt has its outcome, then the final {json} (the
// same fields plus held/dropped_after_101) after "stop". Wall times are seconds since the epoch.
//
// usage: storm --port P --count N --sources A,B --start WALL --seconds S --deadline D --token T [--path /realtime]

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

double monotonic() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

double wall() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

enum class State { CONNECTING, WAITING, HELD, DONE };

struct Attempt {
    int fd = -1;
    State state = State::CONNECTING;
    double started = 0;
    std::string head;
};

struct Results {
    std::map<std::string, int> outcomes;
    std::map<std::string, int> withoutRetryAfter;
    std::map<std::string, std::vector<double>> latencyMs;
    int retryMin = -1, retryMax = -1;
    int resolved = 0;
    int held = 0;
    int droppedAfter101 = 0;
};

std::string lower(std::string text) {
    for (char &c : text) c = char(tolower((unsigned char)c));
    return text;
}

void json(FILE *out, const Results &r, int count, double began, double launched, double resolvedAt, bool final) {
    fprintf(out, "{\"attempts\": %d, \"began\": %.6f, \"launched\": %.6f, \"resolved\": %.6f, \"outcomes\": {", count,
            began, launched, resolvedAt);
    const char *sep = "";
    for (auto &[k, v] : r.outcomes) { fprintf(out, "%s\"%s\": %d", sep, k.c_str(), v); sep = ", "; }
    fprintf(out, "}, \"refused_without_retry_after\": {");
    sep = "";
    for (auto &[k, v] : r.withoutRetryAfter) { fprintf(out, "%s\"%s\": %d", sep, k.c_str(), v); sep = ", "; }
    fprintf(out, "}, \"retry_after\": ");
    if (r.retryMin < 0) fprintf(out, "null");
    else fprintf(out, "[%d, %d]", r.retryMin, r.retryMax);
    if (final) {
        fprintf(out, ", \"held\": %d, \"dropped_after_101\": %d, \"latency_ms\": {", r.held, r.droppedAfter101);
        sep = "";
        for (auto &[k, v] : r.latencyMs) {
            fprintf(out, "%s\"%s\": [", sep, k.c_str());
            for (size_t i = 0; i < v.size(); i++) fprintf(out, i ? ",%.2f" : "%.2f", v[i]);
            fprintf(out, "]");
            sep = ", ";
        }
        fprintf(out, "}");
    }
    fprintf(out, "}\n");
    fflush(out);
}

}  // namespace

int main(int argc, char **argv) {
    int port = 0, count = 0;
    double start = 0, seconds = 10, deadline = 10;
    std::string sourcesText, token, path = "/realtime";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--port") port = atoi(v.c_str());
        else if (k == "--count") count = atoi(v.c_str());
        else if (k == "--sources") sourcesText = v;
        else if (k == "--start") start = atof(v.c_str());
        else if (k == "--seconds") seconds = atof(v.c_str());
        else if (k == "--deadline") deadline = atof(v.c_str());
        else if (k == "--token") token = v;
        else if (k == "--path") path = v;
        else { fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
    }
    std::vector<in_addr> sources;
    for (size_t at = 0; at <= sourcesText.size();) {
        size_t comma = sourcesText.find(',', at);
        if (comma == std::string::npos) comma = sourcesText.size();
        in_addr a{};
        if (inet_pton(AF_INET, sourcesText.substr(at, comma - at).c_str(), &a) != 1) {
            fprintf(stderr, "bad source address in %s\n", sourcesText.c_str());
            return 2;
        }
        sources.push_back(a);
        at = comma + 1;
    }
    if (port <= 0 || count <= 0 || sources.empty()) { fprintf(stderr, "--port, --count and --sources are needed\n"); return 2; }
    rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);

    std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer " + token + "\r\n\r\n";
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(uint16_t(port));
    inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);

    int ep = epoll_create1(0);
    epoll_event stdinEvent{};
    stdinEvent.events = EPOLLIN;
    stdinEvent.data.u64 = ~uint64_t(0);
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &stdinEvent);

    std::vector<Attempt> attempts(static_cast<size_t>(count));
    Results r;
    size_t launched = 0, oldest = 0;
    bool stopping = false, reportedResolved = false;
    double wallBegan = 0, wallLaunched = 0, wallResolved = 0;

    auto finish = [&](size_t i, const std::string &outcome, bool keep) {
        Attempt &a = attempts[i];
        r.outcomes[outcome]++;
        r.latencyMs[outcome].push_back((monotonic() - a.started) * 1000.0);
        r.resolved++;
        if (keep) {
            a.state = State::HELD;
            r.held++;
            return;
        }
        if (a.fd >= 0) close(a.fd);  // also removes it from the epoll set
        a.fd = -1;
        a.state = State::DONE;
    };

    double wait = start - wall();
    if (wait > 0) {
        timespec ts{time_t(wait), long((wait - double(time_t(wait))) * 1e9)};
        nanosleep(&ts, nullptr);
    }
    wallBegan = wall();
    double t0 = monotonic();
    double interval = seconds / count;
    std::vector<epoll_event> events(1024);
    char buffer[4096];
    for (;;) {
        double now = monotonic();
        while (launched < attempts.size() && t0 + double(launched) * interval <= now) {
            size_t i = launched++;
            Attempt &a = attempts[i];
            a.started = monotonic();
            a.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (a.fd < 0) { finish(i, std::string("error:") + strerrorname_np(errno), false); continue; }
            int one = 1;
            setsockopt(a.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            sockaddr_in local{};
            local.sin_family = AF_INET;
            local.sin_addr = sources[i % sources.size()];
            if (bind(a.fd, (sockaddr *)&local, sizeof local) != 0 ||
                (connect(a.fd, (sockaddr *)&server, sizeof server) != 0 && errno != EINPROGRESS)) {
                finish(i, std::string("error:") + strerrorname_np(errno), false);
                continue;
            }
            epoll_event ev{};
            ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
            ev.data.u64 = i;
            epoll_ctl(ep, EPOLL_CTL_ADD, a.fd, &ev);
            if (launched == attempts.size()) wallLaunched = wall();
        }
        // Deadlines: attempts start in order, so the oldest unresolved one expires first.
        while (oldest < launched && (attempts[oldest].state == State::DONE || attempts[oldest].state == State::HELD ||
                                     now - attempts[oldest].started >= deadline)) {
            Attempt &a = attempts[oldest];
            if (a.state == State::CONNECTING || a.state == State::WAITING) finish(oldest, "timeout", false);
            oldest++;
        }
        if (!reportedResolved && r.resolved == count) {
            reportedResolved = true;
            wallResolved = wall();
            fputs("resolved ", stdout);
            json(stdout, r, count, wallBegan, wallLaunched, wallResolved, false);
        }
        if (stopping) break;
        int timeout = launched < attempts.size() ? 1 : 20;
        int n = epoll_wait(ep, events.data(), int(events.size()), timeout);
        for (int e = 0; e < n; e++) {
            uint64_t id = events[e].data.u64;
            if (id == ~uint64_t(0)) {
                ssize_t got = read(0, buffer, sizeof buffer);
                if (got <= 0 || memchr(buffer, '\n', size_t(got))) {
                    if (reportedResolved) stopping = true;
                    else if (got <= 0) stopping = true;  // the orchestrator is gone
                }
                if (got <= 0) epoll_ctl(ep, EPOLL_CTL_DEL, 0, nullptr);
                continue;
            }
            size_t i = size_t(id);
            Attempt &a = attempts[i];
            if (a.state == State::DONE || a.fd < 0) continue;
            if (a.state == State::CONNECTING && (events[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int error = 0;
                socklen_t len = sizeof error;
                getsockopt(a.fd, SOL_SOCKET, SO_ERROR, &error, &len);
                if (error) { finish(i, std::string("error:") + strerrorname_np(error), false); continue; }
                ssize_t sent = send(a.fd, request.data(), request.size(), MSG_NOSIGNAL);
                if (sent != ssize_t(request.size())) { finish(i, "error:short-send", false); continue; }
                a.state = State::WAITING;
                epoll_event ev{};
                ev.events = EPOLLIN | EPOLLRDHUP;
                ev.data.u64 = i;
                epoll_ctl(ep, EPOLL_CTL_MOD, a.fd, &ev);
                continue;
            }
            if (!(events[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                ssize_t got = recv(a.fd, buffer, sizeof buffer, 0);
                if (got > 0) {
                    if (a.state == State::WAITING) {
                        a.head.append(buffer, size_t(got));
                        size_t end = a.head.find("\r\n\r\n");
                        if (end != std::string::npos) {
                            std::string head = a.head.substr(0, end + 2);
                            std::string status = head.size() > 12 && head.compare(0, 5, "HTTP/") == 0 ? head.substr(9, 3) : "bad-response";
                            a.head.clear();
                            if (status == "101") { finish(i, status, true); continue; }
                            std::string l = lower(head);
                            size_t at = l.find("\r\nretry-after:");
                            if (at == std::string::npos) r.withoutRetryAfter[status]++;
                            else {
                                int seconds = atoi(l.c_str() + at + 14);
                                if (r.retryMin < 0 || seconds < r.retryMin) r.retryMin = seconds;
                                r.retryMax = std::max(r.retryMax, seconds);
                            }
                            finish(i, status, false);
                            break;
                        }
                    }
                    continue;  // a held connection's frames (CONNECTED) are dropped
                }
                if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                // closed or reset
                if (a.state == State::WAITING) finish(i, "reset", false);
                else if (a.state == State::HELD) {
                    r.droppedAfter101++;
                    close(a.fd);
                    a.fd = -1;
                    a.state = State::DONE;
                }
                break;
            }
        }
    }
    for (Attempt &a : attempts)
        if (a.fd >= 0) close(a.fd);
    json(stdout, r, count, wallBegan, wallLaunched, wallResolved, true);
    return 0;
}
