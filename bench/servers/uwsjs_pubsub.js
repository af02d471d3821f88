// uWebSockets.js pub/sub server: "sub:TOPIC" subscribes, anything else is published to "bench".
// usage: node uwsjs_pubsub.js PORT
const { loadUws, listen } = require('./uwsjs_common');

const uWS = loadUws();
const port = Number(process.argv[2]);

const app = uWS.App().ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  idleTimeout: 0,
  // uws-py's default: below it a slow subscriber would lose publishes (uWS.js defaults to 64 KiB).
  maxBackpressure: 1024 * 1024,
  message: (ws, message, isBinary) => {
    if (!isBinary && message.byteLength < 256) {
      const text = Buffer.from(message).toString();
      if (text.startsWith('sub:')) {
        ws.subscribe(text.slice(4));
        return;
      }
    }
    app.publish('bench', message, isBinary);
  },
});
listen(app, port);
