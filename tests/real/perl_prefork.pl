#!/usr/bin/perl
# A preforking server: the master binds, forks WORKERS workers and only
# waits for them; each worker accepts on the shared listener and keeps every
# connection it accepted (never closes it). The master never holds a
# connection.
#
# Prints the port once every worker is started.
use strict;
use warnings;
use IO::Socket::INET;

$| = 1;
my $workers = shift // 2;
my $listener = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => 0,
    Listen    => 16,
    ReuseAddr => 1,
    Proto     => 'tcp',
) or die "listen: $@";
for (1 .. $workers) {
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my @kept;
        while (1) {
            my $conn = $listener->accept or next;
            push @kept, $conn;    # BUG: never closed
        }
    }
}
print $listener->sockport, "\n";
1 while wait != -1;
