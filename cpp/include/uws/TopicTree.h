// The pub/sub registry: topic name -> subscribers, and subscriber -> topics, with O(1)
// subscribe and unsubscribe (each side remembers its index in the other). A topic exists
// only while it has subscribers, so unused topics cost nothing. The map's node of a topic
// that loses its last subscriber is kept (up to kSpareTopics of them, its vector's capacity
// with it) and reused by the next new topic: a topic subscribed and unsubscribed in turn
// allocates nothing after the first time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace uws {

struct Topic;

// Per-socket side of the registry; owner points back at the socket.
struct Subscriber {
    struct Entry {
        Topic *topic;
        uint32_t index; // this subscriber's position in topic->subscribers
    };
    std::vector<Entry> topics;
    void *owner = nullptr;
};

struct Topic {
    struct Entry {
        Subscriber *subscriber;
        uint32_t index; // this topic's position in subscriber->topics
    };
    std::string name;
    std::vector<Entry> subscribers;
};

class TopicTree {
public:
    static constexpr size_t kSpareTopics = 64;

    // false when already subscribed; count receives the topic's subscriber count after.
    bool subscribe(Subscriber *subscriber, std::string_view name, size_t &count);
    // false when not subscribed; count receives the count after (0 when the topic is gone).
    bool unsubscribe(Subscriber *subscriber, std::string_view name, size_t &count);
    // Removes every subscription, calling onRemoved(name, countAfter) for each.
    template <class F> void unsubscribeAll(Subscriber *subscriber, F &&onRemoved) {
        while (!subscriber->topics.empty()) {
            Topic *topic = subscriber->topics.back().topic;
            std::string name = topic->name;
            size_t count = 0;
            unsubscribe(subscriber, name, count);
            onRemoved(name, count);
        }
    }
    bool isSubscribed(const Subscriber *subscriber, std::string_view name) const;
    Topic *find(std::string_view name) const;
    size_t numSubscribers(std::string_view name) const;
    size_t numTopics() const { return topics_.size(); }

private:
    void detach(Topic *topic, uint32_t subscriberIndex);
    // The Topic is the map's value: a node-based map keeps its address while it exists.
    using Map = std::unordered_map<std::string, Topic>;
    Map topics_;
    std::vector<Map::node_type> spare_;
};

} // namespace uws
