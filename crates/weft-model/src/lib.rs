//! weft-model: the mesh configuration users write (Istio, Gateway API,
//! Linkerd/SMI), parsed into typed resources, validated with precise errors,
//! translated into one internal [`mesh`] model, and analysed across resources.
//!
//! ```
//! let bundle = weft_model::parse_str("vs.yaml", r#"
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews}
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - route:
//!     - destination: {host: reviews, subset: v1}
//!       weigth: 90
//! "#);
//! assert_eq!(bundle.messages[0].field.as_deref(), Some("spec.http[0].route[0].weigth"));
//! assert!(bundle.messages[0].text.contains("did you mean \"weight\""));
//! ```

pub mod analyze;
pub mod bounded;
pub mod diag;
pub mod envelope;
pub mod load;
pub mod mesh;
pub mod resource;
pub mod schema;
pub mod types;
pub mod validate;
pub mod values;

pub use diag::{Code, Message, Origin, ResourceRef, Severity};
pub use load::{load_paths, parse_str, Bundle, Loaded};
pub use resource::Resource;
