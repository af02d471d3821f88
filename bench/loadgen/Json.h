// A small writer for the one JSON object the load generator prints. Keys are written as given
// (they are identifiers); string values are escaped.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

class Json {
public:
    Json() : text_("{"), fresh_{true} {}

    void field(const char *name, const std::string &value) { key(name); quote(value); }
    void field(const char *name, const char *value) { field(name, std::string(value)); }
    void field(const char *name, bool value) { key(name); text_ += value ? "true" : "false"; }
    void field(const char *name, int value) { field(name, int64_t(value)); }
    void field(const char *name, int64_t value) { key(name); text_ += std::to_string(value); numbers_[name] = double(value); }
    void field(const char *name, uint64_t value) { key(name); text_ += std::to_string(value); numbers_[name] = double(value); }
    void field(const char *name, double value) {
        key(name);
        numbers_[name] = value;
        if (!std::isfinite(value)) {
            text_ += "null";
            return;
        }
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%.6g", value);
        text_ += buffer;
    }

    // A field whose value is already JSON text.
    void raw(const char *name, const std::string &json) { key(name); text_ += json; }

    void beginObject(const char *name) { open(name, '{'); }
    void endObject() { close('}'); }
    void beginArray(const char *name) { open(name, '['); }
    void endArray() { close(']'); }
    void element(const std::string &json) {
        comma();
        text_ += json;
    }

    // A number written earlier at the top level or in a nested object, or 0.
    double number(const char *name) const {
        auto it = numbers_.find(name);
        return it == numbers_.end() ? 0.0 : it->second;
    }

    std::string finish() const { return text_ + "}"; }

private:
    void comma() {
        if (!fresh_.back()) text_ += ',';
        fresh_.back() = false;
    }
    void key(const char *name) {
        comma();
        quote(name);
        text_ += ':';
    }
    void quote(const std::string &value) {
        text_ += '"';
        for (char ch : value) {
            if (ch == '"' || ch == '\\') text_ += '\\';
            if (static_cast<unsigned char>(ch) < 0x20) {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\u%04x", ch);
                text_ += escaped;
                continue;
            }
            text_ += ch;
        }
        text_ += '"';
    }
    void open(const char *name, char bracket) {
        key(name);
        text_ += bracket;
        fresh_.push_back(true);
    }
    void close(char bracket) {
        text_ += bracket;
        fresh_.pop_back();
    }

    std::string text_;
    std::vector<bool> fresh_;
    std::map<std::string, double> numbers_;
};
