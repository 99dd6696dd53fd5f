// A Node.js net.Server with allowHalfOpen: when the peer ends its side,
// Node does not end ours; this server listens for 'end' but forgets to call
// socket.end(), so every connection whose client closed stays in CLOSE_WAIT
// in this process. Node accepts with SOCK_CLOEXEC and never forks here.
// Prints the port once it is listening.
'use strict';
const net = require('net');

const open = new Set();
const server = net.createServer({ allowHalfOpen: true }, (socket) => {
  open.add(socket);
  socket.on('data', () => {});
  socket.on('end', () => {
    // BUG: the peer is done; socket.end() is missing here.
  });
});
// Listens on the address given as the first argument (default 127.0.0.1).
server.listen(0, process.argv[2] || '127.0.0.1', () => {
  console.log(server.address().port);
});
