// Utf8Validator and isValidUtf8: the RFC 3629 boundaries, every class of invalid input, and
// the promise that matters for WebSocket text: any split of the input into feeds gives the
// whole-buffer verdict, and feed() fails at the first byte that cannot continue valid UTF-8.
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "uws/Utf8.h"

namespace {

constexpr long kNoBadByte = -1;

struct Case {
    const char *name;
    std::string bytes;
    // Index of the first byte after which no continuation can be valid, or kNoBadByte.
    long firstBadByte;
    // For inputs with no bad byte: do they end on a code point boundary?
    bool complete;
};

Case valid(const char *name, std::string bytes) { return {name, std::move(bytes), kNoBadByte, true}; }
Case truncated(const char *name, std::string bytes) { return {name, std::move(bytes), kNoBadByte, false}; }
Case invalidAt(const char *name, std::string bytes, long index) { return {name, std::move(bytes), index, false}; }

const std::string kKosme = "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"; // "κόσμε", Autobahn 6.2

std::vector<Case> cases() {
    return {
        valid("empty", ""),
        valid("ascii", "Hello, world"),
        valid("long ascii run", std::string(37, 'a')),
        valid("U+0000", std::string(1, '\0')),
        valid("U+007F", "\x7F"),
        valid("U+0080", "\xC2\x80"),
        valid("U+07FF", "\xDF\xBF"),
        valid("U+0800", "\xE0\xA0\x80"),
        valid("U+D7FF", "\xED\x9F\xBF"),
        valid("U+E000", "\xEE\x80\x80"),
        valid("U+FFFF", "\xEF\xBF\xBF"),
        valid("U+10000", "\xF0\x90\x80\x80"),
        valid("U+10FFFF", "\xF4\x8F\xBF\xBF"),
        valid("kosme", kKosme),
        valid("ascii runs around multibyte",
              "The quick brown fox \xE2\x80\x94 " + kKosme + " \xF0\x9F\x98\x80 jumps over"),
        valid("U+FFFE and U+FFFF are not surrogates", "\xEF\xBF\xBE\xEF\xBF\xBF"),

        truncated("2-byte lead alone", "\xC2"),
        truncated("3-byte lead alone", "\xE1"),
        truncated("3-byte, 1 continuation", "\xE0\xA0"),
        truncated("4-byte, 2 continuations", "\xF0\x90\x80"),
        truncated("U+10FFFF without its last byte", "\xF4\x8F\xBF"),
        truncated("kosme cut inside its last code point", kKosme.substr(0, kKosme.size() - 1)),
        truncated("long ascii then a lead", std::string(20, 'x') + "\xF0"),

        invalidAt("overlong U+0000 (C0 80)", "\xC0\x80", 0),
        invalidAt("overlong C1 BF", "\xC1\xBF", 0),
        invalidAt("overlong U+0000 (E0 80 80)", "\xE0\x80\x80", 1),
        invalidAt("overlong U+07FF (E0 9F BF)", "\xE0\x9F\xBF", 1),
        invalidAt("overlong U+0000 (F0 80 80 80)", "\xF0\x80\x80\x80", 1),
        invalidAt("overlong U+FFFF (F0 8F BF BF)", "\xF0\x8F\xBF\xBF", 1),
        invalidAt("surrogate U+D800", "\xED\xA0\x80", 1),
        invalidAt("surrogate U+DFFF", "\xED\xBF\xBF", 1),
        invalidAt("U+110000 (F4 90 80 80)", "\xF4\x90\x80\x80", 1),
        invalidAt("F5", "\xF5\x80\x80\x80", 0),
        invalidAt("F8", "\xF8\x88\x80\x80\x80", 0),
        invalidAt("FC", "\xFC\x84\x80\x80\x80\x80", 0),
        invalidAt("FE", "\xFE", 0),
        invalidAt("FF", "\xFF", 0),
        invalidAt("lone continuation 80", "\x80", 0),
        invalidAt("lone continuation BF", "\xBF", 0),
        invalidAt("continuation after ascii", "a\x80", 1),
        invalidAt("one continuation too many", "\xC2\x80\x80", 2),
        invalidAt("ascii where a continuation is due", "\xC2\x41", 1),
        invalidAt("lead where a continuation is due", "\xE1\x80\xC2\x80", 2),
        invalidAt("bad byte after a long ascii run", std::string(16, 'a') + "\xFF" + std::string(16, 'a'), 16),
        invalidAt("kosme then a surrogate", kKosme + "\xED\xA0\x80", 12),
        invalidAt("valid 4-byte then U+110000", "\xF0\x9F\x98\x80\xF4\x90\x80\x80", 5),
        invalidAt("truncated then ascii", "\xE1\x80 abc", 2),
    };
}

// Each feed gets a heap copy of exactly its bytes, so that ASan sees any read past them.
bool feedCopy(uws::Utf8Validator &validator, const std::string &bytes, size_t begin, size_t end) {
    std::vector<unsigned char> copy(bytes.begin() + long(begin), bytes.begin() + long(end));
    return validator.feed(copy.data(), copy.size());
}

bool expectedWholeVerdict(const Case &c) { return c.firstBadByte == kNoBadByte && c.complete; }

void testWholeBuffer() {
    for (const Case &c : cases()) {
        check::Scope scope(c.name);
        CHECK_EQ(uws::isValidUtf8(c.bytes.data(), c.bytes.size()), expectedWholeVerdict(c));

        uws::Utf8Validator validator;
        bool fed = feedCopy(validator, c.bytes, 0, c.bytes.size());
        CHECK_EQ(fed, c.firstBadByte == kNoBadByte);
        if (fed) {
            CHECK_EQ(validator.complete(), c.complete);
        }
    }
}

void testByteByByteFailsAtFirstBadByte() {
    for (const Case &c : cases()) {
        check::Scope scope(c.name);
        uws::Utf8Validator validator;
        size_t rejectedAt = c.bytes.size();
        for (size_t i = 0; i < c.bytes.size(); i++) {
            if (!feedCopy(validator, c.bytes, i, i + 1)) {
                rejectedAt = i;
                break;
            }
        }
        size_t expectedRejection = c.firstBadByte == kNoBadByte ? c.bytes.size() : size_t(c.firstBadByte);
        CHECK_EQ(rejectedAt, expectedRejection);
        if (c.firstBadByte == kNoBadByte) {
            CHECK_EQ(validator.complete(), c.complete);
        }
    }
}

// The bytes before the first bad one are a valid prefix: a fragment ending there must pass.
void testPrefixBeforeBadByteIsAccepted() {
    for (const Case &c : cases()) {
        if (c.firstBadByte == kNoBadByte) {
            continue;
        }
        check::Scope scope(c.name);
        uws::Utf8Validator validator;
        CHECK(feedCopy(validator, c.bytes, 0, size_t(c.firstBadByte)));
        CHECK(!feedCopy(validator, c.bytes, size_t(c.firstBadByte), c.bytes.size()));
    }
}

// Every way of cutting the input into three feeds gives the whole-buffer verdict.
void testEverySplitGivesSameVerdict() {
    for (const Case &c : cases()) {
        check::Scope scope(c.name);
        const size_t n = c.bytes.size();
        int mismatches = 0;
        for (size_t first = 0; first <= n; first++) {
            for (size_t second = first; second <= n; second++) {
                uws::Utf8Validator validator;
                bool ok = feedCopy(validator, c.bytes, 0, first) && feedCopy(validator, c.bytes, first, second) &&
                          feedCopy(validator, c.bytes, second, n) && validator.complete();
                if (ok != expectedWholeVerdict(c)) {
                    mismatches++;
                }
            }
        }
        CHECK_EQ(mismatches, 0);
    }
}

void testResetClearsState() {
    uws::Utf8Validator validator;
    const unsigned char lead[] = {0xE2};
    CHECK(validator.feed(lead, 1));
    CHECK(!validator.complete());
    validator.reset();
    CHECK(validator.complete());
    const unsigned char ascii[] = {'o', 'k'};
    CHECK(validator.feed(ascii, 2));
    CHECK(validator.complete());

    // After E0 the next byte must be A0..BF; reset must also widen that range again.
    const unsigned char overlongLead[] = {0xE0};
    CHECK(validator.feed(overlongLead, 1));
    validator.reset();
    const unsigned char twoByte[] = {0xC2, 0x80};
    CHECK(validator.feed(twoByte, 2));
    CHECK(validator.complete());

    const unsigned char bad[] = {0xFF};
    CHECK(!validator.feed(bad, 1));
    validator.reset();
    CHECK(validator.feed(twoByte, 2));
    CHECK(validator.complete());
}

// An independent decoder: a code point at a time, by the definition in RFC 3629 section 3.
bool referenceIsValid(const unsigned char *data, size_t length) {
    size_t i = 0;
    while (i < length) {
        unsigned char lead = data[i];
        size_t size;
        uint32_t codePoint;
        uint32_t minimum;
        if (lead < 0x80) {
            i++;
            continue;
        } else if ((lead & 0xE0) == 0xC0) {
            size = 2, codePoint = lead & 0x1F, minimum = 0x80;
        } else if ((lead & 0xF0) == 0xE0) {
            size = 3, codePoint = lead & 0x0F, minimum = 0x800;
        } else if ((lead & 0xF8) == 0xF0) {
            size = 4, codePoint = lead & 0x07, minimum = 0x10000;
        } else {
            return false;
        }
        if (i + size > length) {
            return false;
        }
        for (size_t k = 1; k < size; k++) {
            if ((data[i + k] & 0xC0) != 0x80) {
                return false;
            }
            codePoint = (codePoint << 6) | (data[i + k] & 0x3F);
        }
        if (codePoint < minimum || codePoint > 0x10FFFF || (codePoint >= 0xD800 && codePoint <= 0xDFFF)) {
            return false;
        }
        i += size;
    }
    return true;
}

int countDisagreements(const unsigned char *bytes, size_t length) {
    bool expected = referenceIsValid(bytes, length);
    bool actual = uws::isValidUtf8(reinterpret_cast<const char *>(bytes), length);
    return expected != actual;
}

void testAgreesWithReferenceOnShortInputs() {
    int disagreements = 0;
    for (int a = 0; a < 256; a++) {
        unsigned char one[] = {uint8_t(a)};
        disagreements += countDisagreements(one, 1);
        for (int b = 0; b < 256; b++) {
            unsigned char two[] = {uint8_t(a), uint8_t(b)};
            disagreements += countDisagreements(two, 2);
        }
    }
    CHECK_EQ(disagreements, 0);

    // All three-byte inputs that start with a non-ASCII byte.
    disagreements = 0;
    for (int a = 0x80; a < 256; a++) {
        for (int b = 0; b < 256; b++) {
            for (int c = 0; c < 256; c++) {
                unsigned char three[] = {uint8_t(a), uint8_t(b), uint8_t(c)};
                disagreements += countDisagreements(three, 3);
            }
        }
    }
    CHECK_EQ(disagreements, 0);

    // Four-byte leads with every second byte and the edges of the continuation range after it.
    const uint8_t edges[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    disagreements = 0;
    for (int a = 0xF0; a < 256; a++) {
        for (int b = 0; b < 256; b++) {
            for (uint8_t c : edges) {
                for (uint8_t d : edges) {
                    unsigned char four[] = {uint8_t(a), uint8_t(b), c, d};
                    disagreements += countDisagreements(four, 4);
                }
            }
        }
    }
    CHECK_EQ(disagreements, 0);
}

} // namespace

int main() {
    RUN_TEST(testWholeBuffer);
    RUN_TEST(testByteByByteFailsAtFirstBadByte);
    RUN_TEST(testPrefixBeforeBadByteIsAccepted);
    RUN_TEST(testEverySplitGivesSameVerdict);
    RUN_TEST(testResetClearsState);
    RUN_TEST(testAgreesWithReferenceOnShortInputs);
    return check::report("test_utf8");
}
