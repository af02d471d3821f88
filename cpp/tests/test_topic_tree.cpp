// TopicTree: subscribe/unsubscribe bookkeeping, counts, and the back-indices that make both
// O(1), checked after every step of a seeded random sequence against a plain model.
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "check.h"
#include "uws/TopicTree.h"

namespace {

void testBasics() {
    uws::TopicTree tree;
    uws::Subscriber a, b;
    size_t count = 0;
    CHECK(tree.subscribe(&a, "news", count));
    CHECK_EQ(count, size_t(1));
    CHECK(!tree.subscribe(&a, "news", count));
    CHECK(tree.subscribe(&b, "news", count));
    CHECK_EQ(count, size_t(2));
    CHECK(tree.isSubscribed(&a, "news"));
    CHECK_EQ(tree.numSubscribers("news"), size_t(2));
    CHECK(tree.unsubscribe(&a, "news", count));
    CHECK_EQ(count, size_t(1));
    CHECK(!tree.unsubscribe(&a, "news", count));
    CHECK(tree.unsubscribe(&b, "news", count));
    CHECK_EQ(count, size_t(0));
    CHECK_EQ(tree.numTopics(), size_t(0)); // a topic without subscribers is gone
}

void testUnsubscribeAllReportsEachTopic() {
    uws::TopicTree tree;
    uws::Subscriber a, b;
    size_t count = 0;
    for (const char *topic : {"x", "y", "z"}) tree.subscribe(&a, topic, count);
    tree.subscribe(&b, "y", count);
    std::map<std::string, size_t> left;
    tree.unsubscribeAll(&a, [&](const std::string &topic, size_t after) { left[topic] = after; });
    CHECK_EQ(left.size(), size_t(3));
    CHECK_EQ(left["y"], size_t(1));
    CHECK_EQ(left["x"], size_t(0));
    CHECK(a.topics.empty());
    CHECK_EQ(tree.numTopics(), size_t(1));
}

bool consistent(const uws::TopicTree &tree, const std::vector<uws::Subscriber> &subscribers,
                const std::map<std::string, std::set<int>> &model) {
    for (int i = 0; i < int(subscribers.size()); i++) {
        const uws::Subscriber &s = subscribers[size_t(i)];
        for (uint32_t j = 0; j < s.topics.size(); j++) {
            const uws::Topic *topic = s.topics[j].topic;
            if (topic->subscribers[s.topics[j].index].subscriber != &s) return false;
            if (topic->subscribers[s.topics[j].index].index != j) return false;
            if (!model.count(topic->name) || !model.at(topic->name).count(i)) return false;
        }
    }
    for (const auto &[name, members] : model) {
        if (tree.numSubscribers(name) != members.size()) return false;
    }
    return tree.numTopics() == model.size();
}

void testRandomSequencesAgainstAModel() {
    for (unsigned seed = 0; seed < 50; seed++) {
        check::Scope scope("seed ", seed);
        std::mt19937 random(seed);
        uws::TopicTree tree;
        std::vector<uws::Subscriber> subscribers(6);
        std::map<std::string, std::set<int>> model;
        bool ok = true;
        for (int step = 0; step < 400 && ok; step++) {
            int who = int(random() % subscribers.size());
            std::string topic = "t" + std::to_string(random() % 5);
            size_t count = 0;
            switch (random() % 3) {
            case 0:
                CHECK_EQ(tree.subscribe(&subscribers[size_t(who)], topic, count), model[topic].insert(who).second);
                break;
            case 1: {
                bool was = model.count(topic) && model[topic].erase(who);
                if (model.count(topic) && model[topic].empty()) model.erase(topic);
                CHECK_EQ(tree.unsubscribe(&subscribers[size_t(who)], topic, count), was);
                break;
            }
            default:
                tree.unsubscribeAll(&subscribers[size_t(who)], [](const std::string &, size_t) {});
                for (auto it = model.begin(); it != model.end();) {
                    it->second.erase(who);
                    it = it->second.empty() ? model.erase(it) : std::next(it);
                }
            }
            ok = consistent(tree, subscribers, model);
            CHECK(ok);
        }
    }
}

// A topic's node is reused by the next new topic once its last subscriber leaves: the reused
// node must carry the new name (short and longer than a small string), no subscriber of the
// old topic, and a lookup of the old name must find nothing. More topics than the spare
// list holds come and go.
void testReusedTopicsCarryNoOldState() {
    uws::TopicTree tree;
    uws::Subscriber a, b;
    size_t count = 0;
    const size_t many = uws::TopicTree::kSpareTopics + 20;
    auto name = [](size_t i) { return (i % 2 ? "a-topic-name-longer-than-sso/" : "t") + std::to_string(i); };
    for (size_t i = 0; i < many; i++) CHECK(tree.subscribe(&a, name(i), count));
    CHECK(tree.subscribe(&b, name(0), count));
    for (size_t i = 0; i < many; i++) CHECK(tree.unsubscribe(&a, name(i), count));
    CHECK_EQ(tree.numTopics(), size_t(1)); // b still on name(0)
    for (size_t i = 0; i < many; i++) {
        std::string fresh = "fresh/" + std::to_string(i) + (i % 3 ? "" : "-with-a-long-suffix-xxxxxxxx");
        CHECK(tree.subscribe(&a, fresh, count));
        CHECK_EQ(count, size_t(1));
        uws::Topic *topic = tree.find(fresh);
        CHECK(topic != nullptr);
        if (topic) {
            CHECK_EQ(topic->name, fresh);
            CHECK_EQ(topic->subscribers.size(), size_t(1));
        }
        if (i > 0) CHECK(tree.find(name(i)) == nullptr);
        CHECK(tree.isSubscribed(&a, fresh));
        CHECK(!tree.isSubscribed(&b, fresh));
    }
    CHECK_EQ(tree.numSubscribers(name(0)), size_t(1));
    CHECK_EQ(a.topics.size(), many);
    tree.unsubscribeAll(&a, [](const std::string &, size_t) {});
    tree.unsubscribeAll(&b, [](const std::string &, size_t) {});
    CHECK_EQ(tree.numTopics(), size_t(0));
}

} // namespace

int main() {
    RUN_TEST(testBasics);
    RUN_TEST(testUnsubscribeAllReportsEachTopic);
    RUN_TEST(testRandomSequencesAgainstAModel);
    RUN_TEST(testReusedTopicsCarryNoOldState);
    return check::report("test_topic_tree");
}
