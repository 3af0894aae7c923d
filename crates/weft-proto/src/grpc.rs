//! gRPC status codes by name, the one table the controller (Istio fault
//! injection's `grpcStatus: UNAVAILABLE`) and the proxy (Envoy's retry
//! conditions such as `deadline-exceeded`) both read.

/// The codes in order: the index is the code.
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code a status name means, written as Istio does (`UNAVAILABLE`) or
/// as Envoy's conditions do (`unavailable`, `deadline-exceeded`).
pub fn code_by_name(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| n.len() == name.len() && n.bytes().zip(name.bytes()).all(|(a, b)| a == b.to_ascii_uppercase() || (a == b'_' && b == b'-'))).map(|i| i as u32)
}

/// The name of a code (`14` is `UNAVAILABLE`).
pub fn name_of(code: u32) -> Option<&'static str> {
    NAMES.get(code as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_either_spelling() {
        assert_eq!(code_by_name("UNAVAILABLE"), Some(14));
        assert_eq!(code_by_name("unavailable"), Some(14));
        assert_eq!(code_by_name("deadline-exceeded"), Some(4));
        assert_eq!(code_by_name("DEADLINE_EXCEEDED"), Some(4));
        assert_eq!(code_by_name("503"), None);
        assert_eq!(code_by_name("unavailablex"), None);
        assert_eq!(name_of(16), Some("UNAUTHENTICATED"));
        assert!((0..17).all(|c| code_by_name(name_of(c).unwrap()) == Some(c)));
    }
}
