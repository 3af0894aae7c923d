//! Generates the protocol code with protox (a protobuf compiler in Rust), so
//! a build never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/weft.proto");
    let fds = protox::compile(["proto/weft.proto"], ["proto"])?;
    // Config payloads as `bytes::Bytes`: one push to many proxies shares one buffer.
    tonic_prost_build::configure()
        .bytes(".weft.v1.ConfigPush.config_json")
        .bytes(".weft.v1.ConfigPush.endpoints_json")
        .compile_fds(fds)?;
    Ok(())
}
