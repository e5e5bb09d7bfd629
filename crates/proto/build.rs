//! Compiles the .proto files with `protox` (a protobuf compiler written in Rust), so
//! that building keel needs cargo alone: no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/keel/v1/kv.proto",
        "proto/keel/v1/cluster.proto",
        "proto/keel/raft/v1/raft.proto",
        "proto/etcd/etcd_kv.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Entry payloads and values are shared, not copied, on their way through.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
