//! Parsers for the text of /proc files. A parser never opens a file: fixture
//! text and live text go through the same code. Errors are plain messages; the
//! reader adds the pid and path.

pub mod btf;
pub mod cmdline;
pub mod fdinfo;
pub mod link;
pub mod net_tcp;
pub mod proc_files;
pub mod sockstat;
pub mod sysctl_conf;

pub type ParseResult<T> = Result<T, String>;
