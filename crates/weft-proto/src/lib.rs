//! weft-proto: what the controller and the proxy say to each other: the
//! proxy's configuration as plain data ([`config`], with who may call the
//! workload in [`authz`], the access-log format language in
//! [`access_format`]), and the push protocol (`proto/weft.proto`, generated
//! into [`v1`]).

pub mod access_format;
pub mod authz;
pub mod config;
pub mod grpc;

/// Generated from `proto/weft.proto`.
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("weft.v1");
}
