//! weft-proto: what the controller and the proxy say to each other: the
//! proxy's configuration as plain data ([`config`], with who may call the
//! workload in [`authz`], the access-log format language in
//! [`access_format`]), and the push protocol (`proto/weft.proto`, generated
//! into [`v1`]). Also the one wire format weft speaks to others that needs
//! protobuf: OpenTelemetry's trace export ([`otlp`]).

pub mod access_format;
pub mod authz;
pub mod config;
pub mod grpc;

/// Generated from `proto/weft.proto`.
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("weft.v1");
}

/// OpenTelemetry's trace messages (OTLP), generated from the official
/// definitions in `proto/opentelemetry`; the module tree mirrors their
/// packages, which the generated code's paths rely on.
#[allow(clippy::all)]
pub mod otlp {
    pub mod opentelemetry {
        pub mod proto {
            pub mod common {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.common.v1");
                }
            }
            pub mod resource {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.resource.v1");
                }
            }
            pub mod trace {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.trace.v1");
                }
            }
            pub mod collector {
                pub mod trace {
                    pub mod v1 {
                        tonic::include_proto!("opentelemetry.proto.collector.trace.v1");
                    }
                }
            }
        }
    }
    pub use opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
    pub use opentelemetry::proto::common::v1 as common;
    pub use opentelemetry::proto::resource::v1 as resource;
    pub use opentelemetry::proto::trace::v1 as trace;
}
