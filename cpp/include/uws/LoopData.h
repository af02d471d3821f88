// What every socket of one Loop shares: the receive buffer a read lands in, the cork buffer
// an event's writes gather in, the permessage-deflate streams of sockets that agreed to no
// context takeover, and scratch space for one message or request head at a time.
//
// One per Loop, and used on the loop thread only: a read, a dispatch and a handler never
// overlap there, so one of each buffer is enough.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "uws/HttpDate.h"
#include "uws/HttpParser.h"
#include "uws/PerMessageDeflate.h"

namespace uws {

class Socket;

struct LoopData {
    // 512 KiB: a read of a 64 KiB-frame burst or many small frames in one syscall.
    static constexpr size_t kReceiveBufferSize = 512 * 1024;
    // 16 KiB: everything one event sends to one socket leaves in one write up to this size.
    static constexpr size_t kCorkBufferSize = 16 * 1024;

    LoopData();
    ~LoopData();
    LoopData(const LoopData &) = delete;
    LoopData &operator=(const LoopData &) = delete;

    char *receiveBuffer;
    // Cork state (see Socket::write): at most one socket holds the cork buffer at a time.
    char *corkBuffer;
    size_t corkLength = 0;
    Socket *corked = nullptr;

    // Made on first use, one per window size.
    Deflater &sharedDeflater(int windowBits);
    Inflater sharedInflater{15};
    std::string compressScratch;
    std::string inflateScratch;
    // Parsed once per request head, reused.
    HttpRequest requestScratch;
    // Every HTTP response's Date header: formatted once a second by the loop's tick (and when
    // the loop starts), never per response. It may lag the clock by up to that second.
    HttpDate date;

private:
    std::unique_ptr<Deflater> sharedDeflaters_[16];
};

} // namespace uws
