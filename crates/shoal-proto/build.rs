//! Compiles `proto/` with a pure-Rust protobuf compiler (protox), so building shoal
//! needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../../proto";
    let files = [
        "shoal/v1/kv.proto",
        "shoal/v1/admin.proto",
        "shoal/v1/raft.proto",
        "shoal/v1/peer.proto",
        "shoal/v1/range.proto",
        "shoal/v1/txn.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={root}/{f}");
    }
    let fds = protox::compile(files, [root])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
