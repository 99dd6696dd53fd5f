#!/bin/sh
# An inetd handler (the connection is its stdin, stdout and stderr) that
# starts a background job with nohup and returns at once. nohup redirects
# nothing that is not a terminal, and a non-interactive shell gives an
# asynchronous job /dev/null as stdin only: the job inherits the connection
# on stdout and stderr and outlives the handler.
nohup sleep 100000 &
echo "job $! started"
