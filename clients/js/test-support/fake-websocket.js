// A WebSocket stand-in for the unit tests: records what the client sends, and lets the test play
// the server (open, messages, closes) without a network.
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }
    send(text) {
      if (this.closedWith) throw new Error("send on a closed fake socket");
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      this.closedWith = { code, reason };
    }
    // -- the test's side --
    receive(message) {
      this.onmessage?.({ data: JSON.stringify(message) });
    }
    connected(extra = {}) {
      this.receive({ type: "CONNECTED", clientId: "c" + sockets.indexOf(this), userId: null, serverTime: Date.now(), capabilities: {}, ...extra });
    }
    serverClose(code, reason = "") {
      this.closedWith = { code, reason };
      this.onclose?.({ code, reason });
    }
    lastSent(type) {
      return [...this.sent].reverse().find((message) => message.type === type);
    }
  }
  return { FakeWebSocket, sockets };
}

export async function until(predicate, what, timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
