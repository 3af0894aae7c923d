//! Generates the protocol code with protox (a protobuf compiler in Rust), so
//! a build never needs a system `protoc`: weft's own push protocol, and the
//! messages of OpenTelemetry's trace export (the official `.proto` files,
//! vendored under `proto/opentelemetry`, v1.9.0).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/weft.proto"], ["proto"])?;
    // Config payloads as `bytes::Bytes`: one push to many proxies shares one buffer.
    tonic_prost_build::configure()
        .bytes(".weft.v1.ConfigPush.config_json")
        .bytes(".weft.v1.ConfigPush.endpoints_json")
        .compile_fds(fds)?;
    // Only the messages: the proxy frames the one gRPC call itself.
    let otlp = protox::compile(["opentelemetry/proto/collector/trace/v1/trace_service.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(false).build_server(false).compile_fds(otlp)?;
    Ok(())
}
