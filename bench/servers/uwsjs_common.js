// Loads uWebSockets.js: the module named by UWSJS_MODULE (a package name or a path to a .node,
// e.g. the glibc 2.36 build made by bench/compat/make_uwsjs_loadable.sh), by default the
// @trufflesuite/uws-js-unofficial 20.30.0 build that loads on glibc 2.36 as shipped.
const path = require('path');

const NODE_MODULES = path.join(__dirname, '..', '.baselines', 'node', 'node_modules');

function loadUws() {
  const name = process.env.UWSJS_MODULE || '@trufflesuite/uws-js-unofficial';
  const resolved = name.startsWith('/') ? name : require.resolve(name, { paths: [NODE_MODULES] });
  return require(resolved);
}

function listen(app, port) {
  app.listen('127.0.0.1', port, (token) => {
    if (!token) {
      console.error(`cannot listen on ${port}`);
      process.exit(1);
    }
    console.log(`listening ${port}`);
  });
}

module.exports = { loadUws, listen };
