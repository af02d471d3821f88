#include "uws/LoopData.h"

#include <cstdlib>
#include <new>

namespace uws {

LoopData::LoopData()
    : receiveBuffer(static_cast<char *>(std::malloc(kReceiveBufferSize))),
      corkBuffer(static_cast<char *>(std::malloc(kCorkBufferSize))) {
    if (!receiveBuffer || !corkBuffer) {
        std::free(receiveBuffer);
        std::free(corkBuffer);
        throw std::bad_alloc();
    }
}

LoopData::~LoopData() {
    std::free(receiveBuffer);
    std::free(corkBuffer);
}

Deflater &LoopData::sharedDeflater(int windowBits) {
    std::unique_ptr<Deflater> &slot = sharedDeflaters_[windowBits & 15];
    if (!slot) slot = std::make_unique<Deflater>(windowBits, 8);
    return *slot;
}

} // namespace uws
