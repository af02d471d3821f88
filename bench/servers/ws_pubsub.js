// Node `ws` pub/sub server: "sub:TOPIC" subscribes, anything else goes to the "bench" topic's
// subscribers (except the sender). usage: node ws_pubsub.js PORT
const { serve, WebSocket } = require('./ws_common');

const topics = new Map();
const server = serve(Number(process.argv[2]), false);
server.on('connection', (socket) => {
  const joined = [];
  socket.on('message', (data, isBinary) => {
    if (!isBinary && data.length < 256) {
      const text = data.toString();
      if (text.startsWith('sub:')) {
        const topic = text.slice(4);
        if (!topics.has(topic)) topics.set(topic, new Set());
        topics.get(topic).add(socket);
        joined.push(topic);
        return;
      }
    }
    const subscribers = topics.get('bench');
    if (!subscribers) return;
    for (const peer of subscribers) {
      if (peer !== socket && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary });
    }
  });
  socket.on('close', () => {
    for (const topic of joined) topics.get(topic).delete(socket);
  });
});
