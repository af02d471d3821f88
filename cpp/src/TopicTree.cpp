#include "uws/TopicTree.h"

namespace uws {

Topic *TopicTree::find(std::string_view name) const {
    auto it = topics_.find(std::string(name));
    return it == topics_.end() ? nullptr : const_cast<Topic *>(&it->second);
}

size_t TopicTree::numSubscribers(std::string_view name) const {
    Topic *topic = find(name);
    return topic ? topic->subscribers.size() : 0;
}

bool TopicTree::isSubscribed(const Subscriber *subscriber, std::string_view name) const {
    for (const Subscriber::Entry &entry : subscriber->topics) {
        if (entry.topic->name == name) return true;
    }
    return false;
}

bool TopicTree::subscribe(Subscriber *subscriber, std::string_view name, size_t &count) {
    if (isSubscribed(subscriber, name)) {
        count = numSubscribers(name);
        return false;
    }
    std::string key(name);
    Map::iterator it = topics_.find(key);
    if (it == topics_.end()) {
        if (spare_.empty()) {
            it = topics_.emplace(std::move(key), Topic()).first;
        } else {
            Map::node_type node = std::move(spare_.back());
            spare_.pop_back();
            node.key() = std::move(key);
            it = topics_.insert(std::move(node)).position;
        }
        it->second.name.assign(name);
    }
    Topic *topic = &it->second;
    topic->subscribers.push_back({subscriber, uint32_t(subscriber->topics.size())});
    subscriber->topics.push_back({topic, uint32_t(topic->subscribers.size() - 1)});
    count = topic->subscribers.size();
    return true;
}

void TopicTree::detach(Topic *topic, uint32_t subscriberIndex) {
    std::vector<Topic::Entry> &subscribers = topic->subscribers;
    Topic::Entry removed = subscribers[subscriberIndex];
    subscribers[subscriberIndex] = subscribers.back();
    subscribers.pop_back();
    if (subscriberIndex < subscribers.size()) {
        Topic::Entry &moved = subscribers[subscriberIndex];
        moved.subscriber->topics[moved.index].index = subscriberIndex;
    }
    std::vector<Subscriber::Entry> &topics = removed.subscriber->topics;
    uint32_t topicIndex = removed.index;
    topics[topicIndex] = topics.back();
    topics.pop_back();
    if (topicIndex < topics.size()) {
        Subscriber::Entry &moved = topics[topicIndex];
        moved.topic->subscribers[moved.index].index = topicIndex;
    }
}

bool TopicTree::unsubscribe(Subscriber *subscriber, std::string_view name, size_t &count) {
    count = 0;
    for (const Subscriber::Entry &entry : subscriber->topics) {
        if (entry.topic->name != name) continue;
        Topic *topic = entry.topic;
        detach(topic, entry.index);
        count = topic->subscribers.size();
        if (count == 0) {
            Map::node_type node = topics_.extract(topic->name);
            if (spare_.size() < kSpareTopics) spare_.push_back(std::move(node));
        }
        return true;
    }
    count = numSubscribers(name);
    return false;
}

} // namespace uws
