#![deny(clippy::print_stderr)]

use clap::Parser;
use cwleak::cli::Cli;
use cwleak::exit::Exit;

/// jemalloc, not glibc's malloc: the judging threads' many small, short-lived
/// allocations left glibc's per-thread arenas holding freed memory the other
/// arenas could not reuse (a big look's peak grew with it, and only explicit
/// trims gave it back), and its free-chunk merging cost a large share of the
/// diagnosis's CPU time.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc at start-up (`MALLOC_CONF` syntax; `_RJEM_MALLOC_CONF`
/// in the environment overrides it). Decay 0: pages freed go back to the
/// kernel at once, so a look's peak is its live data, and serve and watch
/// hold between looks only what they keep. A reference to an array is a
/// plain pointer, the `const char *` jemalloc reads.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 34] = b"dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn main() {
    let cli = Cli::parse();
    let code = match cwleak::app::run(cli) {
        Ok(exit) => exit,
        Err(e) => {
            cwleak::diag!("cwleak: error: {e:#}");
            Exit::Error
        }
    };
    std::process::exit(code.code());
}
