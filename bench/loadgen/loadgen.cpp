// uws-py's WebSocket load generator: one epoll loop per thread, many connections.
//
// Modes:
//   echo    N connections, K messages in flight each; RTT histogram; every echo checked.
//           With --threads T the connections are split over T threads, each with its own
//           epoll loop (for rates one loop cannot generate); the others run on one thread.
//   idle    N connections opened and held; the server's RSS before and after
//   fanout  N subscribers ("sub:bench") and one publisher whose rate doubles per step until
//           deliveries stop growing; delivery latency from a timestamp in the payload
//   subscribe N realtime subscribers of --topic held for --hold s (or until SIGTERM/SIGINT):
//           connect rate, deliveries per publish sequence number, delivery latency; says
//           "subscribed K" on stderr once every SUBSCRIBE is answered (bench/scale/run.py)
//   publish one realtime publisher: --rate-start publishes/s on --topic for --duration s,
//           sequence numbers from 1, the send time (CLOCK_MONOTONIC, machine-wide) in each
//
// It shares the machine's cores with the server it measures, so it keeps its own cost low:
// everything a connection sends in one loop round goes out in one write, buffers are reused,
// the clock is read once per round. It reports its own CPU time (getrusage) beside the server's
// (/proc/PID/stat with --server-pid) and flags a run in which it, not the server, was the limit.
//
// Output: one JSON object on stdout. Exit status 1 when any error (a mismatched echo, a failed
// connection, a protocol error, a connection the server closed) was counted.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "Connection.h"
#include "Frames.h"
#include "Histogram.h"
#include "Json.h"
#include "ProcessStats.h"

namespace {

// A fixed key and its RFC 6455 accept value: a load generator needs no fresh nonce per connection.
constexpr const char *kKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr const char *kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
constexpr uint64_t kProbeBit = uint64_t(1) << 63;
constexpr double kBottleneckFraction = 0.9;

uint64_t monotonicNs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// CPU time of the calling thread alone.
double threadCpuSeconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

void sleepUntil(uint64_t ns) {
    timespec ts{time_t(ns / 1000000000u), long(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
}

double cpuSeconds() {
    rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

enum class PayloadKind { TEXT, BINARY, JSON, REQUEST, REQUEST_JSON, PING, SUBSCRIBE, PUBLISH, BATCH };

// What an echo-mode reply must be: the request's own bytes, or a realtime server's answer to a
// built-in: --reply pong for --payload ping ({"type":"PONG","serverTime":<ms>,"id":<the id>}),
// subscribed for subscribe (SUBSCRIBED / UNSUBSCRIBED in turn), published for publish, batch
// for batch (one BATCH frame holding the four PONGs).
enum class ReplyKind { ECHO, PONG, SUBSCRIBED, PUBLISHED, BATCH };

// --payload ping: {"type":"PING","id":N} with N = kPingIdBase + sequence, always 16 decimal
// digits (and below 2^53, so any JSON implementation keeps it exact).
constexpr uint64_t kPingIdBase = 1000000000000000u;
constexpr const char *kPingPrefix = "{\"type\":\"PING\",\"id\":";
// The other built-ins' requests carry the same 16-digit id. --payload subscribe sends, in turn,
// {"type":"SUBSCRIBE","topic":"bench","id":N} and {"type":"UNSUBSCRIBE",...} (the same topic
// for every connection); publish a PUBLISH to a topic nobody subscribes to; batch a BATCH of
// four PINGs (item ids 1-4).
constexpr const char *kSubscribePrefix = "{\"type\":\"SUBSCRIBE\",\"topic\":\"bench\",\"id\":";
constexpr const char *kUnsubscribePrefix = "{\"type\":\"UNSUBSCRIBE\",\"topic\":\"bench\",\"id\":";
constexpr const char *kPublishPrefix = "{\"type\":\"PUBLISH\",\"topic\":\"nobody\",\"data\":\"abcdefghijklmnop\",\"id\":";
constexpr const char *kBatchPrefix = "{\"type\":\"BATCH\",\"id\":";
constexpr const char *kBatchItems =
    ",\"messages\":[{\"type\":\"PING\",\"id\":1},{\"type\":\"PING\",\"id\":2},{\"type\":\"PING\",\"id\":3},"
    "{\"type\":\"PING\",\"id\":4}]}";
// Reply patterns: kDigits stands for one or more decimal digits (a time), kStamp for the
// request's 16-digit id; every other byte must be itself.
constexpr char kDigits = '\x01', kStamp = '\x02';

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    std::string mode = "echo";
    int connections = 100;
    int inflight = 1;
    size_t size = 32;
    PayloadKind payload = PayloadKind::TEXT;
    ReplyKind reply = ReplyKind::ECHO;
    int threads = 1;            // echo: threads, each with its own epoll loop and share of connections
    double warmup = 3;
    double duration = 5;
    bool deflate = false;
    int serverPid = 0;
    int connectConcurrency = 64;
    double hold = 5;           // idle: seconds the connections are held
    double rateStart = 25;     // fanout: publishes per second of the first step
    double rateMax = 1e6;
    double step = 2;           // fanout: seconds per rate step
    size_t publishSize = 64;
    std::string path = "/";     // request target of the upgrade (a token may go in its query)
    std::string header;         // one extra request header line, e.g. "Authorization: Bearer x"
    int skipFirst = 0;          // messages to ignore at the start of each connection (a greeting)
    std::string topic;          // fanout: speak the realtime protocol (SUBSCRIBE/PUBLISH/MESSAGE) on it
    std::vector<in_addr> sources;  // --sources A,B: local addresses to connect from, in turn
};

volatile sig_atomic_t gStop = 0;
void onStopSignal(int) { gStop = 1; }

[[noreturn]] void usage(const char *why) {
    std::fprintf(stderr,
                 "loadgen: %s\n"
                 "usage: loadgen --port P [--host H] [--mode echo|idle|fanout] [--connections N]\n"
                 "  echo:   [--inflight K] [--size BYTES]\n"
                 "          [--payload text|binary|json|request|request-json|ping|subscribe|publish|batch]\n"
                 "          [--reply echo|pong|subscribed|published|batch] [--deflate] [--threads T]\n"
                 "          [--path /p?q] [--header 'Name: value'] [--skip-first N]\n"
                 "          [--warmup S] [--duration S]\n"
                 "  idle:   [--hold S]\n"
                 "  fanout: [--rate-start R] [--rate-max R] [--step S] [--publish-size BYTES] [--topic T]\n"
                 "  subscribe: --topic T [--hold S] [--sources A,B]; publish: --topic T --rate-start R --duration S\n"
                 "  all:    [--server-pid PID] [--connect-concurrency N]\n",
                 why);
    std::exit(2);
}

Options parseOptions(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string flag = argv[i];
        if (flag == "--deflate") {
            o.deflate = true;
            continue;
        }
        if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
        const char *value = argv[++i];
        if (flag == "--host") o.host = value;
        else if (flag == "--port") o.port = std::atoi(value);
        else if (flag == "--mode") o.mode = value;
        else if (flag == "--connections") o.connections = std::atoi(value);
        else if (flag == "--inflight") o.inflight = std::atoi(value);
        else if (flag == "--size") o.size = size_t(std::atol(value));
        else if (flag == "--warmup") o.warmup = std::atof(value);
        else if (flag == "--duration") o.duration = std::atof(value);
        else if (flag == "--server-pid") o.serverPid = std::atoi(value);
        else if (flag == "--connect-concurrency") o.connectConcurrency = std::atoi(value);
        else if (flag == "--hold") o.hold = std::atof(value);
        else if (flag == "--rate-start") o.rateStart = std::atof(value);
        else if (flag == "--rate-max") o.rateMax = std::atof(value);
        else if (flag == "--step") o.step = std::atof(value);
        else if (flag == "--publish-size") o.publishSize = size_t(std::atol(value));
        else if (flag == "--path") o.path = value;
        else if (flag == "--header") o.header = value;
        else if (flag == "--skip-first") o.skipFirst = std::atoi(value);
        else if (flag == "--topic") o.topic = value;
        else if (flag == "--threads") o.threads = std::atoi(value);
        else if (flag == "--reply") {
            std::string kind = value;
            if (kind == "echo") o.reply = ReplyKind::ECHO;
            else if (kind == "pong") o.reply = ReplyKind::PONG;
            else if (kind == "subscribed") o.reply = ReplyKind::SUBSCRIBED;
            else if (kind == "published") o.reply = ReplyKind::PUBLISHED;
            else if (kind == "batch") o.reply = ReplyKind::BATCH;
            else usage("--reply must be echo, pong, subscribed, published or batch");
        }
        else if (flag == "--sources") {
            std::string text = value;
            for (size_t at = 0; at <= text.size();) {
                size_t comma = text.find(',', at);
                if (comma == std::string::npos) comma = text.size();
                in_addr a{};
                if (inet_pton(AF_INET, text.substr(at, comma - at).c_str(), &a) != 1) usage("--sources takes IPv4 addresses");
                o.sources.push_back(a);
                at = comma + 1;
            }
        }
        else if (flag == "--payload") {
            std::string kind = value;
            if (kind == "text") o.payload = PayloadKind::TEXT;
            else if (kind == "binary") o.payload = PayloadKind::BINARY;
            else if (kind == "json") o.payload = PayloadKind::JSON;
            else if (kind == "request") o.payload = PayloadKind::REQUEST;
            else if (kind == "request-json") o.payload = PayloadKind::REQUEST_JSON;
            else if (kind == "ping") o.payload = PayloadKind::PING;
            else if (kind == "subscribe") o.payload = PayloadKind::SUBSCRIBE;
            else if (kind == "publish") o.payload = PayloadKind::PUBLISH;
            else if (kind == "batch") o.payload = PayloadKind::BATCH;
            else usage("--payload must be text, binary, json, request, request-json, ping, subscribe, publish or batch");
        } else usage(("unknown option " + flag).c_str());
    }
    if (o.port <= 0 || o.port > 65535) usage("--port is required");
    if (o.mode != "echo" && o.mode != "idle" && o.mode != "fanout" && o.mode != "subscribe" && o.mode != "publish")
        usage("--mode must be echo, idle, fanout, subscribe or publish");
    if ((o.mode == "subscribe" || o.mode == "publish") && o.topic.empty()) usage("--mode subscribe/publish need --topic");
    if (o.connections < 1 || o.inflight < 1) usage("--connections and --inflight must be positive");
    // The id's 16 digits and '}' (a BATCH's items after them); SUBSCRIBE's size (UNSUBSCRIBE's is 2 more).
    if (o.payload == PayloadKind::PING) o.size = std::strlen(kPingPrefix) + 17;
    if (o.payload == PayloadKind::SUBSCRIBE) o.size = std::strlen(kSubscribePrefix) + 17;
    if (o.payload == PayloadKind::PUBLISH) o.size = std::strlen(kPublishPrefix) + 17;
    if (o.payload == PayloadKind::BATCH) o.size = std::strlen(kBatchPrefix) + 16 + std::strlen(kBatchItems);
    if (o.size < 24) usage("--size must be at least 24 (room for the sequence stamp)");
    if (o.threads < 1 || o.threads > 64) usage("--threads must be 1 to 64");
    if (o.threads > 1 && o.mode != "echo") usage("--threads is for --mode echo only");
    if (o.threads > o.connections) usage("--threads must not exceed --connections");
    if (o.reply == ReplyKind::PONG && o.payload != PayloadKind::PING) usage("--reply pong needs --payload ping");
    if (o.reply == ReplyKind::SUBSCRIBED && o.payload != PayloadKind::SUBSCRIBE) usage("--reply subscribed needs --payload subscribe");
    if (o.reply == ReplyKind::PUBLISHED && o.payload != PayloadKind::PUBLISH) usage("--reply published needs --payload publish");
    if (o.reply == ReplyKind::BATCH && o.payload != PayloadKind::BATCH) usage("--reply batch needs --payload batch");
    if (o.publishSize < 16) usage("--publish-size must be at least 16 (timestamp and sequence)");
    if (!o.topic.empty() && o.publishSize < 32) usage("--publish-size must be at least 32 with --topic (hex stamps)");
    return o;
}

struct Errors {
    uint64_t mismatches = 0;      // an echo or delivery that differs from what was sent
    uint64_t connectFailed = 0;
    uint64_t handshakeFailed = 0;
    uint64_t closedByServer = 0;  // closed or reset before the load generator ended the run
    uint64_t protocol = 0;        // malformed frames, unexpected messages
    uint64_t subscribeTimeout = 0;

    uint64_t total() const {
        return mismatches + connectFailed + handshakeFailed + closedByServer + protocol + subscribeTimeout;
    }

    void add(const Errors &other) {
        mismatches += other.mismatches;
        connectFailed += other.connectFailed;
        handshakeFailed += other.handshakeFailed;
        closedByServer += other.closedByServer;
        protocol += other.protocol;
        subscribeTimeout += other.subscribeTimeout;
    }

    void write(Json &out) const {
        out.beginObject("errors");
        out.field("mismatches", mismatches);
        out.field("connect_failed", connectFailed);
        out.field("handshake_failed", handshakeFailed);
        out.field("closed_by_server", closedByServer);
        out.field("protocol", protocol);
        out.field("subscribe_timeout", subscribeTimeout);
        out.endObject();
        out.field("ok", total() == 0);
    }
};

// ---- reporting ---------------------------------------------------------------------------

struct Sample {
    uint64_t ns;
    double ownCpu;
    double serverCpu;
    long serverRss;
    double machineBusy;
};

Sample sample(int serverPid) {
    Sample s{monotonicNs(), cpuSeconds(), -1, -1, machineBusySeconds()};
    if (serverPid) {
        s.serverCpu = serverCpuSeconds(serverPid);
        s.serverRss = serverRssKb(serverPid);
    }
    return s;
}

void writeLatency(Json &out, const char *name, const Histogram &h) {
    out.beginObject(name);
    out.field("p50", h.percentileMicros(0.50));
    out.field("p90", h.percentileMicros(0.90));
    out.field("p99", h.percentileMicros(0.99));
    out.field("p999", h.percentileMicros(0.999));
    out.field("max", h.maxMicros());
    out.field("mean", h.meanMicros());
    out.field("samples", h.count());
    out.endObject();
}

// CPU of the load generator (all its threads) and of the server over the same window. The load
// generator is called the bottleneck when one of its loops kept a core >= 90 % busy:
// `busiestLoop` is that loop's busy fraction, or < 0 when the process has one loop.
void writeCosts(Json &out, const Sample &start, const Sample &end, uint64_t messages, int serverPid,
                double busiestLoop = -1) {
    double seconds = double(end.ns - start.ns) / 1e9;
    double own = end.ownCpu - start.ownCpu;
    out.field("loadgen_cpu_s", own);
    out.field("loadgen_cpu_fraction", own / seconds);
    out.field("loadgen_bottleneck", (busiestLoop < 0 ? own / seconds : busiestLoop) >= kBottleneckFraction);
    if (serverPid && start.serverCpu >= 0 && end.serverCpu >= 0) {
        double server = end.serverCpu - start.serverCpu;
        out.field("server_cpu_s", server);
        out.field("server_cpu_fraction", server / seconds);
        if (messages) out.field("server_cpu_us_per_msg", server * 1e6 / double(messages));
        out.field("server_rss_kb", int64_t(end.serverRss));
        out.field("other_cpu_cores", (end.machineBusy - start.machineBusy - own - server) / seconds);
    }
}

// The measured window of a threaded echo run, published by the main thread once every echo
// thread has its connections open: `end` is stored before `start`, and `start` != 0 says both are set.
struct EchoWindow {
    std::atomic<int> ready{0};
    std::atomic<uint64_t> start{0};
    std::atomic<uint64_t> end{0};
};

class Loadgen {
public:
    explicit Loadgen(const Options &options, uint32_t maskSeed = 0x9e3779b9u)
        : opt_(options), readBuffer_(256 * 1024), maskState_(maskSeed) {
        epoll_ = epoll_create1(EPOLL_CLOEXEC);
        address_.sin_family = AF_INET;
        address_.sin_port = htons(uint16_t(opt_.port));
        if (inet_pton(AF_INET, opt_.host.c_str(), &address_.sin_addr) != 1) usage("--host must be an IPv4 address");
        buildTemplates();
    }

    // The idle and fan-out modes (echo runs through runEcho() below, on one or more threads).
    int run() {
        Json out;
        out.field("mode", opt_.mode);
        if (opt_.mode == "idle") runIdle(out);
        else if (opt_.mode == "subscribe") runSubscribe(out);
        else if (opt_.mode == "publish") runPublish(out);
        else runFanout(out);
        closeAll();
        errors_.write(out);
        std::printf("%s\n", out.finish().c_str());
        return errors_.total() == 0 ? 0 : 1;
    }

    // One echo thread's part of the run: opens its connections, keeps them busy through the
    // warm-up, counts the replies of the window the main thread publishes, then closes them.
    void echoThread(EchoWindow &window) {
        openConnections(opt_.connections, Role::ECHO, 30);
        for (Connection &c : connections_) {
            if (c.state != ConnectionState::OPEN) continue;
            for (int k = 0; k < opt_.inflight; k++) sendEcho(c);
        }
        flushDirty();
        window.ready.fetch_add(1);
        uint64_t start;
        while ((start = window.start.load()) == 0) poll(10);
        uint64_t end = window.end.load();
        while (now_ < start) poll(50);
        double cpuStart = threadCpuSeconds();
        measuring_ = true;
        while (now_ < end) poll(50);
        measuring_ = false;
        loopCpu_ = threadCpuSeconds() - cpuStart;
        openedTotal_ = opened_;
        closeAll();
    }

    const Errors &errors() const { return errors_; }
    const Histogram &latency() const { return latency_; }
    uint64_t messages() const { return messages_; }
    uint64_t bytes() const { return bytes_; }
    uint64_t compressedReceived() const { return compressedReceived_; }
    int opened() const { return openedTotal_; }
    int deflateConnections() const { return deflateConnections_; }
    double loopCpu() const { return loopCpu_; }  // CPU seconds of the measured window

    static void raiseFileLimit() {
        rlimit limit;
        getrlimit(RLIMIT_NOFILE, &limit);
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }

private:
    // ---- payloads ------------------------------------------------------------------------

    // Echo payloads are a fixed template with the message's sequence number stamped at
    // stampOffset_ (16 hex digits for text and JSON, 8 raw bytes for binary).
    void buildTemplates() {
        echoTemplate_.resize(opt_.size);
        if (opt_.payload == PayloadKind::JSON) {
            std::string json = "{\"seq\":\"0000000000000000\",\"readings\":[";
            for (int id = 0; json.size() + 80 < opt_.size; id++) {
                json += "{\"id\":" + std::to_string(id) + ",\"sensor\":\"probe-" + std::to_string(id % 7) +
                        "\",\"value\":" + std::to_string(id * 3) + ".25,\"ok\":true},";
            }
            if (json.back() == ',') json.pop_back();
            json += "]";
            while (json.size() + 1 < opt_.size) json += ' ';
            json += "}";
            std::memcpy(echoTemplate_.data(), json.data(), opt_.size);
            stampOffset_ = 8;
        } else if (opt_.payload == PayloadKind::REQUEST) {
            // A realtime-protocol request whose reply, {...request, "id"}, is the same bytes.
            std::string json = "{\"type\":\"ECHO\",\"id\":\"0000000000000000\",\"data\":\"";
            while (json.size() + 2 < opt_.size) json += char('a' + json.size() % 26);
            json += "\"}";
            std::memcpy(echoTemplate_.data(), json.data(), opt_.size);
            stampOffset_ = 21;
        } else if (opt_.payload == PayloadKind::REQUEST_JSON) {
            // The same request with JSON data (sensor readings, as --payload json), written as a
            // server re-encoding it would (no spaces, integers only), so the reply is the same bytes.
            std::string json = "{\"type\":\"ECHO\",\"id\":\"0000000000000000\",\"data\":{\"readings\":[";
            for (int id = 0; json.size() + 90 < opt_.size; id++) {
                json += "{\"id\":" + std::to_string(id) + ",\"sensor\":\"probe-" + std::to_string(id % 7) +
                        "\",\"value\":" + std::to_string(id * 3 + 1) + ",\"ok\":true},";
            }
            if (json.back() == ',') json.pop_back();
            json += "],\"pad\":\"";
            while (json.size() + 3 < opt_.size) json += char('a' + json.size() % 26);
            json += "\"}}";
            std::memcpy(echoTemplate_.data(), json.data(), opt_.size);
            stampOffset_ = 21;
        } else if (opt_.payload == PayloadKind::PING) {
            std::string json = std::string(kPingPrefix) + std::to_string(kPingIdBase) + "}";
            std::memcpy(echoTemplate_.data(), json.data(), opt_.size);
            stampOffset_ = std::strlen(kPingPrefix);
            replyPattern_ = std::string("{\"type\":\"PONG\",\"serverTime\":") + kDigits + ",\"id\":" + kStamp + "}";
        } else if (opt_.payload == PayloadKind::SUBSCRIBE) {
            std::string json = std::string(kSubscribePrefix) + std::to_string(kPingIdBase) + "}";
            std::memcpy(echoTemplate_.data(), json.data(), opt_.size);
            stampOffset_ = std::strlen(kSubscribePrefix);
            replyPattern_ = std::string("{\"type\":\"SUBSCRIBED\",\"topic\":\"bench\",\"id\":") + kStamp + "}";
            // Odd sequence numbers UNSUBSCRIBE.
            std::string other = std::string(kUnsubscribePrefix) + std::to_string(kPingIdBase) + "}";
            oddTemplate_.assign(other.begin(), other.end());
            oddStampOffset_ = std::strlen(kUnsubscribePrefix);
            oddReplyPattern_ = std::string("{\"type\":\"UNSUBSCRIBED\",\"topic\":\"bench\",\"id\":") + kStamp + "}";
        } else if (opt_.payload == PayloadKind::PUBLISH) {
            std::string json = std::string(kPublishPrefix) + std::to_string(kPingIdBase) + "}";
            std::memcpy(echoTemplate_.data(), json.data(), opt_.size);
            stampOffset_ = std::strlen(kPublishPrefix);
            replyPattern_ = std::string("{\"type\":\"PUBLISHED\",\"topic\":\"nobody\",\"id\":") + kStamp + "}";
        } else if (opt_.payload == PayloadKind::BATCH) {
            std::string json = std::string(kBatchPrefix) + std::to_string(kPingIdBase) + kBatchItems;
            std::memcpy(echoTemplate_.data(), json.data(), opt_.size);
            stampOffset_ = std::strlen(kBatchPrefix);
            // Dispatcher.batch's {"type":"BATCH","timestamp":..,"messages":[..],"id":..}, the
            // items' PONGs in order with their ids.
            replyPattern_ = std::string("{\"type\":\"BATCH\",\"timestamp\":") + kDigits + ",\"messages\":[";
            for (int item = 1; item <= 4; item++) {
                replyPattern_ += std::string(item > 1 ? "," : "") + "{\"type\":\"PONG\",\"serverTime\":" + kDigits +
                                 ",\"id\":" + std::to_string(item) + "}";
            }
            replyPattern_ += std::string("],\"id\":") + kStamp + "}";
        } else {
            const char *alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            for (size_t i = 0; i < opt_.size; i++) {
                echoTemplate_[i] = opt_.payload == PayloadKind::TEXT ? uint8_t(alphabet[(i * 7) % 62]) : uint8_t(i * 131 + 17);
            }
            stampOffset_ = 0;
        }
        stampWidth_ = opt_.payload == PayloadKind::BINARY ? 8 : 16;
        publishTemplate_.resize(opt_.publishSize);
        for (size_t i = 0; i < opt_.publishSize; i++) publishTemplate_[i] = uint8_t(i * 37 + 5);
        if (!opt_.topic.empty()) {
            // Realtime fan-out: PUBLISH {"data": "<send time, 16 hex><sequence, 16 hex><letters>"}
            // and MESSAGE {"type","topic","data",...} in the order the server encodes it.
            for (size_t i = 32; i < opt_.publishSize; i++) publishTemplate_[i] = uint8_t('a' + i % 26);
            publishPrefix_ = "{\"type\":\"PUBLISH\",\"topic\":\"" + opt_.topic + "\",\"data\":\"";
            messagePrefix_ = "{\"type\":\"MESSAGE\",\"topic\":\"" + opt_.topic + "\",\"data\":\"";
            subscribeRequest_ = "{\"type\":\"SUBSCRIBE\",\"topic\":\"" + opt_.topic + "\"}";
        }
        replyPieces_ = compilePattern(replyPattern_);
        oddReplyPieces_ = compilePattern(oddReplyPattern_);
    }

    static void hex16(uint8_t *out, uint64_t value) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; i--, value >>= 4) out[i] = uint8_t(hex[value & 15]);
    }

    static bool unhex16(const uint8_t *in, uint64_t &value) {
        value = 0;
        for (int i = 0; i < 16; i++) {
            uint8_t c = in[i];
            uint64_t digit = c >= '0' && c <= '9' ? uint64_t(c - '0') : c >= 'a' && c <= 'f' ? uint64_t(c - 'a' + 10) : 16;
            if (digit > 15) return false;
            value = (value << 4) | digit;
        }
        return true;
    }

    void stamp(uint8_t *out, uint64_t seq) const {
        if (stampWidth_ == 8) {
            std::memcpy(out, &seq, 8);
            return;
        }
        if (decimalStamp()) {
            uint64_t id = kPingIdBase + seq;
            for (int i = 15; i >= 0; i--, id /= 10) out[i] = uint8_t('0' + id % 10);
            return;
        }
        static const char hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; i--, seq >>= 4) out[i] = uint8_t(hex[seq & 15]);
    }

    bool decimalStamp() const {
        return opt_.payload == PayloadKind::PING || opt_.payload == PayloadKind::SUBSCRIBE ||
               opt_.payload == PayloadKind::PUBLISH || opt_.payload == PayloadKind::BATCH;
    }

    // The request of sequence number `seq` (SUBSCRIBE and UNSUBSCRIBE alternate) and its stamp's place.
    bool odd(uint64_t seq) const { return !oddTemplate_.empty() && (seq & 1); }
    const std::vector<uint8_t> &requestTemplate(uint64_t seq) const { return odd(seq) ? oddTemplate_ : echoTemplate_; }
    size_t stampOffset(uint64_t seq) const { return odd(seq) ? oddStampOffset_ : stampOffset_; }

    bool echoMatches(const uint8_t *data, size_t length, uint64_t seq) const {
        const std::vector<uint8_t> &request = requestTemplate(seq);
        size_t offset = stampOffset(seq);
        if (length != request.size()) return false;
        uint8_t expected[16];
        stamp(expected, seq);
        size_t end = offset + stampWidth_;
        return std::memcmp(data + offset, expected, stampWidth_) == 0 &&
               std::memcmp(data, request.data(), offset) == 0 &&
               std::memcmp(data + end, request.data() + end, length - end) == 0;
    }

    // The realtime server's reply to request `seq`: its pattern exactly, kDigits one or more
    // digits, kStamp the request's 16-digit id, nothing more. The pattern is compared by its
    // pieces (compilePattern): each literal run with one memcmp, so that checking a long reply
    // (scenario 14's BATCH) costs the load generator little more than an echo's memcmp.
    bool replyMatches(const uint8_t *data, size_t length, uint64_t seq) const {
        const std::vector<PatternPiece> &pieces = odd(seq) ? oddReplyPieces_ : replyPieces_;
        uint8_t expected[16];
        stamp(expected, seq);
        size_t at = 0;
        for (const PatternPiece &piece : pieces) {
            size_t literal = piece.literal.size();
            if (length - at < literal || std::memcmp(data + at, piece.literal.data(), literal) != 0) return false;
            at += literal;
            if (piece.then == kDigits) {
                size_t start = at;
                while (at < length && data[at] >= '0' && data[at] <= '9') at++;
                if (at == start) return false;
            } else if (piece.then == kStamp) {
                if (length - at < 16 || std::memcmp(data + at, expected, 16) != 0) return false;
                at += 16;
            }
        }
        return at == length;
    }

    // A reply pattern split at its kDigits and kStamp marks: each piece a literal run and the
    // mark after it (0 for the last run).
    struct PatternPiece {
        std::string literal;
        char then = 0;
    };

    static std::vector<PatternPiece> compilePattern(const std::string &pattern) {
        std::vector<PatternPiece> pieces(1);
        for (char p : pattern) {
            if (p == kDigits || p == kStamp) {
                pieces.back().then = p;
                pieces.emplace_back();
            } else {
                pieces.back().literal += p;
            }
        }
        return pieces;
    }

    // ---- sending -------------------------------------------------------------------------

    uint32_t nextMask() {
        maskState_ ^= maskState_ << 13;
        maskState_ ^= maskState_ >> 17;
        maskState_ ^= maskState_ << 5;
        return maskState_;
    }

    void queueFrame(Connection &c, uint8_t opcode, const uint8_t *payload, size_t length) {
        bool compressed = false;
        if (c.deflateNegotiated && (opcode == frames::TEXT || opcode == frames::BINARY)) {
            compressScratch_.clear();
            c.deflate->compress(payload, length, compressScratch_);
            payload = compressScratch_.data();
            length = compressScratch_.size();
            compressed = true;
        }
        uint32_t mask = nextMask();
        size_t start = c.out.size();
        c.out.resize(start + frames::kMaxClientHeader + length);
        size_t header = frames::writeHeader(c.out.data() + start, opcode, compressed, length, mask);
        frames::maskCopy(c.out.data() + start + header, payload, length, mask);
        c.out.resize(start + header + length);
        markDirty(c);
    }

    // The echo payload is masked straight from the template, then the stamp is masked over it:
    // one pass over the payload instead of copy-then-mask.
    void sendEcho(Connection &c) {
        uint64_t seq = c.sentSeq++;
        c.sendTimes[seq % c.sendTimes.size()] = now_;
        const std::vector<uint8_t> &request = requestTemplate(seq);
        size_t offset = stampOffset(seq), size = request.size();
        if (c.deflateNegotiated) {
            echoScratch_.assign(request.begin(), request.end());
            stamp(echoScratch_.data() + offset, seq);
            queueFrame(c, opcode(), echoScratch_.data(), echoScratch_.size());
            return;
        }
        uint32_t mask = nextMask();
        size_t start = c.out.size();
        c.out.resize(start + frames::kMaxClientHeader + size);
        uint8_t *frame = c.out.data() + start;
        size_t header = frames::writeHeader(frame, opcode(), false, size, mask);
        uint8_t *payload = frame + header;
        frames::maskCopy(payload, request.data(), size, mask);
        uint8_t stamped[16];
        stamp(stamped, seq);
        const uint8_t *key = reinterpret_cast<const uint8_t *>(&mask);
        for (size_t i = 0; i < stampWidth_; i++) {
            size_t at = offset + i;
            payload[at] = stamped[i] ^ key[at & 3];
        }
        c.out.resize(start + header + size);
        markDirty(c);
    }

    uint8_t opcode() const { return opt_.payload == PayloadKind::BINARY ? frames::BINARY : frames::TEXT; }

    void publish(Connection &c, uint64_t seq) {
        if (!opt_.topic.empty()) {
            publishScratch_.assign(publishPrefix_.begin(), publishPrefix_.end());
            size_t at = publishScratch_.size();
            publishScratch_.insert(publishScratch_.end(), publishTemplate_.begin(), publishTemplate_.end());
            hex16(publishScratch_.data() + at, now_);
            hex16(publishScratch_.data() + at + 16, seq);
            publishScratch_.push_back('"');
            publishScratch_.push_back('}');
            queueFrame(c, frames::TEXT, publishScratch_.data(), publishScratch_.size());
            return;
        }
        publishScratch_.assign(publishTemplate_.begin(), publishTemplate_.end());
        std::memcpy(publishScratch_.data(), &now_, 8);
        std::memcpy(publishScratch_.data() + 8, &seq, 8);
        queueFrame(c, frames::BINARY, publishScratch_.data(), publishScratch_.size());
    }

    void markDirty(Connection &c) {
        if (!c.dirty) {
            c.dirty = true;
            dirty_.push_back(uint32_t(&c - connections_.data()));
        }
    }

    void flushDirty() {
        for (uint32_t index : dirty_) {
            Connection &c = connections_[index];
            c.dirty = false;
            if (c.state != ConnectionState::CLOSED) flush(c);
        }
        dirty_.clear();
    }

    void flush(Connection &c) {
        while (c.outStart < c.out.size()) {
            ssize_t n = send(c.fd, c.out.data() + c.outStart, c.out.size() - c.outStart, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                c.outStart += size_t(n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!c.waitingWritable) setEvents(c, EPOLLIN | EPOLLOUT, true);
                return;
            }
            if (n < 0 && errno == EINTR) continue;
            lost(c);
            return;
        }
        c.out.clear();
        c.outStart = 0;
        if (c.waitingWritable) setEvents(c, EPOLLIN, false);
    }

    void setEvents(Connection &c, uint32_t events, bool waitingWritable) {
        epoll_event ev{};
        ev.events = events;
        ev.data.u32 = uint32_t(&c - connections_.data());
        epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
        c.waitingWritable = waitingWritable;
    }

    // ---- connections ---------------------------------------------------------------------

    void startConnect(Connection &c) {
        c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
            errors_.connectFailed++;
            c.state = ConnectionState::CLOSED;
            return;
        }
        int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!opt_.sources.empty()) {
            // The port is chosen at connect(), per destination: many sources, many ports.
            setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            sockaddr_in local{};
            local.sin_family = AF_INET;
            local.sin_addr = opt_.sources[size_t(&c - connections_.data()) % opt_.sources.size()];
            if (bind(c.fd, reinterpret_cast<sockaddr *>(&local), sizeof local) != 0) {
                errors_.connectFailed++;
                close(c.fd);
                c.fd = -1;
                c.state = ConnectionState::CLOSED;
                return;
            }
        }
        c.state = ConnectionState::CONNECTING;
        connecting_++;
        int rc = connect(c.fd, reinterpret_cast<sockaddr *>(&address_), sizeof address_);
        if (rc < 0 && errno != EINPROGRESS) {
            connectFailure(c);
            return;
        }
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.u32 = uint32_t(&c - connections_.data());
        epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
        c.waitingWritable = true;
    }

    void connectFailure(Connection &c) {
        errors_.connectFailed++;
        connecting_--;
        dropSocket(c);
    }

    void finishConnect(Connection &c) {
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) {
            connectFailure(c);
            return;
        }
        c.state = ConnectionState::HANDSHAKE;
        std::string request = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + opt_.host + ":" + std::to_string(opt_.port) +
                              "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + kKey +
                              "\r\nSec-WebSocket-Version: 13\r\n";
        if (opt_.deflate) request += "Sec-WebSocket-Extensions: permessage-deflate\r\n";
        if (!opt_.header.empty()) request += opt_.header + "\r\n";
        request += "\r\n";
        c.out.assign(request.begin(), request.end());
        c.outStart = 0;
        flush(c);
    }

    // Parses the 101 response; returns the bytes it took, 0 if incomplete, -1 on failure.
    long handshake(Connection &c, const uint8_t *data, size_t length) {
        std::string_view text(reinterpret_cast<const char *>(data), length);
        size_t end = text.find("\r\n\r\n");
        if (end == std::string_view::npos) return length > 16384 ? -1 : 0;
        std::string head(text.substr(0, end));
        for (char &ch : head) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        std::string acceptLower = kAccept;
        for (char &ch : acceptLower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        if (head.rfind("http/1.1 101", 0) != 0 || head.find(acceptLower) == std::string::npos) return -1;
        c.deflateNegotiated = opt_.deflate && head.find("permessage-deflate") != std::string::npos;
        if (c.deflateNegotiated) {
            c.deflate = std::make_unique<Deflate>();
            deflateConnections_++;
        }
        c.state = ConnectionState::OPEN;
        connecting_--;
        opened_++;
        onOpen(c);
        return long(end + 4);
    }

    // Opens `count` connections of `role`, at most --connect-concurrency handshakes at a time
    // so that the server's accept backlog never overflows (a dropped SYN costs a 1 s retry).
    void openConnections(int count, Role role, double timeoutSeconds) {
        size_t first = connections_.size();
        connections_.resize(first + size_t(count));
        size_t next = first;
        uint64_t deadline = monotonicNs() + uint64_t(timeoutSeconds * 1e9);
        int target = opened_ + count;
        for (size_t i = first; i < connections_.size(); i++) {
            connections_[i].role = role;
            if (role == Role::ECHO) connections_[i].sendTimes.resize(size_t(opt_.inflight));
        }
        while (true) {
            while (next < connections_.size() && connecting_ < opt_.connectConcurrency) startConnect(connections_[next++]);
            if (next == connections_.size() && connecting_ == 0) break;
            if (opened_ >= target || monotonicNs() > deadline) break;
            poll(10);
        }
        for (size_t i = first; i < connections_.size(); i++) {
            Connection &c = connections_[i];
            if (c.state == ConnectionState::CONNECTING || c.state == ConnectionState::HANDSHAKE) {
                errors_.connectFailed++;
                if (c.fd >= 0) connecting_--;
                dropSocket(c);
            } else if (c.fd < 0 && c.state != ConnectionState::CLOSED) {
                c.state = ConnectionState::CLOSED;
            }
        }
    }

    // Ends the run politely: a close frame to each open connection, up to one second for the
    // server's answer, then every socket is reset (SO_LINGER 0) so that no TIME_WAIT entries
    // pile up across rounds and exhaust the ephemeral ports.
    void closeAll() {
        stopping_ = true;
        uint8_t payload[2] = {0x03, 0xe8};
        for (Connection &c : connections_) {
            if (c.state != ConnectionState::OPEN) continue;
            queueFrame(c, frames::CLOSE, payload, 2);
            c.state = ConnectionState::CLOSING;
            closing_++;
        }
        flushDirty();
        uint64_t deadline = monotonicNs() + 1000000000u;
        while (closing_ > 0 && monotonicNs() < deadline) poll(10);
        for (Connection &c : connections_) dropSocket(c);
    }

    void dropSocket(Connection &c) {
        if (c.fd >= 0) {
            linger reset{1, 0};
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
            close(c.fd);
            c.fd = -1;
        }
        if (c.state == ConnectionState::CLOSING) closing_--;
        if (c.state == ConnectionState::OPEN) opened_--;
        c.state = ConnectionState::CLOSED;
    }

    void lost(Connection &c) {
        if (c.state == ConnectionState::CONNECTING || c.state == ConnectionState::HANDSHAKE) {
            errors_.handshakeFailed++;
            connecting_--;
        } else if (c.state == ConnectionState::OPEN && !stopping_) {
            errors_.closedByServer++;
        }
        dropSocket(c);
    }

    // ---- the loop ------------------------------------------------------------------------

    void poll(int timeoutMs) {
        epoll_event events[1024];
        int n = epoll_wait(epoll_, events, 1024, timeoutMs);
        now_ = monotonicNs();
        for (int i = 0; i < n; i++) {
            Connection &c = connections_[events[i].data.u32];
            if (c.state == ConnectionState::CLOSED) continue;
            if (c.state == ConnectionState::CONNECTING) {
                finishConnect(c);
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) receive(c);
            if ((events[i].events & EPOLLOUT) && c.state != ConnectionState::CLOSED) flush(c);
        }
        flushDirty();
    }

    void receive(Connection &c) {
        ssize_t n = recv(c.fd, readBuffer_.data(), readBuffer_.size(), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (n <= 0) {
            lost(c);
            return;
        }
        const uint8_t *data = readBuffer_.data();
        size_t length = size_t(n);
        bool fromPending = !c.pending.empty();
        if (fromPending) {
            c.pending.insert(c.pending.end(), data, data + n);
            data = c.pending.data();
            length = c.pending.size();
        }
        size_t used = consume(c, data, length);
        if (c.state == ConnectionState::CLOSED) return;
        if (fromPending) {
            c.pending.erase(c.pending.begin(), c.pending.begin() + long(used));
        } else if (used < length) {
            c.pending.assign(data + used, data + length);
        }
    }

    size_t consume(Connection &c, const uint8_t *data, size_t length) {
        size_t used = 0;
        if (c.state == ConnectionState::HANDSHAKE) {
            long taken = handshake(c, data, length);
            if (taken < 0) {
                lost(c);
                return 0;
            }
            if (taken == 0) return 0;
            used = size_t(taken);
        }
        while (used < length && c.state != ConnectionState::CLOSED) {
            frames::Frame frame;
            frames::Parse result = frames::parse(data + used, length - used, frame);
            if (result == frames::Parse::INCOMPLETE) break;
            if (result == frames::Parse::ERROR) {
                errors_.protocol++;
                dropSocket(c);
                break;
            }
            used += frame.size;
            onFrame(c, frame);
        }
        return used;
    }

    void onFrame(Connection &c, const frames::Frame &frame) {
        switch (frame.opcode) {
        case frames::CLOSE:
            if (c.state != ConnectionState::CLOSING && !stopping_) errors_.closedByServer++;
            dropSocket(c);
            return;
        case frames::PING:
            queueFrame(c, frames::PONG, frame.payload, size_t(frame.length));
            return;
        case frames::PONG:
            return;
        case frames::TEXT:
        case frames::BINARY:
            if (frame.fin) {
                deliver(c, frame.opcode, frame.rsv1, frame.payload, size_t(frame.length));
                return;
            }
            c.fragmentOpcode = frame.opcode;
            c.fragmentCompressed = frame.rsv1;
            c.fragments.assign(frame.payload, frame.payload + frame.length);
            return;
        case frames::CONTINUATION:
            c.fragments.insert(c.fragments.end(), frame.payload, frame.payload + frame.length);
            if (frame.fin) deliver(c, c.fragmentOpcode, c.fragmentCompressed, c.fragments.data(), c.fragments.size());
            return;
        default:
            errors_.protocol++;
        }
    }

    void deliver(Connection &c, uint8_t op, bool compressed, const uint8_t *data, size_t length) {
        if (compressed) {
            if (!c.deflateNegotiated || !c.deflate->decompress(data, length, inflateScratch_)) {
                errors_.protocol++;
                return;
            }
            data = inflateScratch_.data();
            length = inflateScratch_.size();
            compressedReceived_++;
        }
        if (c.state != ConnectionState::OPEN) return;
        if (c.skipped < opt_.skipFirst) {
            c.skipped++; // a greeting (the realtime layer's CONNECTED), whatever the role
            return;
        }
        switch (c.role) {
        case Role::ECHO: onEcho(c, op, data, length); break;
        case Role::SUBSCRIBER: onDelivery(c, data, length); break;
        case Role::PUBLISHER:
        case Role::IDLE: errors_.protocol++; break;
        }
    }

    void onOpen(Connection &c) {
        if (c.role == Role::SUBSCRIBER && !opt_.topic.empty()) {
            queueFrame(c, frames::TEXT, reinterpret_cast<const uint8_t *>(subscribeRequest_.data()), subscribeRequest_.size());
        } else if (c.role == Role::SUBSCRIBER) {
            static const char subscribe[] = "sub:bench";
            queueFrame(c, frames::TEXT, reinterpret_cast<const uint8_t *>(subscribe), sizeof subscribe - 1);
        }
    }

    // ---- echo ----------------------------------------------------------------------------

    void onEcho(Connection &c, uint8_t op, const uint8_t *data, size_t length) {
        if (c.receivedSeq >= c.sentSeq) {
            errors_.protocol++;
            return;
        }
        uint64_t seq = c.receivedSeq++;
        bool matches = opt_.reply == ReplyKind::ECHO ? echoMatches(data, length, seq) : replyMatches(data, length, seq);
        if (op != opcode() || !matches) errors_.mismatches++;
        if (measuring_) {
            latency_.record(now_ - c.sendTimes[seq % c.sendTimes.size()]);
            messages_++;
            bytes_ += length;
        }
        if (!stopping_) sendEcho(c);
    }

    // ---- idle ----------------------------------------------------------------------------

    void runIdle(Json &out) {
        long rssBefore = opt_.serverPid ? serverRssKb(opt_.serverPid) : -1;
        uint64_t openStart = monotonicNs();
        openConnections(opt_.connections, Role::IDLE, 120);
        double openSeconds = double(monotonicNs() - openStart) / 1e9;
        Sample start = sample(opt_.serverPid);
        uint64_t holdEnd = now_ + uint64_t(opt_.hold * 1e9);
        while (now_ < holdEnd) poll(100);
        Sample end = sample(opt_.serverPid);
        long rssAfter = opt_.serverPid ? serverRssKb(opt_.serverPid) : -1;
        out.field("connections", opt_.connections);
        out.field("connections_open", opened_);
        out.field("open_s", openSeconds);
        out.field("hold_s", opt_.hold);
        out.field("server_rss_kb_before", int64_t(rssBefore));
        out.field("server_rss_kb_after", int64_t(rssAfter));
        if (rssBefore >= 0 && opened_ > 0)
            out.field("server_rss_bytes_per_connection", double(rssAfter - rssBefore) * 1024.0 / opened_);
        writeCosts(out, start, end, 0, opt_.serverPid);
    }

    // ---- fan-out -------------------------------------------------------------------------

    void onDelivery(Connection &c, const uint8_t *data, size_t length) {
        uint64_t sentAt, seq;
        if (!opt_.topic.empty()) {
            static const char message[] = "{\"type\":\"MESSAGE\"";
            if (length < sizeof message - 1 || std::memcmp(data, message, sizeof message - 1) != 0) {
                static const char error[] = "{\"type\":\"ERROR\"";
                if (length >= sizeof error - 1 && std::memcmp(data, error, sizeof error - 1) == 0) errors_.protocol++;
                static const char subscribed[] = "{\"type\":\"SUBSCRIBED\"";
                if (length >= sizeof subscribed - 1 && std::memcmp(data, subscribed, sizeof subscribed - 1) == 0)
                    subscribed_++;
                return; // SUBSCRIBED and other replies
            }
            size_t prefix = messagePrefix_.size();
            if (length < prefix + opt_.publishSize + 1 || std::memcmp(data, messagePrefix_.data(), prefix) != 0 ||
                std::memcmp(data + prefix + 32, publishTemplate_.data() + 32, opt_.publishSize - 32) != 0 ||
                data[prefix + opt_.publishSize] != '"' || !unhex16(data + prefix, sentAt) ||
                !unhex16(data + prefix + 16, seq)) {
                errors_.mismatches++;
                return;
            }
            countDelivery(c, sentAt, seq);
            return;
        }
        if (length != opt_.publishSize ||
            std::memcmp(data + 16, publishTemplate_.data() + 16, length - 16) != 0) {
            errors_.mismatches++;
            return;
        }
        std::memcpy(&sentAt, data, 8);
        std::memcpy(&seq, data + 8, 8);
        countDelivery(c, sentAt, seq);
    }

    void countDelivery(Connection &c, uint64_t sentAt, uint64_t seq) {
        if (opt_.mode == "subscribe") {
            // Another process publishes: each sequence number counted, in order per connection.
            if (seq <= c.lastDeliveredSeq) duplicates_++;
            else c.lastDeliveredSeq = seq;
            if (seq == 0 || seq > 10000000) {
                errors_.mismatches++;
                return;
            }
            if (bySeq_.size() < seq) bySeq_.resize(seq, 0);
            bySeq_[seq - 1]++;
            // The stamp comes from another process: this loop's clock reading may predate it.
            uint64_t at = now_ >= sentAt ? now_ : monotonicNs();
            latency_.record(at > sentAt ? at - sentAt : 0);
            return;
        }
        if (seq & kProbeBit) {
            if (!c.probed) {
                c.probed = true;
                probed_++;
            }
            return;
        }
        if (seq <= c.lastDeliveredSeq || seq > publishedSeq_) errors_.mismatches++;
        c.lastDeliveredSeq = seq;
        stepDeliveries_++;
        if (now_ <= stepWindowEnd_) stepWindowDeliveries_++;
        latency_.record(now_ - sentAt);
    }

    void runFanout(Json &out) {
        openConnections(opt_.connections, Role::SUBSCRIBER, 60);
        size_t publisherIndex = connections_.size();
        openConnections(1, Role::PUBLISHER, 10);
        Connection *publisher = &connections_[publisherIndex];
        out.field("subscribers", opt_.connections);
        out.field("subscribers_open", opened_ - (publisher->state == ConnectionState::OPEN ? 1 : 0));
        if (publisher->state != ConnectionState::OPEN) return;

        // Subscriptions are live once every subscriber has received a probe publish.
        int subscribers = opened_ - 1;
        uint64_t probeDeadline = now_ + 10000000000u;
        uint64_t nextProbe = 0;
        for (uint64_t probe = 1; probed_ < subscribers && now_ < probeDeadline;) {
            if (now_ >= nextProbe) {
                publish(*publisher, kProbeBit | probe++);
                nextProbe = now_ + 50000000u;
            }
            poll(10);
        }
        if (probed_ < subscribers) {
            errors_.subscribeTimeout++;
            return;
        }
        for (uint64_t quietEnd = now_ + 300000000u; now_ < quietEnd;) poll(10);

        out.beginArray("steps");
        double bestRate = 0, bestDeliveries = 0;
        std::string best;
        for (double rate = opt_.rateStart; rate <= opt_.rateMax; rate *= 2) {
            // A step that falls short is tried once more: on a shared machine one bad second
            // should not end the ramp.
            bool sustained = false;
            double deliveriesPerSecond = 0;
            std::string text;
            for (int attempt = 0; attempt < 2 && !sustained && publisher->state == ConnectionState::OPEN; attempt++) {
                Json step;
                sustained = runStep(*publisher, rate, subscribers, step);
                deliveriesPerSecond = step.number("deliveries_per_s");
                text = step.finish();
                out.element(text);
            }
            if (!sustained) break;
            bool grew = deliveriesPerSecond >= bestDeliveries * 1.1;
            if (deliveriesPerSecond > bestDeliveries) {
                bestDeliveries = deliveriesPerSecond;
                bestRate = rate;
                best = text;
            }
            if (!grew || publisher->state != ConnectionState::OPEN) break;
        }
        out.endArray();
        out.field("best_rate", bestRate);
        if (!best.empty()) out.raw("best", best);
    }

    void runSubscribe(Json &out) {
        signal(SIGTERM, onStopSignal);
        signal(SIGINT, onStopSignal);
        uint64_t start = monotonicNs();
        openConnections(opt_.connections, Role::SUBSCRIBER, 600);
        double connectSeconds = double(monotonicNs() - start) / 1e9;
        out.field("subscribers", opt_.connections);
        out.field("opened", opened_);
        out.field("connect_s", connectSeconds);
        out.field("connect_per_s", connectSeconds > 0 ? double(opened_) / connectSeconds : 0.0);
        uint64_t subscribeDeadline = now_ + 60000000000u;
        while (subscribed_ < opened_ && now_ < subscribeDeadline && !gStop) poll(10);
        out.field("subscribed", subscribed_);
        out.field("subscribe_s", double(monotonicNs() - start) / 1e9);
        if (subscribed_ < opened_) errors_.subscribeTimeout++;
        std::fprintf(stderr, "subscribed %d\n", subscribed_);
        std::fflush(stderr);
        uint64_t end = now_ + uint64_t(opt_.hold * 1e9);
        while (now_ < end && !gStop) poll(10);
        int open = 0;
        for (const Connection &c : connections_) open += c.state == ConnectionState::OPEN;
        out.field("open_at_end", open);
        out.field("duplicates", duplicates_);
        std::string seqs = "[";
        for (size_t i = 0; i < bySeq_.size(); i++) seqs += (i ? "," : "") + std::to_string(bySeq_[i]);
        out.raw("by_seq", seqs + "]");
        writeLatency(out, "latency_us", latency_);
    }

    void runPublish(Json &out) {
        openConnections(1, Role::PUBLISHER, 10);
        Connection &publisher = connections_.back();
        if (publisher.state != ConnectionState::OPEN) return;
        uint64_t start = now_, published = 0;
        uint64_t end = start + uint64_t(opt_.duration * 1e9);
        while (now_ < end && publisher.state == ConnectionState::OPEN) {
            uint64_t due = uint64_t(double(now_ - start) / 1e9 * opt_.rateStart);
            for (; published < due; published++) publish(publisher, ++publishedSeq_);
            poll(1);
        }
        for (uint64_t drain = now_ + 1000000000u; now_ < drain;) poll(10);
        out.field("published", published);
        out.field("rate", opt_.rateStart);
        out.field("publisher_open", publisher.state == ConnectionState::OPEN);
    }

    // One rate step: publish at `rate` for --step seconds, then up to 3 s for the deliveries
    // to catch up. Sustained when (nearly) all deliveries arrived, most within the window.
    bool runStep(Connection &publisher, double rate, int subscribers, Json &out) {
        latency_.clear();
        stepDeliveries_ = 0;
        stepWindowDeliveries_ = 0;
        uint64_t stepStart = now_;
        stepWindowEnd_ = stepStart + uint64_t(opt_.step * 1e9);
        uint64_t published = 0;
        Sample start = sample(opt_.serverPid);
        while (now_ < stepWindowEnd_ && publisher.state == ConnectionState::OPEN) {
            uint64_t due = uint64_t(double(now_ - stepStart) / 1e9 * rate);
            for (int burst = 0; published < due && burst < 2000; burst++, published++) publish(publisher, ++publishedSeq_);
            poll(1);
        }
        uint64_t expected = published * uint64_t(subscribers);
        uint64_t drainEnd = now_ + 3000000000u;
        while (stepDeliveries_ < expected && now_ < drainEnd) poll(10);
        Sample end = sample(opt_.serverPid);
        double window = opt_.step;
        double ratio = expected ? double(stepDeliveries_) / double(expected) : 0;
        bool sustained = ratio >= 0.99 && double(stepWindowDeliveries_) >= 0.9 * double(expected);
        out.field("rate", rate);
        out.field("published", published);
        out.field("deliveries", stepDeliveries_);
        out.field("deliveries_per_s", double(stepWindowDeliveries_) / window);
        out.field("delivered_ratio", ratio);
        out.field("sustained", sustained);
        writeLatency(out, "latency_us", latency_);
        writeCosts(out, start, end, stepDeliveries_, opt_.serverPid);
        return sustained;
    }

    Options opt_;
    int epoll_ = -1;
    sockaddr_in address_{};
    std::vector<Connection> connections_;
    std::vector<uint32_t> dirty_;
    std::vector<uint8_t> readBuffer_;
    std::vector<uint8_t> echoTemplate_, publishTemplate_;
    std::vector<uint8_t> echoScratch_, publishScratch_, compressScratch_, inflateScratch_;
    std::string publishPrefix_, messagePrefix_, subscribeRequest_;
    size_t stampOffset_ = 0, stampWidth_ = 16;
    std::vector<uint8_t> oddTemplate_;  // --payload subscribe: the UNSUBSCRIBE of odd sequence numbers
    size_t oddStampOffset_ = 0;
    std::string replyPattern_, oddReplyPattern_;  // see replyMatches
    std::vector<PatternPiece> replyPieces_, oddReplyPieces_;
    uint32_t maskState_ = 0x9e3779b9u;
    uint64_t now_ = monotonicNs();

    int connecting_ = 0, opened_ = 0, closing_ = 0, probed_ = 0, deflateConnections_ = 0, subscribed_ = 0;
    int openedTotal_ = 0;  // echo: connections open at the end of the measured window
    double loopCpu_ = 0;
    uint64_t duplicates_ = 0;
    std::vector<uint32_t> bySeq_;
    bool measuring_ = false, stopping_ = false;
    uint64_t messages_ = 0, bytes_ = 0, compressedReceived_ = 0;
    uint64_t publishedSeq_ = 0, stepDeliveries_ = 0, stepWindowDeliveries_ = 0, stepWindowEnd_ = 0;
    Histogram latency_;
    Errors errors_;
};

// Echo mode: the connections split over --threads loops, one thread each; this thread only
// publishes the measured window, samples the CPU counters at its edges and sums the results.
int runEcho(const Options &options) {
    int threads = options.threads;
    std::vector<std::unique_ptr<Loadgen>> loops;
    for (int i = 0; i < threads; i++) {
        Options part = options;
        part.connections = options.connections / threads + (i < options.connections % threads ? 1 : 0);
        part.connectConcurrency = std::max(1, options.connectConcurrency / threads);
        loops.push_back(std::make_unique<Loadgen>(part, 0x9e3779b9u + 0x6d2b79f5u * uint32_t(i)));
    }
    EchoWindow window;
    std::vector<std::thread> running;
    for (auto &loop : loops) running.emplace_back([&loop, &window] { loop->echoThread(window); });
    while (window.ready.load() < threads) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    uint64_t measureStart = monotonicNs() + uint64_t(options.warmup * 1e9);
    uint64_t measureEnd = measureStart + uint64_t(options.duration * 1e9);
    window.end.store(measureEnd);
    window.start.store(measureStart);
    sleepUntil(measureStart);
    Sample start = sample(options.serverPid);
    sleepUntil(measureEnd);
    Sample end = sample(options.serverPid);
    for (std::thread &thread : running) thread.join();

    Errors errors;
    Histogram latency;
    uint64_t messages = 0, bytes = 0, compressed = 0;
    int opened = 0, deflated = 0;
    double busiest = 0;
    std::vector<double> loopFractions;
    double seconds = double(end.ns - start.ns) / 1e9;
    for (auto &loop : loops) {
        errors.add(loop->errors());
        latency.merge(loop->latency());
        messages += loop->messages();
        bytes += loop->bytes();
        compressed += loop->compressedReceived();
        opened += loop->opened();
        deflated += loop->deflateConnections();
        loopFractions.push_back(loop->loopCpu() / seconds);
        busiest = std::max(busiest, loopFractions.back());
    }
    Json out;
    out.field("mode", options.mode);
    out.field("connections", options.connections);
    out.field("connections_open", opened);
    out.field("inflight", options.inflight);
    out.field("size", uint64_t(options.size));
    out.field("deflate_requested", options.deflate);
    out.field("deflate_negotiated", deflated > 0 && deflated == opened);
    out.field("compressed_messages_received", compressed);
    out.field("messages", messages);
    out.field("duration_s", seconds);
    out.field("msgs_per_s", double(messages) / seconds);
    out.field("bytes_per_s", double(bytes) / seconds);
    writeLatency(out, "latency_us", latency);
    out.field("threads", threads);
    out.beginArray("threads_cpu_fraction");
    for (double fraction : loopFractions) {
        char text[32];
        std::snprintf(text, sizeof text, "%.4f", fraction);
        out.element(text);
    }
    out.endArray();
    writeCosts(out, start, end, messages, options.serverPid, busiest);
    errors.write(out);
    std::printf("%s\n", out.finish().c_str());
    return errors.total() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char **argv) {
    Options options = parseOptions(argc, argv);
    Loadgen::raiseFileLimit();
    if (options.mode == "echo") return runEcho(options);
    Loadgen loadgen(options);
    return loadgen.run();
}
