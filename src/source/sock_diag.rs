//! TCP tables through NETLINK_SOCK_DIAG, optionally inside another network namespace.
