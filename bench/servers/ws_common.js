// Loads the `ws` package from bench/.baselines/node and starts a WebSocketServer on 127.0.0.1.
const path = require('path');

const NODE_MODULES = path.join(__dirname, '..', '.baselines', 'node', 'node_modules');
const { WebSocketServer, WebSocket } = require(require.resolve('ws', { paths: [NODE_MODULES] }));

function serve(port, deflate) {
  // clientTracking off: the servers keep their own sets where they need one.
  const server = new WebSocketServer({
    host: '127.0.0.1',
    port,
    perMessageDeflate: deflate ? { threshold: 0 } : false,
    clientTracking: false,
    maxPayload: 16 * 1024 * 1024,
  });
  server.on('listening', () => console.log(`listening ${port}`));
  return server;
}

module.exports = { serve, WebSocket };
