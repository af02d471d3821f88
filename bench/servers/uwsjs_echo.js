// uWebSockets.js echo server. usage: node uwsjs_echo.js PORT [--deflate]
const { loadUws, listen } = require('./uwsjs_common');

const uWS = loadUws();
const port = Number(process.argv[2]);
const deflate = process.argv.includes('--deflate');

const app = uWS.App().ws('/*', {
  compression: deflate ? uWS.SHARED_COMPRESSOR | uWS.SHARED_DECOMPRESSOR : uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  idleTimeout: 0,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary, deflate);
  },
});
listen(app, port);
