//! The `partner-gateway` binary: a thin shell around [`partner_gateway::cli`].

fn main() -> std::process::ExitCode {
    partner_gateway::cli::main()
}
