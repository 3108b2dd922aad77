//! The `partner-gateway` binary: a thin shell around [`partner_gateway::cli`].

/// mimalloc rather than glibc's malloc: a cache fill allocates and frees many short-lived
/// buffers beside long-lived entries, and glibc's arena consolidation showed up as a tenth of
/// the miss path's CPU (see README "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    partner_gateway::cli::main()
}
