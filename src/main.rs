//! Thin binary: everything, the exit code included, is the library's `main`.
fn main() -> std::process::ExitCode {
    privbucket::main()
}
