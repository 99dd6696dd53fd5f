#!/usr/bin/perl
# A classic forking IO::Socket::INET server with the classic bug: the parent
# keeps every accepted socket (in %clients, to log the peer when the child
# ends) and never closes it. Children are reaped with waitpid in a SIGCHLD
# handler.
#
# A child reads the request's first line: "hold" makes it keep the
# connection open forever (a slow handler); anything else, or EOF, makes it
# close its copy and exit.
#
# Prints the port once it is listening.
use strict;
use warnings;
use IO::Socket::INET;
use POSIX ":sys_wait_h";

$| = 1;
my $listener = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => 0,
    Listen    => 16,
    ReuseAddr => 1,
    Proto     => 'tcp',
) or die "listen: $@";
$SIG{CHLD} = sub { 1 while waitpid(-1, WNOHANG) > 0 };
print $listener->sockport, "\n";

my %clients;
while (1) {
    my $conn = $listener->accept or next;    # EINTR from SIGCHLD: retry
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $listener;
        my $line = <$conn> // '';
        if ($line =~ /^hold/) {
            sleep 1000 while 1;
        }
        close $conn;
        exit 0;
    }
    $clients{$pid} = $conn;    # BUG: the parent's copy is never closed
}
