// Latency histogram: log-linear buckets, 32 per power of two (at most ~3 % error), fixed size,
// no allocation while recording. Values are nanoseconds; percentiles are reported in µs.
#pragma once

#include <cstdint>
#include <cstring>

class Histogram {
public:
    void record(uint64_t ns) {
        counts_[bucketOf(ns)]++;
        total_++;
        if (ns > max_) max_ = ns;
        sum_ += ns;
    }

    void clear() {
        std::memset(counts_, 0, sizeof counts_);
        total_ = 0;
        max_ = 0;
        sum_ = 0;
    }

    // Adds another histogram's samples (the per-thread histograms of one run).
    void merge(const Histogram &other) {
        for (int i = 0; i < kBuckets; i++) counts_[i] += other.counts_[i];
        total_ += other.total_;
        if (other.max_ > max_) max_ = other.max_;
        sum_ += other.sum_;
    }

    uint64_t count() const { return total_; }
    double maxMicros() const { return max_ / 1000.0; }
    double meanMicros() const { return total_ ? double(sum_) / total_ / 1000.0 : 0.0; }

    // The value below which `fraction` of the samples lie (bucket midpoint, capped at the maximum).
    double percentileMicros(double fraction) const {
        if (total_ == 0) return 0.0;
        uint64_t rank = uint64_t(fraction * double(total_ - 1)) + 1;
        uint64_t seen = 0;
        for (int i = 0; i < kBuckets; i++) {
            seen += counts_[i];
            if (seen >= rank) {
                double mid = (double(lowerBound(i)) + double(lowerBound(i + 1))) / 2.0;
                return (mid < double(max_) ? mid : double(max_)) / 1000.0;
            }
        }
        return maxMicros();
    }

private:
    static constexpr int kSubBits = 5;
    static constexpr int kSub = 1 << kSubBits;
    static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

    static int bucketOf(uint64_t v) {
        if (v < uint64_t(kSub)) return int(v);
        int exponent = 63 - __builtin_clzll(v);
        int sub = int((v >> (exponent - kSubBits)) & (kSub - 1));
        return (exponent - kSubBits + 1) * kSub + sub;
    }

    static uint64_t lowerBound(int bucket) {
        if (bucket < kSub) return uint64_t(bucket);
        int exponent = bucket / kSub + kSubBits - 1;
        uint64_t sub = uint64_t(bucket % kSub);
        return (uint64_t(kSub) + sub) << (exponent - kSubBits);
    }

    uint64_t counts_[kBuckets] = {};
    uint64_t total_ = 0;
    uint64_t max_ = 0;
    uint64_t sum_ = 0;
};
