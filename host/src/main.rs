fn main() {
    std::process::exit(nodecache::cli::main());
}
