// Node `ws` echo server. usage: node ws_echo.js PORT [--deflate]
const { serve } = require('./ws_common');

const server = serve(Number(process.argv[2]), process.argv.includes('--deflate'));
server.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
});
