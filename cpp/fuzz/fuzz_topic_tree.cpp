// libFuzzer target: TopicTree against a reference model, std::map<topic, set of subscribers>.
//
// Each input byte is one operation: bits 5-7 pick it, bits 3-4 one of kSubscribers
// subscribers, bits 0-2 one of kTopicNames. After every operation the tree must agree with
// the model (return values, counts, membership), and both back-indexes must hold: for every
// Subscriber::Entry e at position i of s.topics, e.topic->subscribers[e.index] is
// {&s, i}, and for every Topic::Entry likewise the other way.
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "uws/TopicTree.h"

namespace {

constexpr int kSubscribers = 4;

// Short and long names (past the small-string buffer), a prefix of another, the empty name
// and one with a NUL inside: all are just bytes to the tree.
const std::string kTopicNames[8] = {
    "", "a", "ab", "room/1", "room/2", std::string("nul\0inside", 10), "a-topic-name-longer-than-sso-buffers", "b",
};

using Model = std::map<std::string, std::set<int>>;

struct Fixture {
    uws::TopicTree tree;
    uws::Subscriber subscribers[kSubscribers];
    Model model;

    int indexOf(const uws::Subscriber *subscriber) const {
        for (int i = 0; i < kSubscribers; i++) {
            if (&subscribers[i] == subscriber) return i;
        }
        return -1;
    }

    size_t modelCount(const std::string &name) const {
        auto it = model.find(name);
        return it == model.end() ? 0 : it->second.size();
    }

    bool modelHas(int subscriber, const std::string &name) const {
        auto it = model.find(name);
        return it != model.end() && it->second.count(subscriber) > 0;
    }

    void modelRemove(int subscriber, const std::string &name) {
        auto it = model.find(name);
        it->second.erase(subscriber);
        if (it->second.empty()) model.erase(it);
    }

    void apply(uint8_t operation) {
        const int s = (operation >> 3) & 3;
        uws::Subscriber *subscriber = &subscribers[s];
        const std::string &name = kTopicNames[operation & 7];
        size_t count = 12345;
        switch (operation >> 5) {
        case 0:
        case 1: {
            bool had = modelHas(s, name);
            FUZZ_CHECK(tree.subscribe(subscriber, name, count) == !had);
            model[name].insert(s);
            FUZZ_CHECK(count == modelCount(name));
            break;
        }
        case 2:
        case 3: {
            bool had = modelHas(s, name);
            FUZZ_CHECK(tree.unsubscribe(subscriber, name, count) == had);
            if (had) modelRemove(s, name);
            FUZZ_CHECK(count == modelCount(name));
            break;
        }
        case 4: {
            std::set<std::string> expected;
            for (const auto &[topic, members] : model) {
                if (members.count(s)) expected.insert(topic);
            }
            std::set<std::string> removed;
            tree.unsubscribeAll(subscriber, [&](const std::string &topic, size_t countAfter) {
                FUZZ_CHECK(expected.count(topic) == 1);
                FUZZ_CHECK(removed.insert(topic).second);
                modelRemove(s, topic);
                FUZZ_CHECK(countAfter == modelCount(topic));
            });
            FUZZ_CHECK(removed == expected);
            FUZZ_CHECK(subscriber->topics.empty());
            break;
        }
        case 5:
            FUZZ_CHECK(tree.isSubscribed(subscriber, name) == modelHas(s, name));
            break;
        case 6:
            FUZZ_CHECK(tree.numSubscribers(name) == modelCount(name));
            break;
        case 7: {
            uws::Topic *topic = tree.find(name);
            FUZZ_CHECK((topic != nullptr) == (model.count(name) > 0));
            if (topic) FUZZ_CHECK(topic->name == name);
            break;
        }
        }
        checkConsistent();
    }

    void checkConsistent() const {
        FUZZ_CHECK(tree.numTopics() == model.size());
        for (const std::string &name : kTopicNames) {
            const uws::Topic *topic = tree.find(name);
            auto it = model.find(name);
            if (it == model.end()) {
                FUZZ_CHECK(topic == nullptr);
                FUZZ_CHECK(tree.numSubscribers(name) == 0);
                continue;
            }
            FUZZ_CHECK(topic != nullptr && topic->name == name);
            FUZZ_CHECK(topic->subscribers.size() == it->second.size());
            std::set<int> members;
            for (size_t i = 0; i < topic->subscribers.size(); i++) {
                const uws::Topic::Entry &entry = topic->subscribers[i];
                int s = indexOf(entry.subscriber);
                FUZZ_CHECK(s >= 0);
                FUZZ_CHECK(members.insert(s).second);
                FUZZ_CHECK(entry.index < entry.subscriber->topics.size());
                const uws::Subscriber::Entry &back = entry.subscriber->topics[entry.index];
                FUZZ_CHECK(back.topic == topic && back.index == i);
            }
            FUZZ_CHECK(members == it->second);
        }
        for (int s = 0; s < kSubscribers; s++) {
            const uws::Subscriber &subscriber = subscribers[s];
            size_t expected = 0;
            for (const auto &[topic, members] : model) expected += members.count(s);
            FUZZ_CHECK(subscriber.topics.size() == expected);
            for (size_t i = 0; i < subscriber.topics.size(); i++) {
                const uws::Subscriber::Entry &entry = subscriber.topics[i];
                FUZZ_CHECK(modelHas(s, entry.topic->name));
                FUZZ_CHECK(tree.find(entry.topic->name) == entry.topic);
                FUZZ_CHECK(entry.index < entry.topic->subscribers.size());
                const uws::Topic::Entry &back = entry.topic->subscribers[entry.index];
                FUZZ_CHECK(back.subscriber == &subscriber && back.index == i);
            }
        }
    }
};

// Every state of 4 subscribers x 8 topics is reachable well within this many operations;
// longer inputs would only slow each run down (the model is checked after every operation).
constexpr size_t kMaxOperations = 512;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Fixture fixture;
    for (size_t i = 0; i < size && i < kMaxOperations; i++) fixture.apply(data[i]);
    return 0;
}
