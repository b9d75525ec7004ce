//! `palisade-chaos`: fault-injection harness for clusters of real `palisade` processes.
//!
//! Not built yet: this stub exists so the workspace layout is final. It prints what it will
//! do and exits non-zero, so nobody mistakes it for a passing chaos run.

fn main() -> std::process::ExitCode {
    eprintln!(
        "palisade-chaos is not implemented yet (see chaos/README.md). \
         It will run scenarios from chaos/scenarios/ against real palisade processes."
    );
    std::process::ExitCode::from(2)
}
